/* Per-frame conditioning: the text embeddings (conditional and negative)
 * and the initial noise of one planned frame, from the keyframes it mixes
 * or the walk step it is, and the pictures' latent it starts from. For
 * SDXL a text's conditioning is the pair (embedding, pooled embedding),
 * both mixed with the same weight and both walked, plus the time ids from
 * the recipe's size; an empty negative prompt is zeros (the bundle's
 * force_zeros_for_empty_prompt). In a recipe with pictures every seed's
 * stream begins as diffusers' image-to-image draws it: the picture's
 * latent sample first, then the initial noise, then the samplers'
 * per-step noise (text-only frames too, so noise is continuous between
 * frames with and without pictures). Everything is a pure function of the recipe and
 * the frame, so any frame can be rendered alone and comes out the same. */
#ifndef SDM_CONDITION_H
#define SDM_CONDITION_H

#include "engine.h"
#include "plan.h"

typedef struct sdm_conditioner sdm_conditioner;

typedef struct {
    sdm_tensor *cond; /* [1,L,H] */
    sdm_tensor *uncond; /* [1,L,H] */
    sdm_tensor *pooled; /* SDXL: [1,P], mixed and walked as cond; else NULL */
    sdm_tensor *uncond_pooled; /* SDXL: [1,P]; else NULL */
    sdm_tensor *time_ids; /* SDXL: [1,6] size and crop conditioning; else NULL */
    sdm_tensor *noise; /* [1,C,h,w], float32, before init_sigma */
    double guidance;
    uint64_t seed_a, seed_b; /* the seeds mixed, for per-step noise, as inputs.h */
    double seed_t; /* puts them: seed_b == seed_a, seed_t == 0 for one alone */
    sdm_generator *gen[2]; /* the seeds' streams, for per-step noise: made on first use */
    int drawn[2]; /* draws each has given after the initial latent */
    sdm_tensor *image; /* [1,C,h,w] float32: the pictures' latent it starts from; NULL: from noise */
    double strength; /* with image: 0..1, the part of the schedule that runs */
} sdm_frame_cond;

/* Encodes every text of the recipe now (the engine caches them), so the
 * text encoders can go before sampling (sdm_engine_release_text). */
int sdm_conditioner_new(sdm_engine *e, const sdm_recipe *r, int latent_h, int latent_w, sdm_conditioner **out,
                        sdm_error *err);
/* Token rows of every text embedding of the render: each text is padded
 * with empty-prompt chunks to the most any of the recipe's texts needs
 * (A1111 pads a batch so), so any two mix and the UNet sees one shape. */
int sdm_conditioner_tokens(const sdm_conditioner *c);
/* The texts' chunks and weights as a JSON value, for the sidecar. */
const char *sdm_conditioner_texts_json(const sdm_conditioner *c);
int sdm_conditioner_frame(sdm_conditioner *c, const sdm_plan_frame *f, sdm_frame_cond *out, sdm_error *err);
/* The sampler step frame f starts at (sdm_image_start_step of its
 * strength) where it starts from pictures; -1 where it starts from noise. */
int sdm_conditioner_start(const sdm_conditioner *c, const sdm_plan_frame *f, int steps);
void sdm_frame_cond_clear(sdm_frame_cond *fc);

/* The noise samplers add, for one frame: draw `draw` (from 0) after the
 * initial latent of each seed's one CPU generator, as diffusers draws a
 * generator's stream (the latents first, then each step's noise), slerped
 * between the two seeds like the initial noise. Cheapest asked in
 * increasing order; any order gives the same values. */
int sdm_conditioner_step_noise(sdm_conditioner *c, sdm_frame_cond *fc, int draw, sdm_tensor **out, sdm_error *err);
void sdm_conditioner_free(sdm_conditioner **c);

/* The seed of walk step k's embedding noise: a fixed mix of (noise_seed, k),
 * so each step has its own stream and frame k can be recomputed alone. */
uint64_t sdm_walk_noise_seed(uint64_t noise_seed, int k);
/* The seed of walk step k's noise for SDXL's pooled embedding: a stream of
 * its own, as sdm_walk_noise_seed's of a salted noise_seed. */
uint64_t sdm_walk_pooled_noise_seed(uint64_t noise_seed, int k);
/* SDXL's time ids of a recipe for a frame of width×height: original size,
 * crop corner, target size, each (height, width); diffusers' defaults
 * (the frame's size, no crop) where the recipe does not say. */
void sdm_time_ids(const sdm_recipe *r, int width, int height, float out[6]);

#endif
