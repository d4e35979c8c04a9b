#include "frame_cache.h"

#include <stdlib.h>
#include <string.h>

#include "torch_error.h"

typedef struct {
    uint8_t *rgb;
    sdm_tensor *latent; /* [1,C,h,w] */
    int remaining; /* showings still to come */
} kept_frame;

struct sdm_frame_cache {
    kept_frame *kept; /* per render */
    int n_renders;
    size_t frame_bytes, rgb_bytes, rgb_budget;
};

int sdm_frame_cache_new(const int *sequence, int n_sequence, int n_renders, size_t frame_bytes, size_t rgb_budget,
                        sdm_frame_cache **out, sdm_error *err)
{
    sdm_frame_cache *c = calloc(1, sizeof *c);

    *out = NULL;
    if (c)
        c->kept = calloc(n_renders > 0 ? n_renders : 1, sizeof *c->kept);
    if (!c || !c->kept) {
        free(c);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    c->n_renders = n_renders;
    c->frame_bytes = frame_bytes;
    c->rgb_budget = rgb_budget;
    for (int i = 0; i < n_sequence; i++)
        c->kept[sequence[i]].remaining++;
    *out = c;
    return 0;
}

static void let_go(sdm_frame_cache *c, kept_frame *k)
{
    if (k->rgb)
        c->rgb_bytes -= c->frame_bytes;
    free(k->rgb);
    k->rgb = NULL;
    sdm_tensor_free(&k->latent);
}

int sdm_frame_cache_keep(sdm_frame_cache *c, int r, const uint8_t *rgb, const sdm_tensor *latents, int row,
                         sdm_error *err)
{
    kept_frame *k = &c->kept[r];
    sdm_torch_status st;

    if (k->remaining == 0 || k->rgb || k->latent)
        return 0;
    if (c->rgb_bytes + c->frame_bytes <= c->rgb_budget) {
        k->rgb = malloc(c->frame_bytes);
        if (!k->rgb)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        memcpy(k->rgb, rgb, c->frame_bytes);
        c->rgb_bytes += c->frame_bytes;
        return 0;
    }
    st = sdm_tensor_narrow(latents, row, 1, &k->latent);
    return st ? sdm_torch_error(err, st, "keeping a frame") : 0;
}

void sdm_frame_cache_shown(sdm_frame_cache *c, int r)
{
    kept_frame *k = &c->kept[r];

    if (k->remaining > 0 && --k->remaining == 0)
        let_go(c, k);
}

const uint8_t *sdm_frame_cache_rgb(const sdm_frame_cache *c, int r)
{
    return c->kept[r].rgb;
}

sdm_tensor *sdm_frame_cache_latent(const sdm_frame_cache *c, int r)
{
    return c->kept[r].latent;
}

int sdm_frame_cache_remaining(const sdm_frame_cache *c, int r)
{
    return c->kept[r].remaining;
}

size_t sdm_frame_cache_rgb_bytes(const sdm_frame_cache *c)
{
    return c->rgb_bytes;
}

void sdm_frame_cache_free(sdm_frame_cache **pc)
{
    sdm_frame_cache *c = pc ? *pc : NULL;

    if (!c)
        return;
    for (int i = 0; i < c->n_renders; i++)
        let_go(c, &c->kept[i]);
    free(c->kept);
    free(c);
    *pc = NULL;
}
