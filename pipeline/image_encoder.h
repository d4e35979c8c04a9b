/* The bundle's VAE encoder (files.vae_encoder, vae_encoder.pt), for frames
 * that start from a picture: RGB24 pixels to the latent distribution they
 * encode to, and a latent drawn from it as diffusers' image-to-image draws
 * one (latent_dist.sample(generator), then times the scaling factor). The
 * encoder is loaded when the first picture needs it; a bundle without one
 * is refused then, with what to do about it. */
#ifndef SDM_IMAGE_ENCODER_H
#define SDM_IMAGE_ENCODER_H

#include <stdint.h>

#include "bundle.h"
#include "error.h"
#include "torch_api.h"

typedef struct sdm_image_encoder sdm_image_encoder;

/* The latent distribution of one picture, on the host: mean and std
 * (exp(logvar/2), logvar clamped to [-30, 20] as diffusers'
 * DiagonalGaussianDistribution), c·h·w floats each, unscaled. */
typedef struct {
    float *mean, *std;
    int c, h, w;
} sdm_latent_dist;

/* An error where bundle b has no VAE encoder (nothing is loaded). */
int sdm_image_encoder_check(const sdm_bundle *b, sdm_error *err);
int sdm_image_encoder_open(const sdm_bundle *b, sdm_device dev, sdm_dtype dtype, sdm_image_encoder **out,
                           sdm_error *err);
/* rgb: width × height × 3 bytes; the picture goes in as diffusers' image
 * processor makes it (x/255·2 − 1, float32). `what` names it in errors. */
int sdm_image_encode(sdm_image_encoder *enc, const uint8_t *rgb, int width, int height, const char *what,
                     sdm_latent_dist *out, sdm_error *err);
/* out = scaling·(mean + std·eps), in float32 as torch computes it. */
void sdm_latent_dist_sample(const sdm_latent_dist *d, double scaling, const float *eps, float *out);
void sdm_latent_dist_clear(sdm_latent_dist *d);
void sdm_image_encoder_free(sdm_image_encoder **enc);

#endif
