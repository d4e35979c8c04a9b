#include "format.h"

static int stub_open(void **ctx, const char *tmp_path, const char *target,
                     const sdm_sink_params *p, sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: not written yet", target);
}
static int stub_write(void *ctx, const uint8_t *rgb, sdm_error *err) { return -1; }
static int stub_finish(void *ctx, sdm_error *err) { return -1; }
static void stub_free(void **ctx) { }
const sdm_format sdm_format_gif = { "gif", stub_open, stub_write, stub_finish, stub_free };
