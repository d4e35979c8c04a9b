/* The sampling loop of one batch of frames: the sampler's starting latent,
 * timesteps, guidance, text embeddings and every step's noise put on the
 * device first, then per step the UNet, classifier-free guidance and the
 * sampler's update, with no host copies or syncs in between. That makes the
 * whole loop capturable: on CUDA it is captured once per batch shape as a
 * CUDA graph and replayed for each batch of that shape (one launch instead
 * of thousands). The UNet comes in as a function, so this module knows no
 * model: the render builds it from the engine's (sdm_engine_unet_call). */
#ifndef SDM_DENOISER_H
#define SDM_DENOISER_H

#include <signal.h>
#include <stdint.h>

#include "error.h"
#include "sampler.h"
#include "torch_api.h"

/* One UNet call. args: x [n,C,h,w] float32, t [n] float32, emb [n,L,H] in
 * the model's dtype, and where the UNet takes them (SDXL; NULL otherwise)
 * pooled [n,P] and time ids [n,6] in the model's dtype; *out: [n,C,h,w]
 * float32 (eps, or v). */
typedef int (*sdm_unet_fn)(void *user, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err);
/* Per-step noise [B,C,h,w] for samplers that add it: `draw` counts the
 * draws of each frame's generator after its initial latent, from 0 (an
 * evaluation's noise_draw, sampler.h); asked in increasing order. */
typedef int (*sdm_step_noise_fn)(void *user, int draw, sdm_tensor **noise, sdm_error *err);

/* The guidance rule (diffusers'): a frame with scale g > 1 is guided, its
 * prediction u + g·(c − u) from the UNet run on the negative prompt too;
 * g ≤ 1 takes the conditional prediction alone. A batch with one guided
 * frame runs every frame guided, the others at g = 1. */
static inline int sdm_guided(double g)
{
    return g > 1.0;
}

/* What a batch is conditioned on. The SDXL fields are its UNet's added
 * inputs: given exactly where the denoiser's pooled_size is not 0. */
typedef struct {
    const sdm_tensor *cond; /* [B,L,H] text embeddings, float32 */
    const sdm_tensor *uncond; /* [B,L,H] negative prompts'; read only where a frame is guided
                                           (NULL allowed where none is) */
    const sdm_tensor *pooled; /* SDXL: [B,P] pooled text embedding; NULL */
    const sdm_tensor *uncond_pooled; /* SDXL: the negative prompts' [B,P]; NULL */
    const sdm_tensor *time_ids; /* SDXL: [B,6] size and crop conditioning (the
                                           negative prompts' are the same); NULL */
} sdm_conditioning;

/* One batch of B frames, everything sdm_denoiser_run reads. */
typedef struct {
    const sdm_tensor *latents; /* [B,C,h,w] float32: the initial noise, as drawn (the
                                   denoiser scales it by the schedule's init_sigma) */
    sdm_conditioning cond;
    const double *guidance; /* B scales, one per frame (sdm_guided) */
    sdm_step_noise_fn noise; /* per-step noise, for samplers that add it (NULL otherwise) */
    void *noise_user;
    int first_step; /* the loop runs steps [first_step, n_steps): 0 starts from noise.
                                   Later, image-to-image starts at a later step from latents
                                   already noised to it, which are then taken as they are */
    volatile sig_atomic_t *stop; /* polled between steps (not inside a replayed graph);
                                       non-zero abandons the batch; may be NULL */
} sdm_batch;

typedef struct {
    sdm_device dev;
    sdm_dtype dtype; /* the UNet's: embeddings are cast to it once a batch */
    sdm_unet_fn unet;
    void *unet_user;
    double guidance_rescale; /* diffusers' guidance_rescale of guided batches: 0 (none) .. 1 */
    int pooled_size; /* SDXL: P, the UNet takes pooled [n,P] and time ids [n,6] too; 0: it does not */
} sdm_denoiser_params;

typedef struct sdm_denoiser sdm_denoiser;

int sdm_denoiser_new(const sdm_denoiser_params *p, sdm_denoiser **out, sdm_error *err);
/* Graphs on where the device is CUDA and the build has them; off frees a
 * captured one. sdm_denoiser_graphs says whether they are (still) on: a failed
 * capture turns them off, with a warning. */
void sdm_denoiser_set_graphs(sdm_denoiser *d, int on);
int sdm_denoiser_graphs(const sdm_denoiser *d);

/* Batch b through schedule s. Replays the captured graph where the batch's
 * shape, guidance, noise and schedule are the captured ones; else runs step
 * by step (first freeing a captured graph: its memory is what the other
 * shape needs). 0: *out is the final latent [B,C,h,w] float32; 1: stopped
 * (b->stop); -1: err is set (err->out_of_memory where a smaller batch may
 * fit). */
int sdm_denoiser_run(sdm_denoiser *d, const sdm_schedule *s, const sdm_batch *b, sdm_tensor **out, sdm_error *err);

/* Captures the loop of schedule s (from step 0) for latents of shape
 * `latent` [B,C,h,w] and text embeddings `text` [B,L,H] (and, with
 * pooled_size, pooled embeddings and time ids), guided or not.
 * Call after the UNet has run at this shape a few times (TorchScript
 * profiles its first runs: sdm_engine_warmup). A capture that fails turns
 * graphs off with a warning and returns 0: rendering goes on step by step.
 * -1 only where the replay that uploads the graph fails. */
int sdm_denoiser_capture(sdm_denoiser *d, const sdm_schedule *s, const int64_t latent[4], const int64_t text[3],
                         int guided, sdm_error *err);
/* Frees a captured graph and the memory it holds. Call before the UNet it
 * captured is freed (an AOTInductor package's buffers are in the graph). */
void sdm_denoiser_release(sdm_denoiser *d);
void sdm_denoiser_free(sdm_denoiser **d);

#endif
