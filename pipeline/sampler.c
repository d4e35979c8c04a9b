/* Sampler coefficients, following diffusers' schedulers step for step
 * (timestep spacing, final alpha, prediction types). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sdm_alphas_cumprod(const sdm_bundle *b, double *out)
{
    double prod = 1.0;

    for (int i = 0; i < b->train_steps; i++) {
        double x = (double)i / (b->train_steps - 1), beta;
        if (b->beta_schedule == SDM_BETAS_SCALED_LINEAR) {
            double s = sqrt(b->beta_start) + x * (sqrt(b->beta_end) - sqrt(b->beta_start));
            beta = s * s;
        } else {
            beta = b->beta_start + x * (b->beta_end - b->beta_start);
        }
        prod *= 1.0 - beta;
        out[i] = prod;
    }
    return 0;
}

/* x0 and eps as linear functions of (x, out) at cumulative alpha a. */
static void predict(sdm_prediction pred, double a, double *x0_x, double *x0_out, double *e_x,
                    double *e_out)
{
    if (pred == SDM_PRED_V) {
        *x0_x = sqrt(a);
        *x0_out = -sqrt(1 - a);
        *e_x = sqrt(1 - a);
        *e_out = sqrt(a);
    } else {
        *x0_x = 1 / sqrt(a);
        *x0_out = -sqrt(1 - a) / sqrt(a);
        *e_x = 0;
        *e_out = 1;
    }
}

/* DDIM with diffusers' defaults for SD: "leading" spacing plus steps_offset,
 * final alpha = 1 or alphas_cumprod[0] (set_alpha_to_one). */
static int make_ddim(const sdm_bundle *b, const sdm_sampler_params *p, const double *ac,
                     sdm_schedule *s, sdm_error *err)
{
    int ratio = b->train_steps / p->steps;
    double final_a = b->set_alpha_to_one ? 1.0 : ac[0];

    s->init_sigma = 1.0;
    s->uses_noise = p->eta > 0;
    for (int i = 0; i < p->steps; i++) {
        int t = (p->steps - 1 - i) * ratio + b->steps_offset;
        int tp = t - ratio;
        double a, ap, x0_x, x0_out, e_x, e_out, var, std, dir;
        sdm_step *st = &s->steps[i];

        if (t >= b->train_steps)
            return sdm_error_set(err, SDM_EXIT_USAGE, "steps %d too many for a %d-step model",
                                 p->steps, b->train_steps);
        a = ac[t];
        ap = tp >= 0 ? ac[tp] : final_a;
        predict(b->prediction, a, &x0_x, &x0_out, &e_x, &e_out);
        var = (1 - ap) / (1 - a) * (1 - a / ap);
        std = p->eta * sqrt(var);
        dir = sqrt(1 - ap - std * std);
        st->t = t;
        st->c_in = 1.0;
        st->x0_x = x0_x;
        st->x0_out = x0_out;
        st->cx = sqrt(ap) * x0_x + dir * e_x;
        st->cout = sqrt(ap) * x0_out + dir * e_out;
        st->cprev = 0;
        st->cnoise = std;
    }
    return 0;
}

int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule *out,
                      sdm_error *err)
{
    double *ac = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->kind = p->kind;
    out->n_steps = p->steps;
    if (p->steps < 1 || p->steps > b->train_steps) {
        sdm_error_set(err, SDM_EXIT_USAGE, "steps must be 1..%d, not %d", b->train_steps, p->steps);
        goto end;
    }
    ac = malloc(sizeof *ac * b->train_steps);
    out->steps = calloc(p->steps, sizeof *out->steps);
    if (!ac || !out->steps) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    sdm_alphas_cumprod(b, ac);
    switch (p->kind) {
    case SDM_SAMPLER_DDIM:
        rc = make_ddim(b, p, ac, out, err);
        break;
    default:
        sdm_error_set(err, SDM_EXIT_USAGE, "sampler '%s' is not available yet", sdm_sampler_name(p->kind));
        break;
    }
end:
    free(ac);
    if (rc)
        sdm_schedule_free(out);
    return rc;
}

void sdm_schedule_free(sdm_schedule *s)
{
    if (!s)
        return;
    free(s->steps);
    s->steps = NULL;
    s->n_steps = 0;
}
