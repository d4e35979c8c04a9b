#include "output_name.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* One row per extension; the sink maps kinds to encoders, so an extension
 * added here without an encoder fails its build, not a render. */
static const struct {
    const char *ext;
    sdm_output_kind kind;
    int sheet; /* only as the contact sheet */
    const char *note; /* said after it in messages, or NULL */
} extensions[] = {
    { ".mp4", SDM_OUTPUT_MP4, 0, NULL },         { ".gif", SDM_OUTPUT_GIF, 0, NULL },
    { ".rgb", SDM_OUTPUT_RAW, 0, "raw frames" }, { ".png", SDM_OUTPUT_STILL, 0, "stills" },
    { ".png", SDM_OUTPUT_SHEET, 1, NULL },
};

#define N_EXTENSIONS (sizeof extensions / sizeof extensions[0])

/* ".mp4, .gif or .rgb (raw frames)": the extensions of one use. */
static void list_extensions(int sheet, char *buf, size_t len)
{
    size_t n = 0, used = 0;

    buf[0] = 0;
    for (size_t i = 0; i < N_EXTENSIONS; i++)
        n += extensions[i].sheet == sheet;
    for (size_t i = 0, k = 0; i < N_EXTENSIONS && used < len; i++) {
        if (extensions[i].sheet != sheet)
            continue;
        k++;
        used += (size_t)snprintf(buf + used, len - used, "%s%s%s%s%s",
                                 k == 1   ? ""
                                 : k == n ? " or "
                                          : ", ",
                                 extensions[i].ext, extensions[i].note ? " (" : "",
                                 extensions[i].note ? extensions[i].note : "", extensions[i].note ? ")" : "");
    }
}

const char *sdm_output_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

const char *sdm_output_extension(const char *path)
{
    const char *base = sdm_output_base_name(path);
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot : NULL;
}

int sdm_output_kind_of(const char *path, int sheet)
{
    const char *ext = path ? sdm_output_extension(path) : NULL;

    for (size_t i = 0; ext && i < N_EXTENSIONS; i++)
        if (extensions[i].sheet == !!sheet && !strcasecmp(ext, extensions[i].ext))
            return (int)extensions[i].kind;
    return -1;
}

int sdm_output_check(const char *path, int sheet, sdm_error *err)
{
    const char *ext;
    char use[128];

    if (!path || !*path)
        return sdm_error_set(err, SDM_EXIT_USAGE, "empty output path");
    if (!*sdm_output_base_name(path))
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s' names a directory, not a file", path);
    if (sdm_output_kind_of(path, sheet) >= 0)
        return 0;
    ext = sdm_output_extension(path);
    list_extensions(!!sheet, use, sizeof use);
    return sdm_error_set(err, SDM_EXIT_USAGE, "%s '%s': %s%s%s, use %s", sheet ? "contact sheet" : "output", path,
                         ext ? "unknown extension '" : "no extension", ext ? ext : "", ext ? "'" : "", use);
}
