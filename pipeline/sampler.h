/* Samplers as per-evaluation coefficients computed on the host in double.
 * Every supported sampler is linear in the current latent x, the model's
 * output, a few tensors it keeps between evaluations (slots: earlier
 * outputs, denoised estimates, derivatives, samples) and fresh noise:
 *
 *     unet input    = c_in · x                              (at timestep t)
 *     slot[k]      ← save[k] · (x, out, slot, noise)        (where saves has bit k)
 *     x            ← next · (x, out, slot, noise)
 *
 * (both from the values before the evaluation), so the device does a few
 * fused axpby's per UNet call and never syncs. A schedule is a list of UNet
 * evaluations: one per step for most samplers, 2·steps − 1 for heun,
 * steps + 1 for pndm.
 *
 * Each sampler follows the diffusers scheduler of the same name, loaded
 * from the checkpoint's scheduler config (model.yaml's schedule: section;
 * no timestep_spacing key: each class's default spacing), step for step:
 *   ddim          DDIMScheduler: "leading" + steps_offset, final alpha 1 or
 *                 alphas_cumprod[0] (set_alpha_to_one), eta.
 *   euler         EulerDiscreteScheduler: "linspace", sigmas linearly
 *                 interpolated at fractional timesteps, final sigma 0;
 *                 karras: Karras sigmas (rho 7), timesteps from log-sigma
 *                 interpolation.
 *   euler_a       EulerAncestralDiscreteScheduler: sigma_up/down, fresh noise
 *                 each step. No Karras sigmas.
 *   dpmpp_2m      DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint,
 *                 lower_order_final, final sigma 0); karras as diffusers.
 *   dpmpp_2m_sde  the same with algorithm_type sde-dpmsolver++ (noise each step).
 *   pndm          PNDMScheduler with skip_prk_steps (PLMS; SD 1.x's own).
 *   lms           LMSDiscreteScheduler, order 4 (coefficients integrated exactly).
 *   heun          HeunDiscreteScheduler: two UNet calls a step but the last.
 *   unipc         UniPCMultistepScheduler: bh2, order 2, predict_x0, corrector on.
 *   lcm           LCMScheduler: original_inference_steps, timestep_scaling;
 *                 noise each step but the last.
 * Image-to-image begins at a later step with the scheduler's state fresh,
 * as diffusers' pipeline does (set_begin_index): multistep solvers take a
 * first-order step there; lms keeps its global order and leaves out the
 * derivatives it has not seen, as diffusers' LMSDiscreteScheduler does;
 * pndm runs its PLMS list from the entry the start selects.
 * x is in each scheduler's own scaling: sigma samplers (euler, euler_a, lms,
 * heun) work on x = x0 + sigma·eps and start from randn · init_sigma; the
 * others on sqrt(a)·x0 + sqrt(1−a)·eps and start from randn. */
#ifndef SDM_SAMPLER_H
#define SDM_SAMPLER_H

#include <stdint.h>

#include "bundle.h"
#include "recipe.h"

#define SDM_SLOTS 4

/* A linear combination of what an evaluation sees. */
typedef struct {
    double x, out, slot[SDM_SLOTS], noise;
} sdm_lin;

typedef struct {
    double t; /* timestep given to the UNet (may be fractional) */
    double sigma; /* noise level of x at this evaluation, sqrt((1−ᾱ)/ᾱ) */
    double c_in;
    double x0_x, x0_out; /* the denoised estimate: x0 = x0_x·x + x0_out·out */
    sdm_lin next; /* the new x */
    sdm_lin save[SDM_SLOTS];
    unsigned saves; /* bit k: slot k takes save[k] */
    int noise_draw; /* ≥ 0: this evaluation's noise is the frame generator's draw
                               noise_draw + 1 (draw 0 is the initial latent); -1: none */
} sdm_step;

typedef struct {
    sdm_sampler kind; /* never auto: resolved from the bundle */
    int karras; /* as resolved */
    sdm_spacing spacing; /* as resolved (never SDM_SPACING_DEFAULT) */
    int n_steps; /* UNet evaluations */
    int sampler_steps; /* the steps asked for */
    sdm_step *steps;
    double init_sigma; /* initial noise is randn · init_sigma */
    int uses_noise; /* some evaluation adds noise */
    int uses_prev; /* some evaluation keeps slots */
    /* image-to-image (sdm_sampler_params.from_image): the evaluations from
     * sampler step `start` on, as the scheduler runs them when it begins
     * there; the starting latent is start_x·image + start_noise·noise, given
     * to the denoiser as it is (init_sigma 1). n_steps 0: start == steps,
     * no evaluation at all (the latent is the image's). */
    int from_image, start;
    double start_x, start_noise;
} sdm_schedule;

typedef struct {
    sdm_sampler kind; /* SDM_SAMPLER_AUTO: the bundle's scheduler */
    int steps;
    double eta; /* ddim only: 0 deterministic .. 1 DDPM-like */
    int karras; /* Karras sigmas (samplers that have them) */
    sdm_spacing spacing; /* SDM_SPACING_DEFAULT: the bundle's, else the class's */
    int from_image; /* 0: from noise; 1: image-to-image, beginning at sampler step `start` */
    int start; /* 0..steps (sdm_image_start_step) */
} sdm_sampler_params;

/* auto, 50 steps, eta 0, no Karras sigmas, the default spacing. */
sdm_sampler_params sdm_sampler_default_params(void);

/* What kind (and Karras sigmas) `auto` means for bundle b: its scheduler
 * (model.yaml's schedule.scheduler), ddim where it names none. */
sdm_sampler sdm_sampler_auto(const sdm_bundle *b, int *karras);

/* The sampler step an image start at `strength` (0..1) begins at, as
 * diffusers' image-to-image get_timesteps: steps − min(⌊steps·strength⌋,
 * steps); `steps` means none runs. */
int sdm_image_start_step(int steps, double strength);

/* Builds the coefficient table; bad parameters (steps out of range, eta or
 * karras for a sampler without them) are SDM_EXIT_USAGE errors. */
int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule *out, sdm_error *err);
void sdm_schedule_free(sdm_schedule *s);

/* The schedules of one render: from noise, and those of image starts at
 * each step, made on first use (frames of a morph may start at several). */
typedef struct {
    const sdm_bundle *bundle;
    sdm_sampler_params params; /* of the one from noise */
    sdm_schedule noise;
    sdm_schedule *starts; /* [params.steps + 1]; made[i]: starts[i] is */
    char *made;
} sdm_schedule_set;

/* Makes the schedule from noise (what sdm_schedule_make refuses, this does). */
int sdm_schedule_set_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule_set *out, sdm_error *err);
/* start -1: the schedule from noise; 0..steps: the image start there. */
const sdm_schedule *sdm_schedule_set_get(sdm_schedule_set *s, int start, sdm_error *err);
void sdm_schedule_set_free(sdm_schedule_set *s);

#endif
