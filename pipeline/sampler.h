/* Samplers as per-step coefficients computed on the host in double. Every
 * supported sampler's step is linear in the current latent x, the model's
 * output, the previous step's denoised estimate and fresh noise:
 *
 *     unet input      = c_in · x                     (at timestep t)
 *     denoised x0     = x0_x · x + x0_out · out
 *     x_next          = cx · x + cout · out + cprev · x0_prev + cnoise · noise
 *
 * so the device does a few fused axpby's per step and never syncs. */
#ifndef SDM_SAMPLER_H
#define SDM_SAMPLER_H

#include "bundle.h"
#include "recipe.h"

typedef struct {
    double t;               /* timestep given to the UNet */
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
    double eta;
    int karras;
} sdm_sampler_params;

/* The training schedule's alphas_cumprod (train_steps values), in double. */
int sdm_alphas_cumprod(const sdm_bundle *b, double *out);
int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule *out,
                      sdm_error *err);
void sdm_schedule_free(sdm_schedule *s);

#endif
