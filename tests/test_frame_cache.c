/* The cache of frames shown again: images while they fit the budget,
 * latents beyond it, each let go at its last showing, copies throughout. */
#include <stdint.h>

#include "frame_cache.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };

enum { FRAME = 2 * 2 * 3 }; /* a 2x2 RGB frame */

/* [n,4,1,1] latents whose row j holds j everywhere. */
static sdm_tensor *row_latents(int n)
{
    float v[4 * 8];
    int64_t shape[4] = { n, 4, 1, 1 };
    sdm_tensor *t = NULL;

    for (int i = 0; i < 4 * n; i++)
        v[i] = (float)(i / 4);
    if (sdm_tensor_from_host(v, SDM_F32, shape, 4, cpu, &t))
        fprintf(stderr, "latents: %s\n", sdm_torch_last_error());
    return t;
}

/* Every value of t equal to want, and shape [1,4,1,1]. */
static int latent_is(const sdm_tensor *t, float want)
{
    float v[4];

    if (!t || sdm_tensor_ndim(t) != 4 || sdm_tensor_dim(t, 0) != 1 || sdm_tensor_numel(t) != 4 ||
        sdm_tensor_to_host(t, SDM_F32, v, sizeof v))
        return 0;
    for (int i = 0; i < 4; i++)
        if (v[i] != want)
            return 0;
    return 1;
}

static void fill(uint8_t *rgb, uint8_t value)
{
    memset(rgb, value, FRAME);
}

/* Room for two images: the third render shown again becomes a latent;
 * a showing that is the last lets its frame go and frees its room. */
static void test_budget(void)
{
    /* renders 0..4 shown as 0 1 2 1 0 3 3; render 4 is never shown */
    const int seq[] = { 0, 1, 2, 1, 0, 3, 3 };
    sdm_frame_cache *c = NULL;
    sdm_tensor *lat = row_latents(5);
    uint8_t rgb[5][FRAME];
    sdm_error err = { 0 };
    const uint8_t *kept0;

    for (int i = 0; i < 5; i++)
        fill(rgb[i], (uint8_t)(10 * (i + 1)));
    CHECK_INT(sdm_frame_cache_new(seq, 7, 5, FRAME, 2 * FRAME, &c, &err), 0);
    if (!c || !lat)
        goto end;
    CHECK_INT(sdm_frame_cache_remaining(c, 0), 2);
    CHECK_INT(sdm_frame_cache_remaining(c, 2), 1);
    CHECK_INT(sdm_frame_cache_remaining(c, 4), 0);

    for (int r = 0; r < 3; r++)
        CHECK_INT(sdm_frame_cache_keep(c, r, rgb[r], lat, r, &err), 0);
    CHECK(sdm_frame_cache_rgb(c, 0) && sdm_frame_cache_rgb(c, 1));
    CHECK(sdm_frame_cache_rgb(c, 2) == NULL);
    CHECK(latent_is(sdm_frame_cache_latent(c, 2), 2.0f));
    CHECK(sdm_frame_cache_latent(c, 0) == NULL);
    CHECK_INT(sdm_frame_cache_rgb_bytes(c), 2 * FRAME);

    /* a copy, not the caller's memory; kept once, not replaced */
    kept0 = sdm_frame_cache_rgb(c, 0);
    fill(rgb[0], 99);
    CHECK(kept0 && kept0[0] == 10 && kept0[FRAME - 1] == 10);
    CHECK_INT(sdm_frame_cache_keep(c, 0, rgb[0], lat, 0, &err), 0);
    CHECK(sdm_frame_cache_rgb(c, 0) == kept0);

    /* never shown: nothing to keep */
    CHECK_INT(sdm_frame_cache_keep(c, 4, rgb[4], lat, 4, &err), 0);
    CHECK(sdm_frame_cache_rgb(c, 4) == NULL && sdm_frame_cache_latent(c, 4) == NULL);

    /* render 0: kept after its first showing, let go at its last */
    sdm_frame_cache_shown(c, 0);
    CHECK(sdm_frame_cache_rgb(c, 0) == kept0);
    sdm_frame_cache_shown(c, 0);
    CHECK_INT(sdm_frame_cache_remaining(c, 0), 0);
    CHECK(sdm_frame_cache_rgb(c, 0) == NULL);
    CHECK_INT(sdm_frame_cache_rgb_bytes(c), FRAME);
    /* ... and no longer wanted: a late keep keeps nothing */
    CHECK_INT(sdm_frame_cache_keep(c, 0, rgb[0], lat, 0, &err), 0);
    CHECK(sdm_frame_cache_rgb(c, 0) == NULL);
    /* its room goes to the next image */
    CHECK_INT(sdm_frame_cache_keep(c, 3, rgb[3], lat, 3, &err), 0);
    CHECK(sdm_frame_cache_rgb(c, 3) && sdm_frame_cache_rgb(c, 3)[0] == 40);
    CHECK_INT(sdm_frame_cache_rgb_bytes(c), 2 * FRAME);

    /* a latent is let go at its last showing too */
    sdm_frame_cache_shown(c, 2);
    CHECK(sdm_frame_cache_latent(c, 2) == NULL);
    /* showings past the last change nothing */
    sdm_frame_cache_shown(c, 2);
    CHECK_INT(sdm_frame_cache_remaining(c, 2), 0);
end:
    CHECK_INT(err.code, 0);
    sdm_frame_cache_free(&c); /* still holds renders 1 and 3 */
    CHECK(c == NULL);
    sdm_tensor_free(&lat);
}

/* No budget: every frame shown again is kept as its latent, its own copy
 * of the batch's row (the batch may go). */
static void test_latents_only(void)
{
    const int seq[] = { 0, 1, 1, 0 };
    sdm_frame_cache *c = NULL;
    sdm_tensor *lat = row_latents(2);
    uint8_t rgb[FRAME];
    sdm_error err = { 0 };

    fill(rgb, 7);
    CHECK_INT(sdm_frame_cache_new(seq, 4, 2, FRAME, 0, &c, &err), 0);
    if (!c || !lat)
        goto end;
    CHECK_INT(sdm_frame_cache_keep(c, 0, rgb, lat, 0, &err), 0);
    CHECK_INT(sdm_frame_cache_keep(c, 1, rgb, lat, 1, &err), 0);
    sdm_tensor_free(&lat);
    CHECK(sdm_frame_cache_rgb(c, 0) == NULL && sdm_frame_cache_rgb(c, 1) == NULL);
    CHECK(latent_is(sdm_frame_cache_latent(c, 0), 0.0f));
    CHECK(latent_is(sdm_frame_cache_latent(c, 1), 1.0f));
    CHECK_INT(sdm_frame_cache_rgb_bytes(c), 0);
    sdm_frame_cache_shown(c, 1);
    sdm_frame_cache_shown(c, 1);
    CHECK_INT(sdm_frame_cache_remaining(c, 1), 0);
    CHECK(sdm_frame_cache_latent(c, 1) == NULL);
end:
    sdm_frame_cache_free(&c);
    sdm_frame_cache_free(&c); /* a second free is harmless */
    sdm_tensor_free(&lat);
}

/* A bad row fails with torch's message, keeping nothing. */
static void test_bad_row(void)
{
    const int seq[] = { 0, 0 };
    sdm_frame_cache *c = NULL;
    sdm_tensor *lat = row_latents(1);
    uint8_t rgb[FRAME];
    sdm_error err = { 0 };

    fill(rgb, 1);
    CHECK_INT(sdm_frame_cache_new(seq, 2, 1, FRAME, 0, &c, &err), 0);
    if (c && lat) {
        CHECK_INT(sdm_frame_cache_keep(c, 0, rgb, lat, 3, &err), -1);
        CHECK_INT(err.code, SDM_EXIT_RUNTIME);
        CHECK_CONTAINS(err.msg, "keeping a frame failed: narrow: rows [3, 4)");
        CHECK(sdm_frame_cache_latent(c, 0) == NULL);
    }
    sdm_frame_cache_free(&c);
    sdm_tensor_free(&lat);
}

int main(void)
{
    test_budget();
    test_latents_only();
    test_bad_row();
    return test_report();
}
