/* Sampler coefficients, following diffusers' schedulers step for step
 * (timestep spacing, sigma interpolation, final step, prediction types).
 * Everything is in double; diffusers' own float32 tables differ from these
 * by about 1e-7 relative at large sigma (1e-5 at the smallest). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

sdm_sampler_params sdm_sampler_default_params(void)
{
    sdm_sampler_params p = { SDM_SAMPLER_DDIM, 50, 0.0, 0 };
    return p;
}

uint64_t sdm_step_noise_seed(uint64_t seed, int step)
{
    return sdm_mix64(sdm_mix64(seed ^ 0x5d4e0a1f3c2b1d07ULL) + SDM_GOLDEN_GAMMA * (uint64_t)(step + 1));
}

/* x0 and eps as linear functions of (x, out) for x = alpha·x0 + sig·eps. */
static void predict(sdm_prediction pred, double alpha, double sig, double *x0_x, double *x0_out,
                    double *e_x, double *e_out)
{
    if (pred == SDM_PRED_V) {
        *x0_x = alpha;
        *x0_out = -sig;
        *e_x = sig;
        *e_out = alpha;
    } else {
        *x0_x = 1 / alpha;
        *x0_out = -sig / alpha;
        *e_x = 0;
        *e_out = 1;
    }
}

/* Everything a sampler builder needs: the bundle, the request, the
 * training tables (alphas_cumprod, sigma = sqrt((1−ᾱ)/ᾱ), log sigma), and
 * room for the sigma samplers' steps: steps + 1 sigmas (the last 0) and
 * steps timesteps. */
typedef struct {
    const sdm_bundle *b;
    const sdm_sampler_params *p;
    int n_train;
    double *ac, *sig, *log_sig;
    double *step_sig, *step_t;
} tables;

/* np.interp(t, arange(n), sigmas): linear in sigma, clamped at the ends. */
static double interp_sigma(const tables *T, double t)
{
    int lo;
    double w;

    if (t <= 0)
        return T->sig[0];
    if (t >= T->n_train - 1)
        return T->sig[T->n_train - 1];
    lo = (int)floor(t);
    w = t - lo;
    return w == 0 ? T->sig[lo] : T->sig[lo] + w * (T->sig[lo + 1] - T->sig[lo]);
}

/* diffusers' _sigma_to_t: the fractional timestep whose log sigma, linearly
 * interpolated in the table, is log(sigma); clamped to [0, n−1]. */
static double sigma_to_t(const tables *T, double sigma)
{
    double ls = log(fmax(sigma, 1e-10)), w;
    int lo = 0;

    for (int i = 0; i < T->n_train; i++) {
        if (T->log_sig[i] <= ls)
            lo = i;
    }
    if (lo > T->n_train - 2)
        lo = T->n_train - 2;
    w = (T->log_sig[lo] - ls) / (T->log_sig[lo] - T->log_sig[lo + 1]);
    w = fmin(fmax(w, 0.0), 1.0);
    return (1 - w) * lo + w * (lo + 1);
}

/* _convert_to_karras: n sigmas from smax to smin, evenly spaced in sigma^(1/7). */
static void karras_sigmas(double smin, double smax, int n, double *out)
{
    const double rho = 7.0;
    double lo = pow(smin, 1 / rho), hi = pow(smax, 1 / rho);

    for (int i = 0; i < n; i++) {
        double ramp = n > 1 ? (double)i / (n - 1) : 0.0;
        out[i] = pow(hi + ramp * (lo - hi), rho);
    }
}

/* np.linspace(0, n_train − 1, n)[::-1][i] in float32, as Euler's timesteps. */
static double linspace_t(int n_train, int n, int i)
{
    int j = n - 1 - i;
    double step = n > 1 ? (double)(n_train - 1) / (n - 1) : 0.0;
    double t = j == n - 1 && n > 1 ? n_train - 1 : j * step;
    return (double)(float)t;
}

/* The most DDIM steps whose "leading" timesteps, (n−1)·⌊T/n⌋ + offset,
 * stay inside the training schedule: T − offset for SD. */
static int ddim_max_steps(int n_train, int offset)
{
    int n = n_train;

    while (n > 1 && (n - 1) * (n_train / n) + offset >= n_train)
        n--;
    return n;
}

/* DDIM with diffusers' defaults for SD: "leading" spacing plus steps_offset,
 * final alpha = 1 or alphas_cumprod[0] (set_alpha_to_one). */
static int make_ddim(const tables *T, sdm_schedule *s, sdm_error *err)
{
    const sdm_bundle *b = T->b;
    const sdm_sampler_params *p = T->p;
    int ratio = T->n_train / p->steps;
    double final_a = b->set_alpha_to_one ? 1.0 : T->ac[0];

    if (p->karras)
        return sdm_error_set(err, SDM_EXIT_USAGE, "karras sigmas apply to euler and dpmpp_2m, not ddim");
    s->init_sigma = 1.0;
    s->uses_noise = p->eta > 0;
    for (int i = 0; i < p->steps; i++) {
        int t = (p->steps - 1 - i) * ratio + b->steps_offset;
        int tp = t - ratio;
        double a, ap, x0_x, x0_out, e_x, e_out, var, std, dir;
        sdm_step *st = &s->steps[i];

        if (t >= T->n_train)
            return sdm_error_set(err, SDM_EXIT_USAGE, "ddim takes at most %d steps with this model's %d training "
                                 "steps (steps_offset %d); got %d", ddim_max_steps(T->n_train, b->steps_offset),
                                 T->n_train, b->steps_offset, p->steps);
        a = T->ac[t];
        ap = tp >= 0 ? T->ac[tp] : final_a;
        predict(b->prediction, sqrt(a), sqrt(1 - a), &x0_x, &x0_out, &e_x, &e_out);
        var = (1 - ap) / (1 - a) * (1 - a / ap);
        std = p->eta * sqrt(var);
        dir = sqrt(fmax(1 - ap - std * std, 0.0));
        st->t = t;
        st->sigma = T->sig[t];
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

/* Euler and Euler ancestral work on x = x0 + sigma·eps: the UNet sees
 * x/sqrt(sigma²+1), the VP-scaled latent. One step from sigma to sigma_down
 * along the ODE direction (x − x0)/sigma, then sigma_up of fresh noise
 * (ancestral only; sigma_down = sigma_next, sigma_up = 0 for plain Euler). */
static void euler_step(sdm_prediction pred, double sigma, double sigma_next, int ancestral, sdm_step *st)
{
    double alpha = 1 / sqrt(sigma * sigma + 1), x0_x, x0_out, e_x, e_out, up = 0, down = sigma_next, r;

    predict(pred, alpha, sigma * alpha, &x0_x, &x0_out, &e_x, &e_out);
    /* in VE scaling x_vp = alpha·x, so x0 = (x0_x·alpha)·x + x0_out·out */
    x0_x *= alpha;
    if (ancestral) {
        up = sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
        down = sqrt(fmax(sigma_next * sigma_next - up * up, 0.0));
    }
    r = (down - sigma) / sigma;
    st->sigma = sigma;
    st->c_in = alpha;
    st->x0_x = x0_x;
    st->x0_out = x0_out;
    st->cx = 1 + r * (1 - x0_x);
    st->cout = -r * x0_out;
    st->cprev = 0;
    st->cnoise = up;
}

static int make_euler(const tables *T, int ancestral, sdm_schedule *s, sdm_error *err)
{
    const sdm_sampler_params *p = T->p;
    int n = p->steps;
    double *sig = T->step_sig, *ts = T->step_t;

    if (ancestral && p->karras)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "karras sigmas apply to euler and dpmpp_2m, not euler_a (as in diffusers)");
    if (p->karras) {
        /* the ends are those of the linspace sigmas (for 1 step: both sigma(0)) */
        double smax = interp_sigma(T, linspace_t(T->n_train, n, 0));
        double smin = interp_sigma(T, linspace_t(T->n_train, n, n - 1));
        karras_sigmas(smin, smax, n, sig);
        for (int i = 0; i < n; i++)
            ts[i] = sigma_to_t(T, sig[i]);
    } else {
        for (int i = 0; i < n; i++) {
            ts[i] = linspace_t(T->n_train, n, i);
            sig[i] = interp_sigma(T, ts[i]);
        }
    }
    sig[n] = 0.0;
    s->init_sigma = 0;
    for (int i = 0; i < n; i++) {
        s->init_sigma = fmax(s->init_sigma, sig[i]);
        euler_step(T->b->prediction, sig[i], sig[i + 1], ancestral, &s->steps[i]);
        s->steps[i].t = ts[i];
    }
    s->uses_noise = ancestral;
    return 0;
}

/* DPM-Solver++(2M) on x = alpha·x0 + sig·eps with alpha = 1/sqrt(σ²+1),
 * sig = σ·alpha, lambda = −log σ. From σs to σt, with D0 = x0 now, D1 the
 * previous step's (σ_prev):
 *   first order:  x' = (sig_t/sig_s)·x + alpha_t(1 − e^−h)·D0
 *   second order: x' = (sig_t/sig_s)·x + alpha_t(1 − e^−h)·((1 + 1/2r)·D0 − 1/2r·D1)
 * with h = log(σs/σt), r = log(σ_prev/σs)/h, e^−h = σt/σs. */
static int make_dpmpp_2m(const tables *T, sdm_schedule *s, sdm_error *err)
{
    const sdm_sampler_params *p = T->p;
    int n = p->steps;
    double *sig = T->step_sig, *ts = T->step_t;

    if (p->karras) {
        karras_sigmas(T->sig[0], T->sig[T->n_train - 1], n, sig);
        for (int i = 0; i < n; i++)
            ts[i] = rint(sigma_to_t(T, sig[i]));
    } else {
        double step = (double)(T->n_train - 1) / n;   /* linspace(0, n_train−1, n+1), rounded */
        for (int i = 0; i < n; i++) {
            int j = n - i;
            ts[i] = j == n ? T->n_train - 1 : rint(j * step);
            sig[i] = T->sig[(int)ts[i]];
        }
    }
    sig[n] = 0.0;
    s->init_sigma = 1.0;
    s->uses_prev = 1;
    for (int i = 0; i < n; i++) {
        sdm_step *st = &s->steps[i];
        double from = sig[i], to = sig[i + 1];
        double a_from = 1 / sqrt(from * from + 1), a_to = 1 / sqrt(to * to + 1);
        double x0_x, x0_out, e_x, e_out, k = a_to * (1 - to / from), c0 = k, c1 = 0;

        predict(T->b->prediction, a_from, from * a_from, &x0_x, &x0_out, &e_x, &e_out);
        if (i > 0 && i < n - 1) {
            double h = log(from / to), r = log(sig[i - 1] / from) / h;
            if (!(r > 0) || !isfinite(r))
                return sdm_error_set(err, SDM_EXIT_USAGE, "dpmpp_2m: %d steps give repeated sigmas", n);
            c0 = k * (1 + 0.5 / r);
            c1 = -k * 0.5 / r;
        }
        st->t = ts[i];
        st->sigma = from;
        st->c_in = 1.0;
        st->x0_x = x0_x;
        st->x0_out = x0_out;
        st->cx = (to * a_to) / (from * a_from) + c0 * x0_x;
        st->cout = c0 * x0_out;
        st->cprev = c1;
        st->cnoise = 0;
    }
    return 0;
}

int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule *out,
                      sdm_error *err)
{
    tables T = { b, p, b->train_steps, NULL, NULL, NULL, NULL, NULL };
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->kind = p->kind;
    out->n_steps = p->steps;
    if (p->kind < 0 || p->kind >= SDM_SAMPLER_COUNT) {
        sdm_error_set(err, SDM_EXIT_USAGE, "unknown sampler %d", (int)p->kind);
        goto end;
    }
    if (b->train_steps < 2) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: train_steps must be at least 2", b->dir);
        goto end;
    }
    if (p->steps < 1 || p->steps > b->train_steps) {
        sdm_error_set(err, SDM_EXIT_USAGE, "steps must be 1..%d, not %d", b->train_steps, p->steps);
        goto end;
    }
    if (!(p->eta >= 0 && p->eta <= 1)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "eta must be in [0, 1], not %g", p->eta);
        goto end;
    }
    if (p->eta > 0 && p->kind != SDM_SAMPLER_DDIM) {
        sdm_error_set(err, SDM_EXIT_USAGE, "eta applies to the ddim sampler only, not %s",
                      sdm_sampler_name(p->kind));
        goto end;
    }
    T.ac = malloc(sizeof *T.ac * T.n_train);
    T.sig = malloc(sizeof *T.sig * T.n_train);
    T.log_sig = malloc(sizeof *T.log_sig * T.n_train);
    T.step_sig = malloc(sizeof *T.step_sig * (p->steps + 1));
    T.step_t = malloc(sizeof *T.step_t * p->steps);
    out->steps = calloc(p->steps, sizeof *out->steps);
    if (!T.ac || !T.sig || !T.log_sig || !T.step_sig || !T.step_t || !out->steps) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    sdm_alphas_cumprod(b, T.ac);
    for (int i = 0; i < T.n_train; i++) {
        T.sig[i] = sqrt((1 - T.ac[i]) / T.ac[i]);
        T.log_sig[i] = log(T.sig[i]);
    }
    switch (p->kind) {
    case SDM_SAMPLER_DDIM:
        rc = make_ddim(&T, out, err);
        break;
    case SDM_SAMPLER_EULER:
        rc = make_euler(&T, 0, out, err);
        break;
    case SDM_SAMPLER_EULER_A:
        rc = make_euler(&T, 1, out, err);
        break;
    case SDM_SAMPLER_DPMPP_2M:
        rc = make_dpmpp_2m(&T, out, err);
        break;
    default:
        sdm_error_set(err, SDM_EXIT_USAGE, "sampler '%s' is not available", sdm_sampler_name(p->kind));
        break;
    }
end:
    free(T.ac);
    free(T.sig);
    free(T.log_sig);
    free(T.step_sig);
    free(T.step_t);
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
