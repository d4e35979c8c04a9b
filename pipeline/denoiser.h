/* The sampling loop of one batch of frames: timesteps, guidance, text
 * embeddings and every step's noise put on the device first, then per step
 * the UNet, classifier-free guidance and the sampler's update, with no host
 * copies or syncs in between. That makes the whole loop capturable: on CUDA
 * it is captured once per batch shape as a CUDA graph and replayed for each
 * batch of that shape (one launch instead of thousands). */
#ifndef SDM_DENOISER_H
#define SDM_DENOISER_H

#include <signal.h>
#include <stdint.h>

#include "error.h"
#include "sampler.h"
#include "torch_api.h"

/* One UNet call. args: x [n,C,h,w] float32, t [n] float32, emb [n,L,H] in
 * the model's dtype; *out: [n,C,h,w] float32 (eps, or v). */
typedef int (*sdm_unet_fn)(void *user, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err);
/* Per-step noise [B,C,h,w] for samplers that add it. */
typedef int (*sdm_step_noise_fn)(void *user, int step, sdm_tensor **noise, sdm_error *err);

typedef struct {
    sdm_device dev;
    sdm_dtype dtype;        /* the UNet's: embeddings are cast to it once a batch */
    sdm_unet_fn unet;
    void *unet_user;
} sdm_denoiser_params;

typedef struct sdm_denoiser sdm_denoiser;

int sdm_denoiser_new(const sdm_denoiser_params *p, sdm_denoiser **out, sdm_error *err);
/* Graphs on where the device is CUDA and the build has them; off frees a
 * captured one. sdm_denoiser_graphs says whether they are (still) on: a failed
 * capture turns them off, with a warning. */
void sdm_denoiser_set_graphs(sdm_denoiser *d, int on);
int sdm_denoiser_graphs(const sdm_denoiser *d);

/* One batch of B frames through the whole schedule s.
 *   x      [B,C,h,w] initial noise (float32, already · init_sigma)
 *   cond   [B,L,H], uncond [B,L,H] (NULL when no frame is guided)
 *   g      B guidance scales (≤ 1: conditional only, as diffusers does)
 *   noise  per-step noise source for samplers that need it (NULL otherwise)
 *   stop   polled between steps (not inside a replayed graph); non-zero
 *          abandons the batch (returns 1)
 * Replays the captured graph where the batch's shape and schedule are the
 * captured ones; else runs step by step (first freeing a captured graph:
 * its memory is what the other shape needs). *out: the final latent. */
int sdm_denoiser_run(sdm_denoiser *d, const sdm_schedule *s, const sdm_tensor *x, const sdm_tensor *cond,
                 const sdm_tensor *uncond, const double *g, sdm_step_noise_fn noise, void *noise_user,
                 volatile sig_atomic_t *stop, sdm_tensor **out, sdm_error *err);

/* Captures the loop of schedule s for latents of shape `latent` [B,C,h,w]
 * and text embeddings `text` [B,L,H]. Call after the UNet has run at this
 * shape a few times (TorchScript profiles its first runs). A capture that
 * fails turns graphs off with a warning and returns 0: rendering goes on
 * step by step. */
int sdm_denoiser_capture(sdm_denoiser *d, const sdm_schedule *s, const int64_t latent[4], const int64_t text[3],
                     int guided, sdm_error *err);
/* Frees a captured graph and the memory it holds. */
void sdm_denoiser_release(sdm_denoiser *d);
void sdm_denoiser_free(sdm_denoiser **d);

#endif
