/* libFuzzer target: the safetensors reader on any bytes, as a file in
 * memory. Where it opens, checks the header's promises: the tensors tile
 * the data in order, each one's bytes are its element count × dtype size,
 * find returns the tensor of that name, and every float tensor reads (its
 * values are used, so a read past the data would be seen by ASan); where it
 * refuses, the error is a usage error with a message.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"


static void check_tensors(const sdm_safetensors *st, size_t size)
{
    uint64_t at = 0;
    volatile float sink = 0;

    for (int i = 0; i < sdm_safetensors_count(st); i++) {
        const sdm_st_tensor *t = sdm_safetensors_tensor(st, i);
        sdm_error err = { 0 };
        uint64_t numel = 1;
        float *v;

        if (!t || t->offset != at || t->ndim < 0 || t->ndim > SDM_ST_MAX_DIMS)
            abort();
        for (int d = 0; d < t->ndim; d++)
            numel *= (uint64_t)t->shape[d];
        if (numel != t->numel || numel * sdm_st_dtype_size(t->dtype) != t->nbytes)
            abort();
        at += t->nbytes;
        if (at > size || sdm_safetensors_find(st, t->name) != t)
            abort();
        v = malloc(numel ? numel * sizeof *v : 1);
        if (!v)
            continue;
        if (sdm_safetensors_read_f32(st, t, v, numel, &err) == 0) {
            for (uint64_t k = 0; k < numel; k++)
                sink += v[k];
        } else if (!err.msg[0]) {
            abort();
        }
        free(v);
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_safetensors *st = NULL;
    sdm_error err = { 0 };

    if (sdm_safetensors_open_memory("fuzz.safetensors", data, size, &st, &err)) {
        if (st || !err.msg[0] || (err.code != SDM_EXIT_USAGE && err.code != SDM_EXIT_RUNTIME))
            abort();
        return 0;
    }
    check_tensors(st, size);
    (void)sdm_safetensors_metadata(st, "format");
    sdm_safetensors_free(&st);
    return 0;
}
