/* Samplers as per-step coefficients computed on the host in double. Every
 * supported sampler's step is linear in the current latent x, the model's
 * output, the previous step's denoised estimate and fresh noise:
 *
 *     unet input      = c_in · x                     (at timestep t)
 *     denoised x0     = x0_x · x + x0_out · out
 *     x_next          = cx · x + cout · out + cprev · x0_prev + cnoise · noise
 *
 * so the device does a few fused axpby's per step and never syncs.
 *
 * Each sampler follows the diffusers scheduler of the same name, loaded
 * from an SD scheduler config (no timestep_spacing key, so each class's
 * default spacing), step for step:
 *   ddim      DDIMScheduler: "leading" spacing + steps_offset, final alpha
 *             1 or alphas_cumprod[0] (set_alpha_to_one), eta.
 *   euler     EulerDiscreteScheduler: "linspace" spacing, sigmas linearly
 *             interpolated at fractional timesteps, final sigma 0; karras:
 *             Karras sigmas (rho 7) with timesteps from log-sigma
 *             interpolation (left fractional).
 *   euler_a   EulerAncestralDiscreteScheduler: "linspace", sigma_up/down,
 *             fresh noise each step (none on the last). No Karras sigmas.
 *   dpmpp_2m  DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint,
 *             lower_order_final, final sigma 0): first and last steps first
 *             order; "linspace" spacing with rounded integer timesteps;
 *             karras: Karras sigmas, timesteps rounded.
 * x is in each scheduler's own scaling: sigma samplers (euler, euler_a) work
 * on x = x0 + sigma·eps and start from randn · init_sigma; ddim and
 * dpmpp_2m on sqrt(a)·x0 + sqrt(1−a)·eps and start from randn. */
#ifndef SDM_SAMPLER_H
#define SDM_SAMPLER_H

#include <stdint.h>

#include "bundle.h"
#include "recipe.h"

typedef struct {
    double t;               /* timestep given to the UNet (may be fractional) */
    double sigma;           /* noise level of x at this step, sqrt((1−ᾱ)/ᾱ) */
    double c_in;
    double x0_x, x0_out;
    double cx, cout, cprev, cnoise;
} sdm_step;

typedef struct {
    sdm_sampler kind;
    int n_steps;
    sdm_step *steps;
    double init_sigma;      /* initial noise is randn · init_sigma */
    int uses_noise;         /* ancestral/eta>0: per-step noise needed */
    int uses_prev;          /* multistep: x0_prev needed */
} sdm_schedule;

typedef struct {
    sdm_sampler kind;
    int steps;
    double eta;             /* ddim only: 0 deterministic .. 1 DDPM-like */
    int karras;             /* euler, dpmpp_2m: Karras sigmas */
} sdm_sampler_params;

/* ddim, 50 steps, eta 0, no Karras sigmas. */
sdm_sampler_params sdm_sampler_default_params(void);

/* Builds the coefficient table; bad parameters (steps out of range, eta or
 * karras for a sampler without them) are SDM_EXIT_USAGE errors. */
int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule *out,
                      sdm_error *err);
void sdm_schedule_free(sdm_schedule *s);

/* The seed of step `step`'s noise (0-based sampler step) for a frame whose
 * initial noise has seed `seed`: each step's noise is
 * sdm_tensor_randn(sdm_step_noise_seed(seed, step), [1,C,h,w]), so a frame
 * is reproducible alone and a seed morph can slerp it like the initial
 * noise. The mix (splitmix64's finalizer, twice: sdm_mix64 in hash.h):
 *     fmix(z) = z ^= z >> 30, z *= 0xbf58476d1ce4e5b9,
 *               z ^= z >> 27, z *= 0x94d049bb133111eb, z ^ (z >> 31)
 *     seed'   = fmix(fmix(seed ^ 0x5d4e0a1f3c2b1d07) + 0x9e3779b97f4a7c15·(step + 1))
 * all mod 2^64; tests/fixtures/make_sampler_fixtures.py computes the same. */
uint64_t sdm_step_noise_seed(uint64_t seed, int step);

#endif
