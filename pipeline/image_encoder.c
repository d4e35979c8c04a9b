#include "image_encoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "torch_error.h"

struct sdm_image_encoder {
    const sdm_bundle *bundle;
    sdm_device dev;
    sdm_dtype dtype;
    sdm_module *module;
};

int sdm_image_encoder_check(const sdm_bundle *b, sdm_error *err)
{
    if (b->vae_encoder[0])
        return 0;
    return sdm_error_set(err, SDM_EXIT_USAGE,
                         "the model %s has no VAE encoder (files.vae_encoder in its model.yaml), which starting from "
                         "a picture needs: export the bundle again with pipeline/export/export_sd.py",
                         b->dir);
}

int sdm_image_encoder_open(const sdm_bundle *b, sdm_device dev, sdm_dtype dtype, sdm_image_encoder **out,
                           sdm_error *err)
{
    sdm_image_encoder *enc;

    *out = NULL;
    if (sdm_image_encoder_check(b, err))
        return -1;
    enc = calloc(1, sizeof *enc);
    if (!enc)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    enc->bundle = b;
    enc->dev = dev;
    if (sdm_module_load(b->vae_encoder, dev, &enc->module)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot load model file %s: %s", b->vae_encoder, sdm_torch_last_error());
        free(enc);
        return -1;
    }
    /* the VAE may compute in another dtype than the rest (SDXL's in float32) */
    enc->dtype = dtype == SDM_F32 ? SDM_F32 : sdm_module_dtype(enc->module);
    *out = enc;
    return 0;
}

/* The picture as the encoder takes it: [1,3,H,W] in [-1,1], the module's dtype, on its device. */
static sdm_torch_status pixels_tensor(const sdm_image_encoder *enc, const uint8_t *rgb, int width, int height,
                                      sdm_tensor **out)
{
    size_t plane = (size_t)width * height;
    float *buf = malloc(plane * 3 * sizeof *buf);
    int64_t shape[4] = { 1, 3, height, width };
    sdm_tensor *x = NULL;
    sdm_torch_status st;

    if (!buf)
        return SDM_TORCH_ERROR;
    for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < 3; ch++)
            buf[ch * plane + i] = 2.0f * ((float)rgb[3 * i + ch] / 255.0f) - 1.0f;
    st = sdm_tensor_from_host(buf, SDM_F32, shape, 4, enc->dev, &x);
    free(buf);
    if (!st && enc->dtype != SDM_F32) {
        st = sdm_tensor_to(x, enc->dev, enc->dtype, out);
        sdm_tensor_free(&x);
        return st;
    }
    *out = x;
    return st;
}

/* moments [1,2C,h,w] on the host into d: mean, and std from the logvar. */
static int split_moments(const float *m, int c, int h, int w, sdm_latent_dist *d)
{
    size_t n = (size_t)c * h * w;

    d->mean = malloc(n * sizeof *d->mean);
    d->std = malloc(n * sizeof *d->std);
    if (!d->mean || !d->std)
        return -1;
    d->c = c;
    d->h = h;
    d->w = w;
    memcpy(d->mean, m, n * sizeof *m);
    for (size_t i = 0; i < n; i++)
        d->std[i] = expf(0.5f * fminf(fmaxf(m[n + i], -30.0f), 20.0f));
    return 0;
}

int sdm_image_encode(sdm_image_encoder *enc, const uint8_t *rgb, int width, int height, const char *what,
                     sdm_latent_dist *out, sdm_error *err)
{
    const sdm_bundle *b = enc->bundle;
    int c = b->latent_channels, h = height / b->vae_scale, w = width / b->vae_scale, rc = -1;
    sdm_tensor *x = NULL, *m = NULL;
    float *host = NULL;
    sdm_torch_status st;

    memset(out, 0, sizeof *out);
    st = pixels_tensor(enc, rgb, width, height, &x);
    if (!st)
        st = sdm_module_call(enc->module, NULL, &x, 1, &m);
    if (st) {
        sdm_torch_error(err, st, "encoding the picture");
        goto end;
    }
    if (sdm_tensor_ndim(m) != 4 || sdm_tensor_dim(m, 0) != 1 || sdm_tensor_dim(m, 1) != 2 * c ||
        sdm_tensor_dim(m, 2) != h || sdm_tensor_dim(m, 3) != w) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s does not give [1,%d,%d,%d] moments for %s (%dx%d)", b->vae_encoder,
                      2 * c, h, w, what, width, height);
        goto end;
    }
    host = malloc((size_t)2 * c * h * w * sizeof *host);
    if (!host || sdm_tensor_to_host(m, SDM_F32, host, (size_t)2 * c * h * w * sizeof *host) ||
        split_moments(host, c, h, w, out)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "encoding %s: out of memory", what);
        goto end;
    }
    rc = 0;
end:
    if (rc)
        sdm_latent_dist_clear(out);
    free(host);
    sdm_tensor_free(&x);
    sdm_tensor_free(&m);
    return rc;
}

void sdm_latent_dist_sample(const sdm_latent_dist *d, double scaling, const float *eps, float *out)
{
    size_t n = (size_t)d->c * d->h * d->w;
    float s = (float)scaling;

    for (size_t i = 0; i < n; i++)
        out[i] = s * (d->mean[i] + d->std[i] * eps[i]);
}

void sdm_latent_dist_clear(sdm_latent_dist *d)
{
    free(d->mean);
    free(d->std);
    memset(d, 0, sizeof *d);
}

void sdm_image_encoder_free(sdm_image_encoder **enc)
{
    if (!enc || !*enc)
        return;
    sdm_module_free(&(*enc)->module);
    free(*enc);
    *enc = NULL;
}
