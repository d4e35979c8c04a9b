/* The names of torch_api.h's dtypes and devices: plain C, no libtorch, so
 * that parsing `--device` or a bundle's dtype never loads it (torch_load.c).
 * Built into sdmorph and into the shim (libsdm_torch.so), which names
 * devices and dtypes in its messages. */
#include <stdio.h>
#include <string.h>

#include "enum_table.h"
#include "torch_api.h"

static const sdm_enum_entry dtype_entries[] = {
    { "float32", SDM_F32 }, { "float16", SDM_F16 }, { "int64", SDM_I64 }, { "uint8", SDM_U8 },
    { "float64", SDM_F64 }, { "fp32", SDM_F32 },    { "fp16", SDM_F16 },  { "fp64", SDM_F64 },
};
static const sdm_enum_table dtype_names = { dtype_entries, (int)(sizeof dtype_entries / sizeof *dtype_entries),
                                            "unknown" };
static const sdm_enum_entry device_type_entries[] = { { "cpu", SDM_DEVICE_CPU }, { "cuda", SDM_DEVICE_CUDA } };
static const sdm_enum_table device_type_names = SDM_ENUM_TABLE(device_type_entries);

SDM_ENUM_FUNCTIONS(sdm_dtype, dtype_names) /* sdm_dtype_name, sdm_dtype_from_str */

/* "cpu", "cuda" or "cuda:N": a type name, and an index for CUDA only. */
int sdm_device_from_str(const char *s, sdm_device *out)
{
    const char *colon = s ? strchr(s, ':') : NULL;
    size_t n = colon ? (size_t)(colon - s) : s ? strlen(s) : 0;
    char type[8];
    int t;
    long idx = 0;

    if (!s || !out || n >= sizeof type)
        return -1;
    memcpy(type, s, n);
    type[n] = '\0';
    if (sdm_enum_parse(&device_type_names, type, &t) || (colon && t != SDM_DEVICE_CUDA))
        return -1;
    if (colon) {
        const char *p = colon + 1;
        if (!*p)
            return -1;
        for (; *p; p++) {
            if (*p < '0' || *p > '9' || idx > 1000)
                return -1;
            idx = idx * 10 + (*p - '0');
        }
    }
    out->type = (sdm_device_type)t;
    out->index = (int)idx;
    return 0;
}

void sdm_device_name(sdm_device d, char *buf, size_t len)
{
    const char *type = sdm_enum_name(&device_type_names, d.type);

    if (!buf || !len)
        return;
    if (d.type == SDM_DEVICE_CUDA)
        snprintf(buf, len, "%s:%d", type, d.index);
    else
        snprintf(buf, len, "%s", d.type == SDM_DEVICE_CPU ? type : "unknown");
}
