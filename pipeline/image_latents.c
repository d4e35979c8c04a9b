#include "image_latents.h"

#include <stdlib.h>
#include <string.h>

#include "image_encoder.h"
#include "image_in.h"
#include "torch_error.h"

struct sdm_image_latents {
    const sdm_recipe *recipe;
    const sdm_bundle *bundle;
    sdm_device dev;
    sdm_dtype dtype;
    int width, height;
    sdm_image_encoder *encoder; /* opened at the first picture */
    sdm_latent_dist *dists; /* per keyframe: its picture's, where encoded (mean != NULL) */
};

int sdm_image_latents_new(const sdm_recipe *r, const sdm_bundle *b, sdm_device dev, sdm_dtype dtype, int width,
                          int height, sdm_image_latents **out, sdm_error *err)
{
    sdm_image_latents *il = calloc(1, sizeof *il);

    *out = NULL;
    if (il)
        il->dists = calloc(r->n_keyframes > 0 ? r->n_keyframes : 1, sizeof *il->dists);
    if (!il || !il->dists) {
        free(il);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    il->recipe = r;
    il->bundle = b;
    il->dev = dev;
    il->dtype = dtype;
    il->width = width;
    il->height = height;
    *out = il;
    return 0;
}

/* Keyframe k's picture, read and encoded on first use. */
static int picture_dist(sdm_image_latents *il, int k, const sdm_latent_dist **out, sdm_error *err)
{
    const sdm_keyframe *kf = &il->recipe->keyframes[k];
    uint8_t *rgb = NULL;
    int rc;

    if (!il->dists[k].mean) {
        if (!il->encoder && sdm_image_encoder_open(il->bundle, il->dev, il->dtype, &il->encoder, err))
            return -1;
        if (sdm_image_load(kf->image, il->width, il->height, kf->fit, &rgb, err))
            return -1;
        rc = sdm_image_encode(il->encoder, rgb, il->width, il->height, kf->image, &il->dists[k], err);
        free(rgb);
        if (rc)
            return -1;
    }
    *out = &il->dists[k];
    return 0;
}

/* Picture `id`'s latent drawn with eps, on the device; NULL for SDM_NO_IMAGE. */
static int drawn_latent(sdm_image_latents *il, uint64_t id, const float *eps, sdm_tensor **out, sdm_error *err)
{
    const sdm_latent_dist *d;
    int64_t shape[4];
    float *z;
    sdm_torch_status st;

    *out = NULL;
    if (id == SDM_NO_IMAGE)
        return 0;
    if (id >= (uint64_t)il->recipe->n_keyframes || !il->recipe->keyframes[id].image)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: no picture %llu", (unsigned long long)id);
    if (picture_dist(il, (int)id, &d, err))
        return -1;
    z = malloc((size_t)d->c * d->h * d->w * sizeof *z);
    if (!z)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    sdm_latent_dist_sample(d, il->bundle->scaling_factor, eps, z);
    shape[0] = 1;
    shape[1] = d->c;
    shape[2] = d->h;
    shape[3] = d->w;
    st = sdm_tensor_from_host(z, SDM_F32, shape, 4, il->dev, out);
    free(z);
    return st ? sdm_torch_error(err, st, "picture latent") : 0;
}

int sdm_image_latents_mix(sdm_image_latents *il, const sdm_mix *m, const float *eps, sdm_tensor **out, sdm_error *err)
{
    sdm_tensor *a = NULL, *b = NULL;
    sdm_torch_status st;
    int rc = -1;

    *out = NULL;
    if (drawn_latent(il, m->a, eps, &a, err) || (m->t > 0 && drawn_latent(il, m->b, eps, &b, err)))
        goto end;
    if (m->t == 0)
        st = sdm_tensor_clone(a, out);
    else if (a && b && m->how == SDM_INTERP_SLERP)
        st = sdm_tensor_slerp(a, b, m->t, 0, out);
    else if (a && b)
        st = sdm_tensor_axpby(1.0 - m->t, a, m->t, b, out);
    else /* one side has no picture: the other fades */
        st = a ? sdm_tensor_axpby(1.0 - m->t, a, 0, NULL, out) : sdm_tensor_axpby(m->t, b, 0, NULL, out);
    if (st) {
        sdm_torch_error(err, st, "mixing pictures");
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&a);
    sdm_tensor_free(&b);
    return rc;
}

void sdm_image_latents_free(sdm_image_latents **pil)
{
    sdm_image_latents *il = pil ? *pil : NULL;

    if (!il)
        return;
    for (int k = 0; k < il->recipe->n_keyframes; k++)
        sdm_latent_dist_clear(&il->dists[k]);
    free(il->dists);
    sdm_image_encoder_free(&il->encoder);
    free(il);
    *pil = NULL;
}
