/* The samplers' coefficient tables against values computed from diffusers'
 * scheduler formulas, a host-side perfect denoiser that makes every
 * deterministic sampler exact, the same on the analytic bundle through the
 * engine, and parity fixtures made with diffusers' own schedulers
 * (tests/fixtures/samplers.json, see make_sampler_fixtures.py). */
#include <json-c/json.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine.h"
#include "sampler.h"
#include "analytic.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };

/* SD 1.x's training schedule, as in its scheduler_config.json. */
static sdm_bundle sd_bundle(sdm_prediction pred)
{
    sdm_bundle b;
    memset(&b, 0, sizeof b);
    snprintf(b.dir, sizeof b.dir, "sd");
    b.prediction = pred;
    b.train_steps = 1000;
    b.beta_start = 0.00085;
    b.beta_end = 0.012;
    b.beta_schedule = SDM_BETAS_SCALED_LINEAR;
    b.steps_offset = 1;
    b.set_alpha_to_one = 0;
    b.skip_prk_steps = 1;
    b.original_inference_steps = 50;
    b.timestep_scaling = 10;
    return b;
}

static int make(const sdm_bundle *b, sdm_sampler kind, int steps, int karras, double eta, sdm_schedule *s,
                sdm_error *err)
{
    sdm_sampler_params p = sdm_sampler_default_params();
    p.kind = kind;
    p.steps = steps;
    p.karras = karras;
    p.eta = eta;
    memset(err, 0, sizeof *err);
    return sdm_schedule_make(b, &p, s, err);
}

/* ---- tables --------------------------------------------------------------- */

static void test_ddim_table(void)
{
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_DDIM, 50, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.n_steps, 50);
    CHECK_NEAR(s.steps[0].t, 981, 0);
    CHECK_NEAR(s.steps[1].t, 961, 0);
    CHECK_NEAR(s.steps[48].t, 21, 0);
    CHECK_NEAR(s.steps[49].t, 1, 0);
    CHECK_NEAR(s.init_sigma, 1.0, 0);
    CHECK_INT(s.uses_noise, 0);
    CHECK_INT(s.uses_prev, 0);
    /* a = ᾱ[981], a_prev = ᾱ[961]: x' = sqrt(a_prev)·x0 + sqrt(1−a_prev)·eps */
    CHECK_NEAR(s.steps[0].next.x, 1.1228517009624681, 1e-12);
    CHECK_NEAR(s.steps[0].next.out, -0.12325200628536326, 1e-12);
    CHECK_NEAR(s.steps[0].next.noise, 0, 0);
    sdm_schedule_free(&s);

    CHECK_INT(make(&b, SDM_SAMPLER_DDIM, 50, 0, 1.0, &s, &err), 0);
    CHECK_INT(s.uses_noise, 1);
    CHECK_NEAR(s.steps[0].next.noise, 0.45446327241359896, 1e-12);
    sdm_schedule_free(&s);

    /* 1000 steps with steps_offset 1 would ask for timestep 1000 */
    CHECK(make(&b, SDM_SAMPLER_DDIM, 1000, 0, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "ddim takes at most 999 steps with this model's 1000 training steps");
    CHECK(s.steps == NULL);
}

static void test_euler_table(void)
{
    static const double sig10[10] = { 14.6146412293, 7.8398828728, 4.6091741339, 2.9183071154, 1.9501614706,
                                      1.3449277834,  0.9323579668, 0.624976918,  0.3686577454, 0.0291671582 };
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON), bv = sd_bundle(SDM_PRED_V);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 10, 0, 0.0, &s, &err), 0);
    for (int i = 0; i < 10; i++) {
        CHECK_NEAR(s.steps[i].t, 999 - 111 * i, 1e-9);
        CHECK_NEAR(s.steps[i].sigma, sig10[i], 1e-9);
        CHECK_NEAR(s.steps[i].c_in, 1 / sqrt(sig10[i] * sig10[i] + 1), 1e-9);
        /* epsilon: x' = x + (sigma_next − sigma)·eps */
        CHECK_NEAR(s.steps[i].next.x, 1.0, 1e-12);
        CHECK_NEAR(s.steps[i].next.out, (i < 9 ? sig10[i + 1] : 0) - sig10[i], 1e-9);
    }
    CHECK_NEAR(s.init_sigma, 14.6146412293, 1e-9);
    CHECK_INT(s.uses_noise, 0);
    sdm_schedule_free(&s);

    /* 50 steps: fractional timesteps, sigma linear in t between table entries */
    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 50, 0, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[1].t, 978.61224, 1e-4);
    CHECK_NEAR(s.steps[1].sigma, 12.9367730652, 1e-8);
    CHECK_NEAR(s.steps[2].sigma, 11.4916456428, 1e-8);
    CHECK_NEAR(s.steps[48].sigma, 0.1393372355, 1e-9);
    CHECK_NEAR(s.steps[49].t, 0, 0);
    sdm_schedule_free(&s);

    /* 1 step: np.linspace(0, 999, 1) is [0], so sigma(0), as diffusers does */
    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 1, 0, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[0].t, 0, 0);
    CHECK_NEAR(s.init_sigma, 0.0291671582, 1e-9);
    sdm_schedule_free(&s);

    /* v-prediction: x0 = x/(σ²+1) − σ/sqrt(σ²+1)·v */
    CHECK_INT(make(&bv, SDM_SAMPLER_EULER, 10, 0, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[0].next.x, 0.5386005575261295, 1e-9);
    CHECK_NEAR(s.steps[0].next.out, -0.4624782980494554, 1e-9);
    CHECK_NEAR(s.steps[0].x0_x, 1 / (sig10[0] * sig10[0] + 1), 1e-12);
    sdm_schedule_free(&s);
}

static void test_karras_tables(void)
{
    static const double ek10[10] = { 14.6146412293, 9.102928134,  5.4783919864, 3.168603073,  1.7494170493,
                                     0.914072265,   0.4469182094, 0.2013982998, 0.0819102383, 0.0291671582 };
    static const double et10[10] = { 999.0,
                                     916.2839069875822,
                                     815.0446806540714,
                                     687.1527460744257,
                                     523.1980846596061,
                                     327.14598869932246,
                                     145.9380686057837,
                                     40.85643285535896,
                                     6.732296793259858,
                                     0.0 };
    static const int dt25[25] = { 999, 970, 938, 905, 868, 829, 786, 739, 687, 630, 568, 500, 427,
                                  352, 278, 207, 146, 96,  59,  34,  18,  9,   4,   1,   0 };
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 10, 1, 0.0, &s, &err), 0);
    for (int i = 0; i < 10; i++) {
        CHECK_NEAR(s.steps[i].sigma, ek10[i], 1e-9);
        CHECK_NEAR(s.steps[i].t, et10[i], 1e-6);
    }
    CHECK_NEAR(s.init_sigma, 14.6146412293, 1e-9);
    sdm_schedule_free(&s);

    /* DPM++: Karras ends are the training table's, timesteps rounded */
    CHECK_INT(make(&b, SDM_SAMPLER_DPMPP_2M, 25, 1, 0.0, &s, &err), 0);
    for (int i = 0; i < 25; i++)
        CHECK_NEAR(s.steps[i].t, dt25[i], 0);
    CHECK_NEAR(s.steps[0].sigma, 14.6146412293, 1e-9);
    CHECK_NEAR(s.steps[10].sigma, 2.0392390645, 1e-9);
    CHECK_NEAR(s.steps[24].sigma, 0.0291671582, 1e-9);
    sdm_schedule_free(&s);

    /* 1 step: Euler's Karras ends are both sigma(t=0); DPM++'s the table's */
    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 1, 1, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[0].sigma, 0.0291671582, 1e-9);
    sdm_schedule_free(&s);
    CHECK_INT(make(&b, SDM_SAMPLER_DPMPP_2M, 1, 1, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[0].sigma, 14.6146412293, 1e-9);
    CHECK_NEAR(s.steps[0].t, 999, 0);
    sdm_schedule_free(&s);
}

static void test_dpm_table(void)
{
    static const int t10[10] = { 999, 899, 799, 699, 599, 500, 400, 300, 200, 100 };
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON), bv = sd_bundle(SDM_PRED_V);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_DPMPP_2M, 10, 0, 0.0, &s, &err), 0);
    for (int i = 0; i < 10; i++)
        CHECK_NEAR(s.steps[i].t, t10[i], 0);
    CHECK_NEAR(s.init_sigma, 1.0, 0);
    CHECK_INT(s.uses_prev, 1);
    /* first and last steps are first order */
    CHECK_NEAR(s.steps[0].next.slot[0], 0, 0);
    CHECK_NEAR(s.steps[9].next.slot[0], 0, 0);
    CHECK(s.steps[8].next.slot[0] != 0);
    /* the last step lands on x0: x' = x0_x·x + x0_out·out */
    CHECK_NEAR(s.steps[9].next.x, s.steps[9].x0_x, 1e-12);
    CHECK_NEAR(s.steps[9].next.out, s.steps[9].x0_out, 1e-12);
    /* a second-order step, from diffusers' midpoint formula in lambda */
    CHECK_NEAR(s.steps[1].next.x, 1.883325344520264, 1e-9);
    CHECK_NEAR(s.steps[1].next.out, -0.8885860620708912, 1e-9);
    CHECK_NEAR(s.steps[1].next.slot[0], -0.0323424838094591, 1e-9);
    sdm_schedule_free(&s);

    CHECK_INT(make(&bv, SDM_SAMPLER_DPMPP_2M, 10, 0, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[1].next.x, 1.0011149579325171, 1e-9);
    CHECK_NEAR(s.steps[1].next.out, -0.10625452227247426, 1e-9);
    CHECK_NEAR(s.steps[1].next.slot[0], -0.0323424838094591, 1e-9);
    sdm_schedule_free(&s);

    /* 2 steps: linspace(0, 999, 3) rounds 499.5 to even */
    CHECK_INT(make(&b, SDM_SAMPLER_DPMPP_2M, 2, 0, 0.0, &s, &err), 0);
    CHECK_NEAR(s.steps[0].t, 999, 0);
    CHECK_NEAR(s.steps[1].t, 500, 0);
    sdm_schedule_free(&s);
}

static void test_euler_a_table(void)
{
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_EULER_A, 10, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.uses_noise, 1);
    CHECK_NEAR(s.steps[0].next.noise, 6.616377074728944, 1e-9); /* sigma_up */
    CHECK_NEAR(s.steps[0].next.out, -10.409011922733422, 1e-9); /* sigma_down − sigma */
    CHECK_NEAR(s.steps[0].c_in, 0.0682649142171675, 1e-12);
    CHECK_NEAR(s.steps[9].next.noise, 0, 0); /* none on the last step */
    CHECK_NEAR(s.init_sigma, 14.6146412293, 1e-9);
    sdm_schedule_free(&s);
}

static void test_bad_params(void)
{
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON);
    sdm_schedule s;
    sdm_error err;

    CHECK(make(&b, SDM_SAMPLER_EULER, 0, 0, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "steps must be 1..1000");
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK(make(&b, SDM_SAMPLER_EULER_A, 10, 1, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "not euler_a");
    CHECK(make(&b, SDM_SAMPLER_DDIM, 10, 1, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "not ddim");
    CHECK(make(&b, SDM_SAMPLER_EULER, 10, 0, 0.5, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "eta applies to the ddim sampler only, not euler");
    CHECK(make(&b, SDM_SAMPLER_DDIM, 10, 0, -0.1, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "eta must be in [0, 1]");
    CHECK(make(&b, SDM_SAMPLER_COUNT, 10, 0, 0.0, &s, &err) != 0);
    CHECK(s.steps == NULL);
    sdm_schedule_free(NULL);
}

/* The new samplers' tables against diffusers' (values printed by its
 * schedulers for SD 1.5's config). */
static void test_new_tables(void)
{
    static const int pndm10[11] = { 901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1 };
    static const double heun4[7] = { 999, 666, 666, 333, 333, 0, 0 };
    static const int unipc4[4] = { 999, 749, 500, 250 };
    static const int lcm4[4] = { 999, 759, 499, 259 };
    sdm_bundle b = sd_bundle(SDM_PRED_EPSILON);
    sdm_schedule s;
    sdm_error err;

    CHECK_INT(make(&b, SDM_SAMPLER_PNDM, 10, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.n_steps, 11);
    for (int i = 0; i < 11 && i < s.n_steps; i++)
        CHECK_NEAR(s.steps[i].t, pndm10[i], 0);
    CHECK_INT(s.uses_noise, 0);
    sdm_schedule_free(&s);
    CHECK_INT(make(&b, SDM_SAMPLER_HEUN, 4, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.n_steps, 7);
    for (int i = 0; i < 7 && i < s.n_steps; i++)
        CHECK_NEAR(s.steps[i].t, heun4[i], 0);
    CHECK_NEAR(s.steps[0].sigma, 14.6146412293, 1e-9);
    CHECK_NEAR(s.steps[1].sigma, s.steps[2].sigma, 0);
    sdm_schedule_free(&s);
    CHECK_INT(make(&b, SDM_SAMPLER_UNIPC, 4, 0, 0.0, &s, &err), 0);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(s.steps[i].t, unipc4[i], 0);
    sdm_schedule_free(&s);
    CHECK_INT(make(&b, SDM_SAMPLER_LCM, 4, 0, 0.0, &s, &err), 0);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(s.steps[i].t, lcm4[i], 0);
    CHECK_INT(s.steps[0].noise_draw, 0);
    CHECK_INT(s.steps[2].noise_draw, 2);
    CHECK_INT(s.steps[3].noise_draw, -1); /* the last step adds none */
    sdm_schedule_free(&s);
    CHECK_INT(make(&b, SDM_SAMPLER_LMS, 4, 0, 0.0, &s, &err), 0);
    /* order 1 first: Euler's step; the coefficients of a step sum to the sigma gap */
    CHECK_NEAR(s.steps[0].next.out, s.steps[1].sigma - s.steps[0].sigma, 1e-5);
    /* epsilon: each derivative is the model's output; the last step's four weights sum to 0 − sigma */
    CHECK_NEAR(s.steps[3].next.x, 1, 1e-12);
    CHECK_NEAR(s.steps[3].next.out + s.steps[3].next.slot[0] + s.steps[3].next.slot[1] + s.steps[3].next.slot[2],
               -s.steps[3].sigma, 1e-9);
    sdm_schedule_free(&s);
    /* auto: the bundle's scheduler, ddim where it names none */
    CHECK_INT(make(&b, SDM_SAMPLER_AUTO, 10, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.kind, SDM_SAMPLER_DDIM);
    sdm_schedule_free(&s);
    snprintf(b.scheduler, sizeof b.scheduler, "DPMSolverMultistepScheduler");
    snprintf(b.algorithm_type, sizeof b.algorithm_type, "sde-dpmsolver++");
    b.use_karras_sigmas = 1;
    CHECK_INT(make(&b, SDM_SAMPLER_AUTO, 10, 0, 0.0, &s, &err), 0);
    CHECK_INT(s.kind, SDM_SAMPLER_DPMPP_2M_SDE);
    CHECK_INT(s.karras, 1);
    CHECK_INT(s.uses_noise, 1);
    sdm_schedule_free(&s);
    snprintf(b.scheduler, sizeof b.scheduler, "DDPMScheduler");
    CHECK(make(&b, SDM_SAMPLER_AUTO, 10, 0, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "the model's scheduler, DDPMScheduler (sd/model.yaml), is not one sdmorph has");
    CHECK_INT(make(&b, SDM_SAMPLER_EULER, 10, 0, 0.0, &s, &err), 0); /* a named sampler still works */
    sdm_schedule_free(&s);
    snprintf(b.scheduler, sizeof b.scheduler, "PNDMScheduler");
    b.skip_prk_steps = 0;
    CHECK(make(&b, SDM_SAMPLER_AUTO, 10, 0, 0.0, &s, &err) != 0);
    CHECK_CONTAINS(err.msg, "skip_prk_steps");
}

/* Sampler names and the aliases users type. */
static void test_names(void)
{
    sdm_sampler k;
    bool karras = false;

    CHECK_INT(sdm_sampler_parse("DPM++ 2M Karras", &k, &karras), 0);
    CHECK_INT(k, SDM_SAMPLER_DPMPP_2M);
    CHECK(karras);
    CHECK_INT(sdm_sampler_parse("euler a", &k, &karras), 0);
    CHECK_INT(k, SDM_SAMPLER_EULER_A);
    CHECK(!karras);
    CHECK_INT(sdm_sampler_parse("dpmpp_2m_sde_gpu", &k, &karras), 0);
    CHECK_INT(k, SDM_SAMPLER_DPMPP_2M_SDE);
    CHECK_INT(sdm_sampler_parse("uni_pc", &k, NULL), 0);
    CHECK_INT(k, SDM_SAMPLER_UNIPC);
    CHECK_INT(sdm_sampler_parse("PNDMScheduler", &k, NULL), 0);
    CHECK_INT(k, SDM_SAMPLER_PNDM);
    CHECK(sdm_sampler_parse("euler_b", &k, NULL) != 0);
    CHECK(sdm_sampler_parse(NULL, &k, NULL) != 0);
    for (int i = 0; i < SDM_SAMPLER_COUNT; i++) {
        CHECK_INT(sdm_sampler_from_str(sdm_sampler_name((sdm_sampler)i), &k), 0);
        CHECK_INT(k, i);
    }
}

/* ---- a perfect denoiser on the host ------------------------------------- */

/* The analytic UNet's ᾱ(t): log sigma interpolated between table entries,
 * the table value itself at integer t (pipeline/export/analytic.py). */
static double alpha_bar(const double *ac, const double *ls, int n, double t)
{
    int lo;
    double frac, l;

    t = fmin(fmax(t, 0), n - 1);
    lo = (int)floor(t);
    if (lo > n - 2)
        lo = n - 2;
    frac = t - lo;
    if (frac == 0)
        return ac[lo];
    if (frac == 1)
        return ac[lo + 1];
    l = (1 - frac) * ls[lo] + frac * ls[lo + 1];
    return 1 / (1 + exp(2 * l));
}

static double model_out(sdm_prediction pred, double ab, double u, double x0)
{
    double a = sqrt(ab), s = sqrt(1 - ab), eps = (u - a * x0) / s;
    return pred == SDM_PRED_V ? a * eps - s * x0 : eps;
}

/* Runs a schedule on scalar latents: element j starts at xT[j], its
 * conditional/unconditional targets are x0c[j], x0u[j]. */
static void host_sample(const sdm_bundle *b, const sdm_schedule *s, double g, const double *x0c, const double *x0u,
                        const double *xT, int n, double *out)
{
    double *ac = malloc(sizeof *ac * b->train_steps), *ls = malloc(sizeof *ls * b->train_steps);
    sdm_alphas_cumprod(b, ac);
    for (int i = 0; i < b->train_steps; i++)
        ls[i] = log(sqrt((1 - ac[i]) / ac[i]));
    for (int j = 0; j < n; j++) {
        double x = xT[j], slot[SDM_SLOTS] = { 0 };
        for (int i = 0; i < s->n_steps; i++) {
            const sdm_step *k = &s->steps[i];
            double ab = alpha_bar(ac, ls, b->train_steps, (float)k->t), u = k->c_in * x;
            double oc = model_out(b->prediction, ab, u, x0c[j]), ou = model_out(b->prediction, ab, u, x0u[j]);
            double o = g > 1 ? ou + g * (oc - ou) : oc, fresh[SDM_SLOTS];
            double noise = sin(12.9898 * (i + 1) + 78.233 * j); /* any noise */
            double nx = k->next.x * x + k->next.out * o + k->next.noise * noise;
            for (int q = 0; q < SDM_SLOTS; q++) {
                const sdm_lin *l = &k->save[q];
                fresh[q] = l->x * x + l->out * o + l->noise * noise;
                for (int r = 0; r < SDM_SLOTS; r++)
                    fresh[q] += l->slot[r] * slot[r];
                nx += k->next.slot[q] * slot[q];
            }
            for (int q = 0; q < SDM_SLOTS; q++)
                if (k->saves & (1u << q))
                    slot[q] = fresh[q];
            x = nx;
        }
        out[j] = x;
    }
    free(ac);
    free(ls);
}

/* Samplers whose result on a perfect denoiser has a closed form: not the
 * stochastic ones, nor PNDM on v-prediction (diffusers mixes the raw v of
 * several timesteps, which is not exact there). */
static int deterministic(int kind, sdm_prediction pred)
{
    return kind != SDM_SAMPLER_EULER_A && kind != SDM_SAMPLER_DPMPP_2M_SDE && kind != SDM_SAMPLER_LCM &&
           kind != SDM_SAMPLER_AUTO && !(kind == SDM_SAMPLER_PNDM && pred == SDM_PRED_V);
}

/* How close a closed form holds: LMS's Lagrange weights over close sigmas
 * amplify float32 rounding and the analytic model's log-sigma interpolation
 * at fractional timesteps (diffusers interpolates sigma linearly). */
static double closed_tolerance(int kind, double tol)
{
    return kind == SDM_SAMPLER_LMS ? tol * (tol < 1e-6 ? 5e4 : 3) : tol;
}

/* The closed form of a deterministic sampler's final latent on a perfect
 * denoiser toward x0*: x0* itself for the samplers that end at sigma 0,
 * sqrt(a_f)·x0* + sqrt(1−a_f)·eps0 for DDIM and PNDM (PLMS), whose eps
 * never changes. */
static double closed_form(const sdm_bundle *b, sdm_sampler kind, int steps, double x0s, double xT)
{
    double *ac, aT, af, r;
    int tT;

    if (kind != SDM_SAMPLER_DDIM && kind != SDM_SAMPLER_PNDM)
        return x0s;
    ac = malloc(sizeof *ac * b->train_steps);
    sdm_alphas_cumprod(b, ac);
    tT = (steps - 1) * (b->train_steps / steps) + b->steps_offset;
    aT = ac[tT];
    af = b->set_alpha_to_one ? 1.0 : ac[0];
    r = sqrt(af) * x0s + sqrt(1 - af) * (xT - sqrt(aT) * x0s) / sqrt(1 - aT);
    free(ac);
    return r;
}

static const int step_counts[] = { 1, 2, 10, 50 };
static const double guidances[] = { 1.0, 7.5 };

static void test_host_closed_forms(void)
{
    enum { N = 5 };
    const double x0c[N] = { 0.3, -0.7, 1.2, 0.0, -0.05 }, x0u[N] = { 0.1, 0.2, -0.4, 0.5, 0.0 };
    const double z[N] = { 1.1, -0.4, 0.05, -2.2, 0.9 };

    for (int pr = 0; pr < SDM_PRED_COUNT; pr++) {
        sdm_bundle b = sd_bundle((sdm_prediction)pr);
        for (int kind = 0; kind < SDM_SAMPLER_COUNT; kind++) {
            for (int karras = 0; karras < 2; karras++) {
                if (!deterministic(kind, (sdm_prediction)pr) || (karras && !sdm_sampler_has_karras((sdm_sampler)kind)))
                    continue;
                for (size_t si = 0; si < sizeof step_counts / sizeof *step_counts; si++) {
                    for (size_t gi = 0; gi < 2; gi++) {
                        sdm_schedule s;
                        sdm_error err;
                        double xT[N], out[N], worst = 0, g = guidances[gi];
                        if (make(&b, (sdm_sampler)kind, step_counts[si], karras, 0.0, &s, &err)) {
                            fprintf(stderr, "%s\n", err.msg);
                            CHECK(0);
                            continue;
                        }
                        for (int j = 0; j < N; j++)
                            xT[j] = z[j] * s.init_sigma;
                        host_sample(&b, &s, g, x0c, x0u, xT, N, out);
                        for (int j = 0; j < N; j++) {
                            double x0s = g > 1 ? x0u[j] + g * (x0c[j] - x0u[j]) : x0c[j];
                            worst = fmax(
                                worst, fabs(out[j] - closed_form(&b, (sdm_sampler)kind, s.sampler_steps, x0s, xT[j])));
                        }
                        if (worst > closed_tolerance(kind, 1e-9))
                            fprintf(stderr, "host %s %s karras=%d steps=%d g=%g: off by %g\n",
                                    sdm_prediction_name((sdm_prediction)pr), sdm_sampler_name((sdm_sampler)kind),
                                    karras, step_counts[si], g, worst);
                        CHECK(worst <= closed_tolerance(kind, 1e-9));
                        sdm_schedule_free(&s);
                    }
                }
            }
        }
    }
}

/* ---- the analytic bundle through the engine ----------------------------- */

/* Per-step noise as diffusers draws it: the seed's one CPU generator, its
 * draws after the initial latent in order. */
typedef struct {
    sdm_generator *gen;
    int drawn;
    int64_t shape[4];
} step_noise;

static int step_noise_fn(void *user, int draw, sdm_tensor **noise, sdm_error *err)
{
    step_noise *sn = user;
    sdm_torch_status st = SDM_TORCH_OK;

    while (!st && sn->drawn < draw) {
        sdm_tensor *skip = NULL;
        st = sdm_generator_randn(sn->gen, sn->shape, 4, cpu, &skip);
        sdm_tensor_free(&skip);
        sn->drawn++;
    }
    if (!st)
        st = sdm_generator_randn(sn->gen, sn->shape, 4, cpu, noise);
    sn->drawn++;
    return st ? sdm_error_set(err, SDM_EXIT_RUNTIME, "randn: %s", sdm_torch_last_error()) : 0;
}

/* Initial noise randn(seed) (the denoiser scales it by init_sigma),
 * denoised with schedule s (its first n_steps steps); the final latent as
 * host floats. */
static float *run_engine(sdm_denoiser *d, const sdm_schedule *s, uint64_t seed, const int64_t *shape,
                         const sdm_tensor *cond, const sdm_tensor *uncond, double g)
{
    sdm_tensor *z = NULL, *lat = NULL;
    step_noise sn = { NULL, 0, { shape[0], shape[1], shape[2], shape[3] } };
    sdm_error err = { 0 };
    float *v = NULL;

    if (sdm_generator_new(seed, &sn.gen) || sdm_generator_randn(sn.gen, shape, 4, cpu, &z)) {
        fprintf(stderr, "noise: %s\n", sdm_torch_last_error());
        goto end;
    }
    if (denoise(d, s, z, cond, g > 1 ? uncond : NULL, g, s->uses_noise ? step_noise_fn : NULL, &sn, &lat, &err)) {
        fprintf(stderr, "denoise: %s\n", err.msg);
        goto end;
    }
    v = host_f32(lat);
end:
    sdm_generator_free(&sn.gen);
    sdm_tensor_free(&z);
    sdm_tensor_free(&lat);
    return v;
}

static void engine_closed_forms(const char *dir)
{
    enum { H = 8, W = 8, N = 4 * H * W };
    const int64_t shape[4] = { 1, 4, H, W };
    sdm_engine *e = NULL;
    sdm_denoiser *d = NULL;
    sdm_module *unet = NULL;
    const sdm_tensor *ec = NULL, *eu = NULL;
    sdm_tensor *x0c_t = NULL, *x0u_t = NULL, *z_t = NULL;
    float *x0c = NULL, *x0u = NULL, *z = NULL;
    sdm_error err = { 0 };
    const sdm_bundle *b;
    const uint64_t seed = 1234;
    double overall = 0;
    int runs = 0;

    if (sdm_engine_open(dir, cpu, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    b = sdm_engine_bundle(e);
    d = engine_denoiser(e);
    unet = analytic_unet(e);
    CHECK(d && unet);
    CHECK_INT(sdm_engine_embed(e, "a red fox in the snow", &ec, &err), 0);
    CHECK_INT(sdm_engine_embed(e, "", &eu, &err), 0);
    if (!ec || !eu || !d)
        goto end;
    x0c_t = target(unet, ec, H, W);
    x0u_t = target(unet, eu, H, W);
    if (!x0c_t || !x0u_t || sdm_tensor_randn(seed, shape, 4, cpu, &z_t))
        goto end;
    x0c = host_f32(x0c_t);
    x0u = host_f32(x0u_t);
    z = host_f32(z_t);
    for (int kind = 0; kind < SDM_SAMPLER_COUNT; kind++) {
        for (int karras = 0; karras < 2; karras++) {
            if (!deterministic(kind, b->prediction) || (karras && !sdm_sampler_has_karras((sdm_sampler)kind)))
                continue;
            for (size_t si = 0; si < sizeof step_counts / sizeof *step_counts; si++) {
                for (size_t gi = 0; gi < 2; gi++) {
                    sdm_schedule s;
                    double g = guidances[gi], worst = 0;
                    float *out;
                    if (make(b, (sdm_sampler)kind, step_counts[si], karras, 0.0, &s, &err)) {
                        fprintf(stderr, "%s\n", err.msg);
                        CHECK(0);
                        continue;
                    }
                    out = run_engine(d, &s, seed, shape, ec, eu, g);
                    CHECK(out != NULL);
                    for (int j = 0; out && j < N; j++) {
                        double x0s = g > 1 ? x0u[j] + g * ((double)x0c[j] - x0u[j]) : x0c[j];
                        double xT = (double)(float)(z[j] * s.init_sigma);
                        worst = fmax(worst, fabs(out[j] - closed_form(b, (sdm_sampler)kind, s.sampler_steps, x0s, xT)));
                    }
                    if (worst > closed_tolerance(kind, 1e-4))
                        fprintf(stderr, "%s %s karras=%d steps=%d g=%g: off by %g\n", dir,
                                sdm_sampler_name((sdm_sampler)kind), karras, step_counts[si], g, worst);
                    CHECK(out && worst <= closed_tolerance(kind, 1e-4));
                    overall = fmax(overall, worst);
                    runs++;
                    free(out);
                    sdm_schedule_free(&s);
                }
            }
        }
    }
    printf("%s: %d sampler runs, final latents within %.2g of the closed forms\n", dir, runs, overall);
end:
    CHECK(x0c && x0u && z);
    free(x0c);
    free(x0u);
    free(z);
    sdm_tensor_free(&x0c_t);
    sdm_tensor_free(&x0u_t);
    sdm_tensor_free(&z_t);
    sdm_module_free(&unet);
    sdm_denoiser_free(&d);
    sdm_engine_free(&e);
}

static int have_bundle(const char *dir)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/model.yaml", dir);
    return stat(path, &st) == 0;
}

static void test_engine_closed_forms(void)
{
    char dir[512];

    snprintf(dir, sizeof dir, "%s/models/analytic", test_build_dir());
    if (!have_bundle(dir))
        SKIP("engine closed forms (epsilon): no analytic bundle (run make first)");
    else
        engine_closed_forms(dir);
    snprintf(dir, sizeof dir, "%s/models/analytic-v", test_build_dir());
    if (!have_bundle(dir))
        SKIP(
            "engine closed forms (v_prediction): no build/models/analytic-v (python3 pipeline/export/analytic.py "
            "--out build/models/analytic-v --prediction v_prediction)");
    else
        engine_closed_forms(dir);
}

/* ---- parity with diffusers' schedulers ----------------------------------- */

typedef struct {
    char name[32];
    sdm_engine *e;
    sdm_denoiser *d;
    sdm_module *text, *unet;
    int missing;
} fixture_bundle;

static double jnum(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : NAN;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static fixture_bundle *fixture_bundle_get(fixture_bundle *fb, int n, const char *name)
{
    char dir[512];
    sdm_error err = { 0 };

    for (int i = 0; i < n; i++) {
        if (!fb[i].name[0]) {
            snprintf(fb[i].name, sizeof fb[i].name, "%s", name);
            snprintf(dir, sizeof dir, "%s/models/%s", test_build_dir(), name);
            if (!have_bundle(dir)) {
                fb[i].missing = 1;
            } else if (sdm_engine_open(dir, cpu, &fb[i].e, &err) ||
                       sdm_module_load(sdm_engine_bundle(fb[i].e)->text_encoder, cpu, &fb[i].text)) {
                fprintf(stderr, "%s: %s%s\n", dir, err.msg, err.msg[0] ? "" : sdm_torch_last_error());
                CHECK(0);
                fb[i].missing = 1;
            } else {
                fb[i].unet = analytic_unet(fb[i].e);
                fb[i].d = engine_denoiser(fb[i].e);
                fb[i].missing = !fb[i].unet || !fb[i].d;
                CHECK(!fb[i].missing);
            }
        }
        if (!strcmp(fb[i].name, name))
            return &fb[i];
    }
    return NULL;
}

/* The text encoder on the fixture's token ids. */
static sdm_tensor *fixture_embed(fixture_bundle *fb, json_object *prompts, const char *name)
{
    json_object *ids = jget(prompts, name);
    int64_t v[256], shape[2] = { 1, 0 };
    sdm_tensor *t = NULL, *emb = NULL;

    if (!ids || json_object_array_length(ids) > 256)
        return NULL;
    shape[1] = (int64_t)json_object_array_length(ids);
    for (int64_t i = 0; i < shape[1]; i++)
        v[i] = json_object_get_int64(json_object_array_get_idx(ids, (size_t)i));
    if (!sdm_tensor_from_host(v, SDM_I64, shape, 2, cpu, &t))
        sdm_module_call(fb->text, "from_ids", &t, 1, &emb);
    sdm_tensor_free(&t);
    return emb;
}

/* Max |a − b| over a fixture latent (json array) and host floats. */
static double latent_diff(json_object *arr, const float *v, size_t n)
{
    double worst = 0;
    if (!arr || json_object_array_length(arr) != n)
        return INFINITY;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(json_object_get_double(json_object_array_get_idx(arr, i)) - v[i]));
    return worst;
}

static void fixture_case(fixture_bundle *fb, json_object *doc, json_object *c, const int64_t *shape, double *overall)
{
    sdm_sampler_params p = sdm_sampler_default_params();
    json_object *ts = jget(c, "timesteps"), *sig = jget(c, "sigmas"), *lats = jget(c, "latents");
    json_object *prompts = jget(doc, "prompts");
    sdm_tensor *cond = NULL, *uncond = NULL;
    sdm_denoiser *den = fb->d, *own = NULL;
    sdm_schedule s = { 0 };
    sdm_error err = { 0 };
    uint64_t seed = strtoull(jstr(c, "seed"), NULL, 10);
    double g = jnum(c, "guidance"), worst = 0;
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    char what[160];

    snprintf(what, sizeof what, "%s %s%s %s eta=%g seed=%s steps=%d g=%g", fb->name, jstr(c, "sampler"),
             json_object_get_boolean(jget(c, "karras")) ? " karras" : "", jstr(c, "spacing"), jnum(c, "eta"),
             jstr(c, "seed"), (int)jnum(c, "steps"), g);
    if (sdm_sampler_from_str(jstr(c, "sampler"), &p.kind)) {
        fprintf(stderr, "%s: unknown sampler\n", what);
        CHECK(0);
        return;
    }
    p.steps = (int)jnum(c, "steps");
    p.eta = jnum(c, "eta");
    p.karras = json_object_get_boolean(jget(c, "karras"));
    if (*jstr(c, "spacing") && sdm_spacing_from_str(jstr(c, "spacing"), &p.spacing)) {
        fprintf(stderr, "%s: unknown spacing\n", what);
        CHECK(0);
        return;
    }
    if (sdm_schedule_make(sdm_engine_bundle(fb->e), &p, &s, &err)) {
        fprintf(stderr, "%s: %s\n", what, err.msg);
        CHECK(0);
        return;
    }
    /* the tables first; diffusers' are float32 (sigma about 1e-5 relative
     * off at the small end, Karras timesteps from a float32 log-sigma table) */
    CHECK_NEAR(s.init_sigma, jnum(c, "init_noise_sigma"), 5e-5 * s.init_sigma);
    CHECK(ts && (int)json_object_array_length(ts) == s.n_steps);
    for (int i = 0; ts && i < s.n_steps && i < (int)json_object_array_length(ts); i++)
        CHECK_NEAR(s.steps[i].t, json_object_get_double(json_object_array_get_idx(ts, (size_t)i)), 5e-3);
    for (int i = 0; sig && i < s.n_steps && i < (int)json_object_array_length(sig); i++)
        CHECK_NEAR(s.steps[i].sigma, json_object_get_double(json_object_array_get_idx(sig, (size_t)i)),
                   5e-5 * s.steps[i].sigma);

    if (jnum(c, "guidance_rescale") > 0) {
        sdm_denoiser_params dp = { cpu,   sdm_engine_dtype(fb->e),     sdm_engine_unet_call,
                                   fb->e, jnum(c, "guidance_rescale"), 0 };
        CHECK_INT(sdm_denoiser_new(&dp, &own, &err), 0);
        den = own;
    }
    cond = fixture_embed(fb, prompts, jstr(c, "prompt"));
    uncond = fixture_embed(fb, prompts, jstr(c, "negative"));
    CHECK(cond && uncond);
    for (size_t k = 0; cond && uncond && lats && k < json_object_array_length(lats); k++) {
        json_object *cp = json_object_array_get_idx(lats, k);
        sdm_schedule part = s;
        float *out;
        double d;

        part.n_steps = (int)jnum(cp, "step");
        if (part.n_steps < 1 || part.n_steps > s.n_steps) {
            CHECK(0);
            continue;
        }
        out = den ? run_engine(den, &part, seed, shape, cond, uncond, g) : NULL;
        d = out ? latent_diff(jget(cp, "latent"), out, n) : INFINITY;
        if (d > 1e-4 || getenv("SDM_TEST_VERBOSE"))
            fprintf(stderr, "%s: after %d steps off diffusers by %g\n", what, part.n_steps, d);
        CHECK(d <= 1e-4);
        worst = fmax(worst, d);
        free(out);
    }
    *overall = fmax(*overall, worst);
    sdm_denoiser_free(&own);
    sdm_tensor_free(&cond);
    sdm_tensor_free(&uncond);
    sdm_schedule_free(&s);
}

static void test_fixtures(void)
{
    const char *path = getenv("SDM_SAMPLER_FIXTURES");
    fixture_bundle fb[4];
    json_object *doc = NULL, *cases, *shp;
    int64_t shape[4];
    int ran = 0, skipped = 0;
    double overall = 0;
    struct stat st;

    memset(fb, 0, sizeof fb);
    if (!path || !*path)
        path = "tests/fixtures/samplers.json";
    if (stat(path, &st)) {
        SKIP(
            "sampler parity with diffusers: tests/fixtures/samplers.json is absent "
            "(make it with tests/fixtures/make_sampler_fixtures.py)");
        return;
    }
    doc = json_object_from_file(path);
    cases = doc ? jget(doc, "cases") : NULL;
    shp = doc ? jget(doc, "shape") : NULL;
    if (!cases || !shp || json_object_array_length(shp) != 4) {
        fprintf(stderr, "%s: not a sampler fixture file (%s)\n", path, json_util_get_last_err());
        CHECK(0);
        goto end;
    }
    for (int i = 0; i < 4; i++)
        shape[i] = json_object_get_int64(json_object_array_get_idx(shp, (size_t)i));
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        fixture_bundle *b = fixture_bundle_get(fb, 4, jstr(c, "bundle"));

        if (!b || b->missing) {
            skipped++;
            continue;
        }
        if (!strcmp(b->name, "analytic") && !ran) {
            /* the bundle must be the one the fixture was made with */
            sdm_tensor *emb = fixture_embed(b, jget(doc, "prompts"), "a");
            sdm_tensor *x0 = emb ? target(b->unet, emb, (int)shape[2], (int)shape[3]) : NULL;
            float *v = x0 ? host_f32(x0) : NULL;
            double d = v ? latent_diff(jget(doc, "target_a"), v, (size_t)sdm_tensor_numel(x0)) : INFINITY;
            if (d > 1e-5)
                fprintf(stderr,
                        "%s: the analytic bundle's target differs from the fixture's by %g: "
                        "remake one of them\n",
                        path, d);
            CHECK(d <= 1e-5);
            free(v);
            sdm_tensor_free(&x0);
            sdm_tensor_free(&emb);
        }
        fixture_case(b, doc, c, shape, &overall);
        ran++;
    }
    printf("sampler parity: %d cases within %.2g of diffusers' latents\n", ran, overall);
    if (skipped)
        SKIP("sampler parity: some cases' bundles are absent (build/models/analytic, analytic-v)");
end:
    for (int i = 0; i < 4; i++) {
        sdm_module_free(&fb[i].text);
        sdm_module_free(&fb[i].unet);
        sdm_denoiser_free(&fb[i].d);
        sdm_engine_free(&fb[i].e);
    }
    json_object_put(doc);
}

int main(void)
{
    test_ddim_table();
    test_euler_table();
    test_karras_tables();
    test_dpm_table();
    test_euler_a_table();
    test_bad_params();
    test_new_tables();
    test_names();
    test_host_closed_forms();
    test_engine_closed_forms();
    test_fixtures();
    return test_report();
}
