/* The starting latents of frames that start from pictures: each of the
 * recipe's pictures read (image_in.h) and encoded once (image_encoder.h),
 * then per frame drawn from its distribution with the frame's noise and
 * mixed as the frame's prompts are. */
#ifndef SDM_IMAGE_LATENTS_H
#define SDM_IMAGE_LATENTS_H

#include "bundle.h"
#include "inputs.h"
#include "recipe.h"
#include "torch_api.h"

typedef struct sdm_image_latents sdm_image_latents;

/* For recipe r's pictures at width × height pixels, encoded by bundle b's
 * VAE encoder on dev (opened at the first picture). */
int sdm_image_latents_new(const sdm_recipe *r, const sdm_bundle *b, sdm_device dev, sdm_dtype dtype, int width,
                          int height, sdm_image_latents **out, sdm_error *err);
/* The latent of mix m of pictures (ids: keyframe indices, SDM_NO_IMAGE on
 * a side: that picture fades, lerped toward zero): each picture's
 * scaling·(mean + std·eps), eps c·h·w host floats, then lerped or slerped
 * with weight m->t. [1,C,h,w] float32 on the device. */
int sdm_image_latents_mix(sdm_image_latents *il, const sdm_mix *m, const float *eps, sdm_tensor **out, sdm_error *err);
void sdm_image_latents_free(sdm_image_latents **il);

#endif
