/* Sampler coefficients, following diffusers' schedulers step for step
 * (timestep spacing, sigma interpolation, final step, prediction types).
 * Everything is in double; diffusers' own float32 tables differ from these
 * by about 1e-7 relative at large sigma (1e-5 at the smallest). Each
 * builder writes the linear maps of sampler.h: a vector of coefficients over
 * (x, out, slots, noise) per evaluation. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdm_sampler_params sdm_sampler_default_params(void)
{
    sdm_sampler_params p = { SDM_SAMPLER_AUTO, 50, 0.0, 0, SDM_SPACING_DEFAULT, 0, 0 };
    return p;
}

sdm_sampler sdm_sampler_auto(const sdm_bundle *b, int *karras)
{
    sdm_sampler s = SDM_SAMPLER_DDIM;

    *karras = 0;
    if (b->scheduler[0] && !sdm_sampler_from_str(b->scheduler, &s) && s != SDM_SAMPLER_AUTO) {
        if (s == SDM_SAMPLER_DPMPP_2M && !strcmp(b->algorithm_type, "sde-dpmsolver++"))
            s = SDM_SAMPLER_DPMPP_2M_SDE;
        *karras = b->use_karras_sigmas && sdm_sampler_has_karras(s);
        return s;
    }
    return SDM_SAMPLER_DDIM;
}

/* ---- linear maps ------------------------------------------------------------ */

static sdm_lin lin_x(double c)
{
    sdm_lin l = { 0 };
    l.x = c;
    return l;
}

static sdm_lin lin_slot(int k, double c)
{
    sdm_lin l = { 0 };
    l.slot[k] = c;
    return l;
}

/* a·A + b·B */
static sdm_lin lin_add(double a, const sdm_lin *A, double b, const sdm_lin *B)
{
    sdm_lin l;

    l.x = a * A->x + b * B->x;
    l.out = a * A->out + b * B->out;
    l.noise = a * A->noise + b * B->noise;
    for (int k = 0; k < SDM_SLOTS; k++)
        l.slot[k] = a * A->slot[k] + b * B->slot[k];
    return l;
}

static void save(sdm_step *st, int k, sdm_lin v)
{
    st->save[k] = v;
    st->saves |= 1u << k;
}

/* x0 and eps as linear functions of (x, out) for x = alpha·x0 + sig·eps. */
static void predict(sdm_prediction pred, double alpha, double sig, double *x0_x, double *x0_out, double *e_x,
                    double *e_out)
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

/* The denoised estimate as a map, for x = alpha·x0 + sig·eps; also kept in st. */
static sdm_lin vp_x0(sdm_prediction pred, double alpha, double sig, sdm_step *st)
{
    double e_x, e_out;
    sdm_lin l = { 0 };

    predict(pred, alpha, sig, &st->x0_x, &st->x0_out, &e_x, &e_out);
    l.x = st->x0_x;
    l.out = st->x0_out;
    return l;
}

/* The same on x = x0 + sigma·eps (the UNet sees x/sqrt(sigma²+1)). */
static sdm_lin ve_x0(sdm_prediction pred, double sigma, sdm_step *st)
{
    double alpha = 1 / sqrt(sigma * sigma + 1);
    sdm_lin l = vp_x0(pred, alpha, sigma * alpha, st);

    l.x *= alpha;
    st->x0_x = l.x;
    return l;
}

/* ---- tables and timesteps --------------------------------------------------- */

/* Everything a sampler builder needs: the bundle, the request, the
 * training tables (alphas_cumprod, sigma = sqrt((1−ᾱ)/ᾱ), log sigma), and
 * room for the steps: steps + 1 sigmas (the last 0) and timesteps. */
typedef struct {
    const sdm_bundle *b;
    const sdm_sampler_params *p;
    sdm_spacing spacing;
    int n_train;
    double *ac, *sig, *log_sig;
    double *step_sig, *step_t;
    int start; /* image-to-image: the step the scheduler begins at, its state fresh; 0 otherwise */
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

/* np.linspace(0, last, n)[::-1][i] in float32 (Euler's linspace timesteps). */
static double linspace_t(double last, int n, int i)
{
    int j = n - 1 - i;
    double step = n > 1 ? last / (n - 1) : 0.0;
    double t = j == n - 1 && n > 1 ? last : j * step;
    return (double)(float)t;
}

/* np.arange(T, 0, −T/n).round() − 1, descending ("trailing"); -1 where its
 * length is not n (floating-point steps can give one more). */
static int trailing_t(int n_train, int n, double *ts)
{
    double step = (double)n_train / n;
    int len = (int)ceil((0.0 - n_train) / -step);

    if (len != n)
        return -1;
    for (int i = 0; i < n; i++)
        ts[i] = rint(n_train + i * -step) - 1;
    return 0;
}

/* The n descending timesteps of the sigma samplers (Euler, Euler a, LMS,
 * Heun): float32 like diffusers' arrays. */
static int sigma_family_t(const tables *T, int n, double *ts)
{
    int ratio = T->n_train / n;

    switch (T->spacing) {
    case SDM_SPACING_LEADING:
        for (int i = 0; i < n; i++)
            ts[i] = (double)(n - 1 - i) * ratio + T->b->steps_offset;
        return 0;
    case SDM_SPACING_TRAILING:
        return trailing_t(T->n_train, n, ts);
    default:
        for (int i = 0; i < n; i++)
            ts[i] = linspace_t(T->n_train - 1, n, i);
        return 0;
    }
}

/* The n descending integer timesteps of the multistep solvers (DPM-Solver,
 * UniPC): linspace and leading over n + 1 points, the last dropped. */
static int multistep_t(const tables *T, int n, double *ts)
{
    int ratio = T->n_train / (n + 1);

    switch (T->spacing) {
    case SDM_SPACING_LEADING:
        for (int i = 0; i < n; i++)
            ts[i] = (double)(n - i) * ratio + T->b->steps_offset;
        return 0;
    case SDM_SPACING_TRAILING:
        return trailing_t(T->n_train, n, ts);
    default: {
        double step = (double)(T->n_train - 1) / n; /* linspace(0, n_train−1, n+1), rounded */
        for (int i = 0; i < n; i++) {
            int j = n - i;
            ts[i] = j == n ? T->n_train - 1 : rint(j * step);
        }
        return 0;
    }
    }
}

/* The n descending integer timesteps of DDIM and PNDM. */
static int discrete_t(const tables *T, int n, double *ts)
{
    int ratio = T->n_train / n;

    switch (T->spacing) {
    case SDM_SPACING_LINSPACE: {
        double step = n > 1 ? (double)(T->n_train - 1) / (n - 1) : 0.0; /* np.linspace in double, rounded */
        for (int i = 0; i < n; i++) {
            int j = n - 1 - i;
            ts[i] = j == n - 1 && n > 1 ? T->n_train - 1 : rint(j * step);
        }
        return 0;
    }
    case SDM_SPACING_TRAILING:
        return trailing_t(T->n_train, n, ts);
    default:
        for (int i = 0; i < n; i++)
            ts[i] = (double)(n - 1 - i) * ratio + T->b->steps_offset;
        return 0;
    }
}

static int bad_spacing(const tables *T, sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_USAGE,
                         "%s: %d steps do not divide the %d training steps evenly with "
                         "\"trailing\" spacing",
                         sdm_sampler_name(T->p->kind), T->p->steps, T->n_train);
}

/* ---- DDIM ------------------------------------------------------------------- */

/* The most DDIM steps whose "leading" timesteps, (n−1)·⌊T/n⌋ + offset,
 * stay inside the training schedule: T − offset for SD. */
static int ddim_max_steps(int n_train, int offset)
{
    int n = n_train;

    while (n > 1 && (n - 1) * (n_train / n) + offset >= n_train)
        n--;
    return n;
}

static int past_schedule(const tables *T, sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_USAGE,
                         "%s takes at most %d steps with this model's %d training steps "
                         "(steps_offset %d); got %d",
                         sdm_sampler_name(T->p->kind), ddim_max_steps(T->n_train, T->b->steps_offset), T->n_train,
                         T->b->steps_offset, T->p->steps);
}

/* DDIM with diffusers' defaults for SD: "leading" spacing plus steps_offset,
 * the previous timestep t − ⌊T/n⌋ whatever the spacing, final alpha = 1 or
 * alphas_cumprod[0] (set_alpha_to_one). Noise (eta > 0): every step draws. */
static int make_ddim(const tables *T, sdm_schedule *s, sdm_error *err)
{
    const sdm_bundle *b = T->b;
    const sdm_sampler_params *p = T->p;
    int ratio = T->n_train / p->steps;
    double final_a = b->set_alpha_to_one ? 1.0 : T->ac[0];

    if (discrete_t(T, p->steps, T->step_t))
        return bad_spacing(T, err);
    s->init_sigma = 1.0;
    for (int i = 0; i < p->steps; i++) {
        int t = (int)T->step_t[i], tp = t - ratio;
        double a, ap, x0_x, x0_out, e_x, e_out, var, std, dir;
        sdm_step *st = &s->steps[i];

        if (t >= T->n_train)
            return past_schedule(T, err);
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
        st->next.x = sqrt(ap) * x0_x + dir * e_x;
        st->next.out = sqrt(ap) * x0_out + dir * e_out;
        st->next.noise = std;
        st->noise_draw = p->eta > 0 ? i : -1;
    }
    return 0;
}

/* ---- sigma samplers: Euler, Euler a, Heun, LMS -------------------------------- */

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
    st->next.x = 1 + r * (1 - x0_x);
    st->next.out = -r * x0_out;
    st->next.noise = up;
}

/* The sigmas (n + 1, the last 0) and timesteps of the sigma samplers;
 * Karras sigmas span the ends of the spaced ones. The initial noise's
 * scale: the largest sigma, sqrt(σ² + 1) with "leading" spacing. */
static int sigma_family(const tables *T, int n, double *init_sigma)
{
    double *sig = T->step_sig, *ts = T->step_t, smax = 0;

    if (sigma_family_t(T, n, ts))
        return -1;
    for (int i = 0; i < n; i++)
        sig[i] = interp_sigma(T, ts[i]);
    if (T->p->karras) {
        karras_sigmas(sig[n - 1], sig[0], n, sig);
        for (int i = 0; i < n; i++)
            ts[i] = sigma_to_t(T, sig[i]);
    }
    sig[n] = 0.0;
    for (int i = 0; i < n; i++)
        smax = fmax(smax, sig[i]);
    *init_sigma = T->spacing == SDM_SPACING_LEADING ? sqrt(smax * smax + 1) : smax;
    return 0;
}

static int make_euler(const tables *T, int ancestral, sdm_schedule *s, sdm_error *err)
{
    int n = T->p->steps;

    if (sigma_family(T, n, &s->init_sigma))
        return bad_spacing(T, err);
    for (int i = 0; i < n; i++) {
        euler_step(T->b->prediction, T->step_sig[i], T->step_sig[i + 1], ancestral, &s->steps[i]);
        s->steps[i].t = T->step_t[i];
        s->steps[i].noise_draw = ancestral ? i : -1;
    }
    return 0;
}

/* Heun: per step an Euler step to the next sigma (the derivative d and the
 * starting x kept in slots 0 and 1), then the UNet at the next sigma and
 * the step again from the kept x with the mean of both derivatives. The
 * last step (to sigma 0) is Euler's alone. */
static int make_heun(const tables *T, sdm_schedule *s, sdm_error *err)
{
    const sdm_prediction pred = T->b->prediction;
    int n = T->p->steps, e = 0;
    double *sig = T->step_sig;

    if (sigma_family(T, n, &s->init_sigma))
        return bad_spacing(T, err);
    for (int i = 0; i < n; i++) {
        double dt = sig[i + 1] - sig[i];
        sdm_step *st = &s->steps[e++];
        sdm_lin x0 = ve_x0(pred, sig[i], st), X = lin_x(1), d = lin_add(1 / sig[i], &X, -1 / sig[i], &x0), prev;

        st->t = T->step_t[i];
        st->sigma = sig[i];
        st->c_in = 1 / sqrt(sig[i] * sig[i] + 1);
        st->noise_draw = -1;
        st->next = lin_add(1, &X, dt, &d);
        if (sig[i + 1] == 0)
            continue;
        save(st, 0, d);
        save(st, 1, X);
        st = &s->steps[e++];
        x0 = ve_x0(pred, sig[i + 1], st);
        d = lin_add(1 / sig[i + 1], &X, -1 / sig[i + 1], &x0); /* (x − x0)/σ_next */
        prev = lin_slot(0, 1);
        d = lin_add(0.5, &d, 0.5, &prev);
        st->t = T->step_t[i + 1];
        st->sigma = sig[i + 1];
        st->c_in = 1 / sqrt(sig[i + 1] * sig[i + 1] + 1);
        st->noise_draw = -1;
        X = lin_slot(1, 1);
        st->next = lin_add(1, &X, dt, &d);
    }
    s->n_steps = e;
    return 0;
}

/* ∫ from a to b of Π_{k≠j} (τ − s_k)/(s_j − s_k), k < order: the LMS
 * coefficient, exactly (the polynomial's coefficients, then its integral). */
static double lms_coefficient(const double *s, int order, int j, double a, double b)
{
    double poly[5] = { 1, 0, 0, 0, 0 }, denom = 1, sum = 0;
    int deg = 0;

    for (int k = 0; k < order; k++) {
        if (k == j)
            continue;
        for (int d = deg + 1; d > 0; d--)
            poly[d] = poly[d - 1] - s[k] * poly[d];
        poly[0] *= -s[k];
        deg++;
        denom *= s[j] - s[k];
    }
    for (int d = 0; d <= deg; d++)
        sum += poly[d] * (pow(b, d + 1) - pow(a, d + 1)) / (d + 1);
    return sum / denom;
}

/* LMS, order 4: x ← x + Σ_j c_j·d_{i−j} with d = (x − x0)/σ; the three
 * earlier derivatives in slots 0..2 (newest first). diffusers integrates
 * over its float32 sigmas: so do these. */
static int make_lms(const tables *T, sdm_schedule *s, sdm_error *err)
{
    int n = T->p->steps;
    double *sig = T->step_sig;

    if (sigma_family(T, n, &s->init_sigma))
        return bad_spacing(T, err);
    for (int i = 0; i < n; i++) {
        sdm_step *st = &s->steps[i];
        sdm_lin x0 = ve_x0(T->b->prediction, sig[i], st), X = lin_x(1);
        sdm_lin d = lin_add(1 / sig[i], &X, -1 / sig[i], &x0);
        int order = i + 1 < 4 ? i + 1 : 4;
        double back[4];

        for (int j = 0; j < order; j++)
            back[j] = sig[i - j];
        st->t = T->step_t[i];
        st->sigma = sig[i];
        st->c_in = 1 / sqrt(sig[i] * sig[i] + 1);
        st->noise_draw = -1;
        st->next = lin_add(1, &X, lms_coefficient(back, order, 0, sig[i], sig[i + 1]), &d);
        for (int j = 1; j < order; j++)
            st->next.slot[j - 1] = lms_coefficient(back, order, j, sig[i], sig[i + 1]);
        save(st, 0, d);
        save(st, 1, lin_slot(0, 1));
        save(st, 2, lin_slot(1, 1));
    }
    return 0;
}

/* ---- DPM-Solver++ (2M and 2M SDE) --------------------------------------------- */

/* The integer timesteps and their table sigmas (n + 1, the last 0); Karras
 * sigmas span the whole training table, their timesteps rounded. */
static int multistep_sigmas(const tables *T, int n)
{
    double *sig = T->step_sig, *ts = T->step_t;

    if (T->p->karras) {
        karras_sigmas(T->sig[0], T->sig[T->n_train - 1], n, sig);
        for (int i = 0; i < n; i++)
            ts[i] = rint(sigma_to_t(T, sig[i]));
    } else {
        if (multistep_t(T, n, ts))
            return -1;
        for (int i = 0; i < n; i++) {
            if (ts[i] >= T->n_train || ts[i] < 0)
                return -1;
            sig[i] = T->sig[(int)ts[i]];
        }
    }
    sig[n] = 0.0;
    return 0;
}

/* The multistep solvers' sigmas, their start from randn itself. */
static int multistep_begin(const tables *T, sdm_schedule *s, sdm_error *err)
{
    if (multistep_sigmas(T, T->p->steps))
        return T->spacing == SDM_SPACING_TRAILING ? bad_spacing(T, err) : past_schedule(T, err);
    s->init_sigma = 1.0;
    return 0;
}

/* DPM-Solver++(2M) on x = alpha·x0 + sig·eps with alpha = 1/sqrt(σ²+1),
 * sig = σ·alpha, lambda = −log σ. From σs to σt, with D0 = x0 now, D1 the
 * previous step's (σ_prev, kept in slot 0):
 *   first order:  x' = (sig_t/sig_s)·x + alpha_t(1 − e^−h)·D0
 *   second order: x' = (sig_t/sig_s)·x + alpha_t(1 − e^−h)·((1 + 1/2r)·D0 − 1/2r·D1)
 * with h = log(σs/σt), r = log(σ_prev/σs)/h, e^−h = σt/σs. The SDE variant
 * (sde-dpmsolver++, midpoint):
 *   x' = (sig_t/sig_s)·e^−h·x + alpha_t(1 − e^−2h)·(D0 + (D0 − D1)/2r) + sig_t·sqrt(1 − e^−2h)·noise */
static int make_dpmpp_2m(const tables *T, int sde, sdm_schedule *s, sdm_error *err)
{
    int n = T->p->steps;
    double *sig = T->step_sig;

    if (multistep_begin(T, s, err))
        return -1;
    for (int i = 0; i < n; i++) {
        sdm_step *st = &s->steps[i];
        double from = sig[i], to = sig[i + 1];
        double a_from = 1 / sqrt(from * from + 1), a_to = 1 / sqrt(to * to + 1), e = to / from;
        double k = sde ? a_to * (1 - e * e) : a_to * (1 - e), c0 = k, c1 = 0;
        sdm_lin x0 = vp_x0(T->b->prediction, a_from, from * a_from, st);

        if (i > T->start && i < n - 1) {
            double h = log(from / to), r = log(sig[i - 1] / from) / h;
            if (!(r > 0) || !isfinite(r))
                return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %d steps give repeated sigmas",
                                     sdm_sampler_name(T->p->kind), n);
            c0 = k * (1 + 0.5 / r);
            c1 = -k * 0.5 / r;
        }
        st->t = T->step_t[i];
        st->sigma = from;
        st->c_in = 1.0;
        st->next.x = (to * a_to) / (from * a_from) * (sde ? e : 1) + c0 * x0.x;
        st->next.out = c0 * x0.out;
        st->next.slot[0] = c1;
        st->next.noise = sde ? to * a_to * sqrt(1 - e * e) : 0;
        st->noise_draw = sde ? i : -1;
        save(st, 0, x0);
    }
    return 0;
}

/* ---- UniPC (bh2, order 2) ----------------------------------------------------- */

typedef struct {
    double alpha, sig, lambda;
} vp_point;

static vp_point vp_of(double sigma)
{
    vp_point v;

    v.alpha = 1 / sqrt(sigma * sigma + 1);
    v.sig = sigma * v.alpha;
    v.lambda = sigma > 0 ? -log(sigma) : INFINITY;
    return v;
}

/* UniC: the corrected x_i from last_sample (slot 2), m_{i−1} (slot 0),
 * m_{i−2} (slot 1, order 2) and m_i (x0 now), as diffusers'
 * multistep_uni_c_bh_update. */
static sdm_lin unipc_correct(const double *sig, int i, int order, const sdm_lin *m_i)
{
    vp_point t = vp_of(sig[i]), s0 = vp_of(sig[i - 1]);
    double h = t.lambda - s0.lambda, hh = -h, phi1 = expm1(hh), B = expm1(hh);
    double hk = phi1 / hh - 1, b1 = hk / B, b2 = (hk / hh - 0.5) * 2 / B, rho_last = 0.5, rho0 = 0;
    sdm_lin m0 = lin_slot(0, 1), x = lin_slot(2, sig[i] > 0 ? t.sig / s0.sig : 0), D1t;

    if (order == 2) {
        double rk = (vp_of(sig[i - 2]).lambda - s0.lambda) / h;
        /* solve [[1, 1], [rk, 1]]·rho = [b1, b2] */
        rho0 = (b1 - b2) / (1 - rk);
        rho_last = b1 - rho0;
        /* rho0·D1 with D1 = (m_{i−2} − m0)/rk */
        x.slot[1] += -t.alpha * B * rho0 / rk;
        x.slot[0] += t.alpha * B * rho0 / rk;
    }
    x.slot[0] += -t.alpha * phi1;
    D1t = lin_add(1, m_i, -1, &m0);
    return lin_add(1, &x, -t.alpha * B * rho_last, &D1t);
}

/* UniP: x_{i+1} from the corrected x_i, m_i and (order 2) m_{i−1}. */
static sdm_lin unipc_predict(const double *sig, int i, int order, const sdm_lin *x, const sdm_lin *m_i)
{
    vp_point t = vp_of(sig[i + 1]), s0 = vp_of(sig[i]);
    double h, phi1, B;
    sdm_lin out;

    if (sig[i + 1] == 0)
        return *m_i; /* h is infinite: x0 itself */
    h = t.lambda - s0.lambda;
    phi1 = expm1(-h);
    B = phi1;
    out = lin_add(t.sig / s0.sig, x, -t.alpha * phi1, m_i);
    if (order == 2) {
        double rk = (vp_of(sig[i - 1]).lambda - s0.lambda) / h;
        sdm_lin m1 = lin_slot(0, 1), D1 = lin_add(1 / rk, &m1, -1 / rk, m_i);
        out = lin_add(1, &out, -t.alpha * B * 0.5, &D1);
    }
    return out;
}

/* UniPC as diffusers' defaults: the model's x0 in slot 0 (and the one before
 * in slot 1), the corrected sample in slot 2; the corrector at every step
 * but the first, orders warming up to 2 and back to 1 on the last step. */
static int make_unipc(const tables *T, sdm_schedule *s, sdm_error *err)
{
    int n = T->p->steps, last_order = 1;
    double *sig = T->step_sig;

    if (multistep_begin(T, s, err))
        return -1;
    for (int i = 0; i < n; i++) {
        sdm_step *st = &s->steps[i];
        vp_point p = vp_of(sig[i]);
        sdm_lin m_i = vp_x0(T->b->prediction, p.alpha, p.sig, st), x = lin_x(1);
        int order = n - i < 2 ? n - i : 2;

        if (i > T->start)
            x = unipc_correct(sig, i, last_order, &m_i);
        if (order > i - T->start + 1)
            order = i - T->start + 1;
        st->t = T->step_t[i];
        st->sigma = sig[i];
        st->c_in = 1.0;
        st->noise_draw = -1;
        st->next = unipc_predict(sig, i, order, &x, &m_i);
        save(st, 0, m_i);
        save(st, 1, lin_slot(0, 1));
        save(st, 2, x);
        last_order = order;
    }
    return 0;
}

/* ---- PNDM (PLMS) -------------------------------------------------------------- */

/* PNDMScheduler._get_prev_sample on a model output M (a map). */
static sdm_lin pndm_prev(const tables *T, int t, int tp, const sdm_lin *sample, const sdm_lin *M)
{
    double a = T->ac[t], ap = tp >= 0 ? T->ac[tp] : T->b->set_alpha_to_one ? 1.0 : T->ac[0];
    double denom = a * sqrt(1 - ap) + sqrt(a * (1 - a) * ap);
    sdm_lin eps = *M;

    if (T->b->prediction == SDM_PRED_V)
        eps = lin_add(sqrt(a), M, sqrt(1 - a), sample);
    return lin_add(sqrt(ap / a), sample, -(ap - a) / denom, &eps);
}

/* Entry j of diffusers' PLMS timesteps t0, t1, t1, t2, ..., t_{n−1}. */
static int plms_t(const tables *T, int j)
{
    return (int)T->step_t[j == 0 ? 0 : j == 1 ? 1 : j - 1];
}

/* PLMS (skip_prk_steps): timesteps t0, t1, t1, t2, ...: the second call
 * redoes step 0 from its start (slot 3) with the mean of both outputs; then
 * Adams–Bashforth over the last four outputs (slots 0..2, newest first).
 * An image start runs the list from entry `start` on, its counter from 0
 * (so the redo lands on the entry after it), as diffusers' pipeline does. */
static int make_pndm(const tables *T, sdm_schedule *s, sdm_error *err)
{
    static const double ab[4][4] = {
        { 1 }, { 1.5, -0.5 }, { 23 / 12.0, -16 / 12.0, 5 / 12.0 }, { 55 / 24.0, -59 / 24.0, 37 / 24.0, -9 / 24.0 }
    };
    int n = T->p->steps, ratio = T->n_train / n, n_ets = 0, ne = (n > 1 ? n + 1 : 1) - T->start;

    if (!T->b->skip_prk_steps)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "pndm: this model's scheduler config has skip_prk_steps false "
                             "(Runge-Kutta warm-up steps), which sdmorph does not run; pick another sampler");
    if (discrete_t(T, n, T->step_t))
        return bad_spacing(T, err);
    s->init_sigma = 1.0;
    for (int e = 0; e < ne; e++) {
        int t = plms_t(T, e + T->start), tp = t - ratio;
        sdm_step *st = &s->steps[e];
        sdm_lin X = lin_x(1), OUT = { 0 }, M, sample = X;

        if (t >= T->n_train || (e == 1 && t + ratio >= T->n_train))
            return past_schedule(T, err);
        OUT.out = 1;
        st->t = t;
        st->sigma = T->sig[t];
        st->c_in = 1.0;
        st->noise_draw = -1;
        vp_x0(T->b->prediction, sqrt(T->ac[t]), sqrt(1 - T->ac[t]), st);
        if (e == 1) {
            /* from the start of step 0 (t + ratio to t) with the mean output */
            sdm_lin prev = lin_slot(0, 1);
            M = lin_add(0.5, &OUT, 0.5, &prev);
            sample = lin_slot(3, 1);
            st->next = pndm_prev(T, t + ratio, t, &sample, &M);
            continue;
        }
        n_ets = n_ets < 4 ? n_ets + 1 : 4;
        M = lin_add(ab[n_ets - 1][0], &OUT, 0, &OUT);
        for (int j = 1; j < n_ets; j++)
            M.slot[j - 1] = ab[n_ets - 1][j];
        st->next = pndm_prev(T, t, tp, &sample, &M);
        save(st, 0, OUT);
        save(st, 1, lin_slot(0, 1));
        save(st, 2, lin_slot(1, 1));
        if (e == 0)
            save(st, 3, X);
    }
    s->n_steps = ne;
    return 0;
}

/* ---- LCM ---------------------------------------------------------------------- */

/* LCMScheduler: timesteps from the original_inference_steps grid, each step
 * the consistency boundary condition c_skip·x + c_out·x0, then (but the
 * last) noised again to the next timestep with fresh noise. */
static int make_lcm(const tables *T, sdm_schedule *s, sdm_error *err)
{
    const sdm_bundle *b = T->b;
    int n = T->p->steps, orig = b->original_inference_steps, k;

    if (orig < 1 || orig > T->n_train)
        return sdm_error_set(err, SDM_EXIT_USAGE, "lcm: original_inference_steps %d is outside 1..%d", orig,
                             T->n_train);
    if (n > orig)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "lcm takes at most %d steps with this model "
                             "(original_inference_steps); got %d",
                             orig, n);
    k = T->n_train / orig;
    s->init_sigma = 1.0;
    for (int i = 0; i < n; i++) {
        /* lcm_origin_timesteps reversed: (orig − j)·k − 1, at floor(linspace(0, orig, n, endpoint=False)) */
        int j = (int)floor(i * ((double)orig / n));
        T->step_t[i] = (double)(orig - j) * k - 1;
    }
    for (int i = 0; i < n; i++) {
        sdm_step *st = &s->steps[i];
        int t = (int)T->step_t[i], tp = i + 1 < n ? (int)T->step_t[i + 1] : t;
        double a = T->ac[t], ap = T->ac[tp], st_ = t * b->timestep_scaling;
        double c_skip = 0.25 / (st_ * st_ + 0.25), c_out = st_ / sqrt(st_ * st_ + 0.25);
        sdm_lin x0 = vp_x0(b->prediction, sqrt(a), sqrt(1 - a), st), X = lin_x(1);
        sdm_lin denoised = lin_add(c_out, &x0, c_skip, &X);

        st->t = t;
        st->sigma = T->sig[t];
        st->c_in = 1.0;
        st->noise_draw = i + 1 < n ? i : -1;
        st->next = i + 1 < n ? lin_add(sqrt(ap), &denoised, 0, &X) : denoised;
        st->next.noise = i + 1 < n ? sqrt(1 - ap) : 0;
    }
    return 0;
}

/* ---- the table ---------------------------------------------------------------- */

/* Each class's own spacing where neither the recipe nor the model says. */
static sdm_spacing default_spacing(sdm_sampler k)
{
    return k == SDM_SAMPLER_DDIM || k == SDM_SAMPLER_PNDM || k == SDM_SAMPLER_LCM ? SDM_SPACING_LEADING
                                                                                  : SDM_SPACING_LINSPACE;
}

/* The request against the sampler: what it refuses. */
static int check_params(const sdm_bundle *b, const sdm_sampler_params *p, sdm_error *err)
{
    if (p->kind < 0 || p->kind >= SDM_SAMPLER_AUTO)
        return sdm_error_set(err, SDM_EXIT_USAGE, "unknown sampler %d", (int)p->kind);
    if (b->train_steps < 2)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: train_steps must be at least 2", b->dir);
    if (p->steps < 1 || p->steps > b->train_steps)
        return sdm_error_set(err, SDM_EXIT_USAGE, "steps must be 1..%d, not %d", b->train_steps, p->steps);
    if (!(p->eta >= 0 && p->eta <= 1))
        return sdm_error_set(err, SDM_EXIT_USAGE, "eta must be in [0, 1], not %g", p->eta);
    if (p->eta > 0 && p->kind != SDM_SAMPLER_DDIM)
        return sdm_error_set(err, SDM_EXIT_USAGE, "eta applies to the ddim sampler only, not %s",
                             sdm_sampler_name(p->kind));
    if (p->karras && !sdm_sampler_has_karras(p->kind))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "karras sigmas apply to euler, dpmpp_2m, dpmpp_2m_sde, lms, heun "
                             "and unipc, not %s%s",
                             sdm_sampler_name(p->kind), p->kind == SDM_SAMPLER_EULER_A ? " (as in diffusers)" : "");
    if (p->spacing < 0 || p->spacing >= SDM_SPACING_COUNT)
        return sdm_error_set(err, SDM_EXIT_USAGE, "unknown timestep spacing %d", (int)p->spacing);
    return 0;
}

static int build(const tables *T, sdm_schedule *out, sdm_error *err)
{
    switch (T->p->kind) {
    case SDM_SAMPLER_DDIM:
        return make_ddim(T, out, err);
    case SDM_SAMPLER_EULER:
        return make_euler(T, 0, out, err);
    case SDM_SAMPLER_EULER_A:
        return make_euler(T, 1, out, err);
    case SDM_SAMPLER_DPMPP_2M:
        return make_dpmpp_2m(T, 0, out, err);
    case SDM_SAMPLER_DPMPP_2M_SDE:
        return make_dpmpp_2m(T, 1, out, err);
    case SDM_SAMPLER_PNDM:
        return make_pndm(T, out, err);
    case SDM_SAMPLER_LMS:
        return make_lms(T, out, err);
    case SDM_SAMPLER_HEUN:
        return make_heun(T, out, err);
    case SDM_SAMPLER_UNIPC:
        return make_unipc(T, out, err);
    case SDM_SAMPLER_LCM:
        return make_lcm(T, out, err);
    default:
        return sdm_error_set(err, SDM_EXIT_USAGE, "sampler '%s' is not available", sdm_sampler_name(T->p->kind));
    }
}

/* The request with auto and the default spacing resolved from the bundle;
 * -1 where auto meets a scheduler class sdmorph does not have. */
static int resolve(const sdm_bundle *b, const sdm_sampler_params *p, sdm_sampler_params *out, sdm_error *err)
{
    sdm_sampler_params r = *p;
    sdm_sampler named;

    if (r.kind == SDM_SAMPLER_AUTO) {
        int karras;
        if (b->scheduler[0] && (sdm_sampler_from_str(b->scheduler, &named) || named == SDM_SAMPLER_AUTO))
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "the model's scheduler, %s (%s/model.yaml), is not one "
                                 "sdmorph has: name a sampler in the recipe (`sdmorph samplers` lists them)",
                                 b->scheduler, b->dir);
        r.kind = sdm_sampler_auto(b, &karras);
        r.karras = r.karras || karras;
    }
    if (r.spacing == SDM_SPACING_DEFAULT)
        r.spacing = b->timestep_spacing != SDM_SPACING_DEFAULT ? b->timestep_spacing : default_spacing(r.kind);
    *out = r;
    return 0;
}

int sdm_image_start_step(int steps, double strength)
{
    double run = strength > 0 ? floor(steps * strength) : 0; /* Python's int() of a non-negative float */

    return run >= steps ? 0 : steps - (int)run;
}

/* The sigma samplers: x = x0 + sigma·eps (the others: VP scaling). */
static int sigma_scaled(sdm_sampler k)
{
    return k == SDM_SAMPLER_EULER || k == SDM_SAMPLER_EULER_A || k == SDM_SAMPLER_HEUN || k == SDM_SAMPLER_LMS;
}

/* An image start: the evaluations before the start dropped (pndm's list
 * was built from it already), per-step noise counted from it, and the
 * scheduler's add_noise at its first evaluation as the starting latent. */
static void start_at(sdm_schedule *s, const sdm_sampler_params *p)
{
    int first = p->kind == SDM_SAMPLER_PNDM ? 0 : p->kind == SDM_SAMPLER_HEUN ? 2 * p->start : p->start;
    double sig;

    if (p->start >= p->steps || first > s->n_steps)
        first = s->n_steps;
    memmove(s->steps, s->steps + first, sizeof *s->steps * (size_t)(s->n_steps - first));
    s->n_steps -= first;
    for (int i = 0; i < s->n_steps; i++)
        if (s->steps[i].noise_draw >= 0)
            s->steps[i].noise_draw -= p->start;
    s->from_image = 1;
    s->start = p->start;
    s->init_sigma = 1.0;
    sig = s->n_steps ? s->steps[0].sigma : 0.0;
    s->start_x = sigma_scaled(p->kind) ? 1.0 : 1 / sqrt(1 + sig * sig);
    s->start_noise = sigma_scaled(p->kind) ? sig : sig / sqrt(1 + sig * sig);
}

static void summarize(sdm_schedule *s)
{
    for (int i = 0; i < s->n_steps; i++) {
        s->uses_noise |= s->steps[i].noise_draw >= 0;
        s->uses_prev |= s->steps[i].saves != 0;
    }
}

int sdm_schedule_make(const sdm_bundle *b, const sdm_sampler_params *req, sdm_schedule *out, sdm_error *err)
{
    sdm_sampler_params p = *req;
    tables T = { b, &p, SDM_SPACING_DEFAULT, b->train_steps, NULL, NULL, NULL, NULL, NULL, 0 };
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (resolve(b, req, &p, err))
        goto end;
    T.spacing = p.spacing;
    out->kind = p.kind;
    out->karras = p.karras;
    out->spacing = p.spacing;
    out->n_steps = out->sampler_steps = p.steps;
    if (check_params(b, &p, err))
        goto end;
    if (p.from_image && (p.start < 0 || p.start > p.steps)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: an image start at step %d of %d", p.start, p.steps);
        goto end;
    }
    T.start = p.from_image ? p.start : 0;
    T.ac = malloc(sizeof *T.ac * T.n_train);
    T.sig = malloc(sizeof *T.sig * T.n_train);
    T.log_sig = malloc(sizeof *T.log_sig * T.n_train);
    T.step_sig = malloc(sizeof *T.step_sig * (p.steps + 1));
    T.step_t = malloc(sizeof *T.step_t * (p.steps + 1));
    out->steps = calloc(2 * (size_t)p.steps + 1, sizeof *out->steps);
    if (!T.ac || !T.sig || !T.log_sig || !T.step_sig || !T.step_t || !out->steps) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    sdm_alphas_cumprod(b, T.ac);
    for (int i = 0; i < T.n_train; i++) {
        T.sig[i] = sqrt((1 - T.ac[i]) / T.ac[i]);
        T.log_sig[i] = log(T.sig[i]);
    }
    rc = build(&T, out, err);
    if (!rc && p.from_image)
        start_at(out, &p);
    if (!rc)
        summarize(out);
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

int sdm_schedule_set_make(const sdm_bundle *b, const sdm_sampler_params *p, sdm_schedule_set *out, sdm_error *err)
{
    memset(out, 0, sizeof *out);
    out->bundle = b;
    out->params = *p;
    out->params.from_image = 0;
    if (sdm_schedule_make(b, &out->params, &out->noise, err))
        return -1;
    out->starts = calloc((size_t)p->steps + 1, sizeof *out->starts);
    out->made = calloc((size_t)p->steps + 1, 1);
    if (!out->starts || !out->made) {
        sdm_schedule_set_free(out);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    return 0;
}

const sdm_schedule *sdm_schedule_set_get(sdm_schedule_set *s, int start, sdm_error *err)
{
    sdm_sampler_params p = s->params;

    if (start < 0)
        return &s->noise;
    if (start > p.steps) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: an image start at step %d of %d", start, p.steps);
        return NULL;
    }
    if (!s->made[start]) {
        p.from_image = 1;
        p.start = start;
        if (sdm_schedule_make(s->bundle, &p, &s->starts[start], err))
            return NULL;
        s->made[start] = 1;
    }
    return &s->starts[start];
}

void sdm_schedule_set_free(sdm_schedule_set *s)
{
    if (!s)
        return;
    sdm_schedule_free(&s->noise);
    for (int i = 0; s->made && i <= s->params.steps; i++)
        if (s->made[i])
            sdm_schedule_free(&s->starts[i]);
    free(s->starts);
    free(s->made);
    s->starts = NULL;
    s->made = NULL;
}
