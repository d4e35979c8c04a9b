/* Raw RGB24 frames, one after another, no header: for exact comparisons
 * (GPU parity checks) and for piping into other tools. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

typedef struct {
    FILE *f;
    const char *target;
    size_t frame_bytes;
} raw_ctx;

static int raw_open(void **ctx, const char *tmp_path, const char *target, const sdm_sink_params *p, sdm_error *err)
{
    raw_ctx *c = calloc(1, sizeof *c);

    if (!c)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    c->target = target;
    c->frame_bytes = (size_t)p->width * p->height * 3;
    c->f = fopen(tmp_path, "wb");
    if (!c->f) {
        free(c);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target, strerror(errno));
    }
    *ctx = c;
    return 0;
}

static int raw_write(void *ctx, const uint8_t *rgb, sdm_error *err)
{
    raw_ctx *c = ctx;

    if (fwrite(rgb, 1, c->frame_bytes, c->f) != c->frame_bytes)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", c->target, strerror(errno));
    return 0;
}

static int raw_finish(void *ctx, sdm_error *err)
{
    raw_ctx *c = ctx;
    int bad = fclose(c->f) != 0;

    c->f = NULL;
    if (bad)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", c->target, strerror(errno));
    return 0;
}

static void raw_free(void **ctx)
{
    raw_ctx *c = ctx ? *ctx : NULL;

    if (!c)
        return;
    if (c->f)
        fclose(c->f);
    free(c);
    *ctx = NULL;
}

const sdm_format sdm_format_raw = {
    .name = "raw rgb24",
    .check = NULL,
    .open = raw_open,
    .write = raw_write,
    .finish = raw_finish,
    .free = raw_free,
};
