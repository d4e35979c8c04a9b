/* The sampling loop of a batch on the analytic bundle's UNet: a later
 * first step, the guidance rule, and the batches it refuses. The
 * samplers' closed forms and diffusers' parity are in test_sampler.c. */
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>

#include "denoiser.h"
#include "engine.h"
#include "sampler.h"
#include "analytic.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };

enum { H = 8, W = 8, N = 4 * H * W };

typedef struct {
    sdm_engine *e;
    sdm_denoiser *d;
    sdm_module *unet;
    const sdm_tensor *cond, *uncond;
    sdm_tensor *x0c, *x0u; /* the UNet's exact targets [1,4,H,W] */
} fixture;

static int schedule(const fixture *f, sdm_sampler kind, int steps, sdm_schedule *s)
{
    sdm_sampler_params p = sdm_sampler_default_params();
    sdm_error err = { 0 };

    p.kind = kind;
    p.steps = steps;
    if (sdm_schedule_make(sdm_engine_bundle(f->e), &p, s, &err)) {
        fprintf(stderr, "schedule: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static double max_diff(const sdm_tensor *a, const sdm_tensor *b)
{
    double d = INFINITY;
    if (a && b && sdm_tensor_max_abs_diff(a, b, &d))
        d = INFINITY;
    return d;
}

/* DDIM from step k of 10 on a perfect denoiser toward x0*: the latent
 * given is taken as x at step k (not scaled, not re-noised), so the final
 * latent is sqrt(a_f)·x0* + sqrt(1 − a_f)·(x − sqrt(a_k)·x0*)/sqrt(1 − a_k),
 * a_k the training schedule's alpha at step k's timestep. */
static void test_first_step(const fixture *f)
{
    const sdm_bundle *b = sdm_engine_bundle(f->e);
    const int64_t shape[4] = { 1, 4, H, W };
    double *ac = malloc(sizeof *ac * b->train_steps);
    sdm_tensor *x = NULL, *out = NULL;
    float *xh = NULL, *x0 = NULL, *got = NULL;
    sdm_schedule s;
    int ks[] = { 0, 4, 9 };

    if (!ac || schedule(f, SDM_SAMPLER_DDIM, 10, &s)) {
        CHECK(0);
        free(ac);
        return;
    }
    sdm_alphas_cumprod(b, ac);
    CHECK_INT(sdm_tensor_randn(42, shape, 4, cpu, &x), SDM_TORCH_OK);
    xh = x ? host_f32(x) : NULL;
    x0 = host_f32(f->x0c);
    for (size_t ki = 0; xh && x0 && ki < sizeof ks / sizeof *ks; ki++) {
        sdm_batch bt = { 0 };
        sdm_error err = { 0 };
        double g = 1.0, worst = 0, ak = ac[(int)s.steps[ks[ki]].t], af = b->set_alpha_to_one ? 1.0 : ac[0];

        bt.latents = x;
        bt.cond.cond = f->cond;
        bt.guidance = &g;
        bt.first_step = ks[ki];
        CHECK_INT(sdm_denoiser_run(f->d, &s, &bt, &out, &err), 0);
        got = out ? host_f32(out) : NULL;
        for (int i = 0; got && i < N; i++) {
            double eps = (xh[i] - sqrt(ak) * x0[i]) / sqrt(1 - ak);
            worst = fmax(worst, fabs(got[i] - (sqrt(af) * x0[i] + sqrt(1 - af) * eps)));
        }
        printf("ddim from step %d of 10: max |latent - closed form| = %.2e\n", ks[ki], worst);
        CHECK(got && worst <= 1e-4);
        free(got);
        got = NULL;
        sdm_tensor_free(&out);
    }
    free(ac);
    free(xh);
    free(x0);
    sdm_tensor_free(&x);
    sdm_schedule_free(&s);
}

/* One frame through euler (init_sigma > 1) at scale g, with or without
 * the negative prompt's embeddings given. */
static sdm_tensor *run_one(const fixture *f, const sdm_schedule *s, const sdm_tensor *x, double g, int with_uncond)
{
    sdm_tensor *out = NULL;
    sdm_error err = { 0 };

    if (denoise(f->d, s, x, f->cond, with_uncond ? f->uncond : NULL, g, NULL, NULL, &out, &err))
        fprintf(stderr, "denoise: %s\n", err.msg);
    return out;
}

/* g ≤ 1 is conditional only, whether or not the negative prompt is given;
 * in a batch with a guided frame, the others run at g = 1. */
static void test_guidance_rule(const fixture *f)
{
    const int64_t shape[4] = { 1, 4, H, W };
    sdm_tensor *x = NULL, *c1 = NULL, *c05 = NULL, *cu = NULL, *g75 = NULL, *pair = NULL;
    sdm_tensor *x2 = NULL, *cond2 = NULL, *uncond2 = NULL, *row0 = NULL, *row1 = NULL;
    sdm_schedule s;
    double gs[2] = { 7.5, 0.5 };

    if (schedule(f, SDM_SAMPLER_EULER, 8, &s)) {
        CHECK(0);
        return;
    }
    CHECK_INT(sdm_tensor_randn(5, shape, 4, cpu, &x), SDM_TORCH_OK);
    c1 = run_one(f, &s, x, 1.0, 0);
    c05 = run_one(f, &s, x, 0.5, 1);
    cu = run_one(f, &s, x, 1.0, 1);
    g75 = run_one(f, &s, x, 7.5, 1);
    CHECK(max_diff(c1, c05) == 0.0);
    CHECK(max_diff(c1, cu) == 0.0);
    /* euler ends at sigma 0: the final latent is the guided target itself */
    CHECK(max_diff(c1, f->x0c) <= 1e-4);
    CHECK(max_diff(g75, c1) > 1e-2);
    {
        sdm_tensor *xs[2] = { x, x }, *cs[2] = { (sdm_tensor *)f->cond, (sdm_tensor *)f->cond };
        sdm_tensor *us[2] = { (sdm_tensor *)f->uncond, (sdm_tensor *)f->uncond };
        sdm_batch bt = { 0 };
        sdm_error err = { 0 };

        CHECK(!sdm_tensor_cat(xs, 2, &x2) && !sdm_tensor_cat(cs, 2, &cond2) && !sdm_tensor_cat(us, 2, &uncond2));
        bt.latents = x2;
        bt.cond.cond = cond2;
        bt.cond.uncond = uncond2;
        bt.guidance = gs;
        CHECK_INT(sdm_denoiser_run(f->d, &s, &bt, &pair, &err), 0);
        if (pair) {
            sdm_tensor_narrow(pair, 0, 1, &row0);
            sdm_tensor_narrow(pair, 1, 1, &row1);
        }
    }
    printf("guidance: batch {7.5, 0.5} vs alone: %.2e, %.2e\n", max_diff(row0, g75), max_diff(row1, c1));
    CHECK(max_diff(row0, g75) <= 1e-5);
    CHECK(max_diff(row1, c1) <= 1e-5);
    sdm_tensor_free(&x);
    sdm_tensor_free(&c1);
    sdm_tensor_free(&c05);
    sdm_tensor_free(&cu);
    sdm_tensor_free(&g75);
    sdm_tensor_free(&x2);
    sdm_tensor_free(&cond2);
    sdm_tensor_free(&uncond2);
    sdm_tensor_free(&pair);
    sdm_tensor_free(&row0);
    sdm_tensor_free(&row1);
    sdm_schedule_free(&s);
}

/* Runs bt and expects a refusal whose message holds `says`. */
static void refused(const fixture *f, const sdm_schedule *s, const sdm_batch *bt, const char *says)
{
    sdm_tensor *out = NULL;
    sdm_error err = { 0 };

    CHECK_INT(sdm_denoiser_run(f->d, s, bt, &out, &err), -1);
    CHECK(out == NULL);
    CHECK_CONTAINS(err.msg, says);
    sdm_tensor_free(&out);
}

/* What the loop cannot run is refused before it starts; a stop flag that
 * is set abandons the batch. */
static void test_refusals(const fixture *f)
{
    const int64_t shape[4] = { 1, 4, H, W }, two[4] = { 2, 4, H, W };
    sdm_tensor *x = NULL, *x2 = NULL, *out = NULL;
    sdm_schedule s, sa;
    sdm_batch bt = { 0 }, b;
    sdm_error err = { 0 };
    volatile sig_atomic_t stop = 1;
    double g = 7.5;

    if (schedule(f, SDM_SAMPLER_DDIM, 4, &s) || schedule(f, SDM_SAMPLER_EULER_A, 4, &sa)) {
        CHECK(0);
        return;
    }
    sdm_tensor_randn(1, shape, 4, cpu, &x);
    sdm_tensor_randn(1, two, 4, cpu, &x2);
    bt.latents = x;
    bt.cond.cond = f->cond;
    bt.cond.uncond = f->uncond;
    bt.guidance = &g;

    b = bt;
    b.cond.uncond = NULL;
    refused(f, &s, &b, "a guided batch needs the negative prompts' embeddings");
    b = bt;
    b.cond.pooled = f->cond;
    refused(f, &s, &b, "pooled embeddings and time ids for a UNet that takes none");
    b = bt;
    b.cond.time_ids = f->cond;
    refused(f, &s, &b, "pooled embeddings and time ids for a UNet that takes none");
    b = bt;
    b.first_step = 4;
    refused(f, &s, &b, "first step 4 of a 4-step schedule");
    b.first_step = -1;
    refused(f, &s, &b, "first step -1");
    b = bt;
    b.latents = x2;
    refused(f, &s, &b, "2 latents but 1 embeddings");
    b = bt;
    refused(f, &sa, &b, "sampler euler_a needs per-step noise");

    b = bt;
    b.stop = &stop;
    CHECK_INT(sdm_denoiser_run(f->d, &s, &b, &out, &err), 1);
    CHECK(out == NULL);
    CHECK_INT(err.code, 0);
    sdm_tensor_free(&x);
    sdm_tensor_free(&x2);
    sdm_schedule_free(&s);
    sdm_schedule_free(&sa);
}

/* CUDA: the loop captured at 4 frames runs a batch of 3 (the last batch of
 * a render) by filling the first rows of its buffers; those 3 frames equal
 * the same batch run step by step, guided or not, with per-step noise. */
static int unit_noise(void *user, int step, sdm_tensor **noise, sdm_error *err)
{
    const sdm_tensor *x = user;
    int64_t shape[4];

    for (int i = 0; i < 4; i++)
        shape[i] = sdm_tensor_dim(x, i);
    if (sdm_tensor_randn(1000 + (uint64_t)step, shape, 4, sdm_tensor_device(x), noise))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "noise: %s", sdm_torch_last_error());
    return 0;
}

static void padded_case(sdm_engine *e, sdm_sampler kind, int guided)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    const sdm_device dev = sdm_engine_device(e);
    const int64_t cap[4] = { 4, 4, H, W }, three[4] = { 3, 4, H, W };
    int64_t text[3] = { 4, b->token_length, b->hidden_size };
    sdm_denoiser *graphs = engine_denoiser(e), *steps = engine_denoiser(e);
    const sdm_tensor *c = NULL, *u = NULL;
    sdm_tensor *x = NULL, *cs = NULL, *us = NULL, *a = NULL, *z = NULL;
    sdm_sampler_params sp = sdm_sampler_default_params();
    sdm_schedule s;
    sdm_error err = { 0 };
    double d = INFINITY;

    sp.kind = kind;
    sp.steps = 6;
    if (!graphs || !steps || sdm_schedule_make(b, &sp, &s, &err)) {
        CHECK(0);
        goto end;
    }
    sdm_denoiser_set_graphs(graphs, 1);
    CHECK_INT(sdm_engine_embed(e, "a red fox in the snow", &c, &err), 0);
    CHECK_INT(sdm_engine_embed(e, "", &u, &err), 0);
    sdm_tensor *cc[3] = { (sdm_tensor *)c, (sdm_tensor *)c, (sdm_tensor *)c };
    sdm_tensor *uu[3] = { (sdm_tensor *)u, (sdm_tensor *)u, (sdm_tensor *)u };
    CHECK_INT(sdm_tensor_cat(cc, 3, &cs), 0);
    CHECK_INT(sdm_tensor_cat(uu, 3, &us), 0);
    CHECK_INT(sdm_tensor_randn(7, three, 4, dev, &x), 0);
    CHECK_INT(sdm_denoiser_capture(graphs, &s, cap, text, guided, &err), 0);
    CHECK(sdm_denoiser_graphs(graphs));
    CHECK_INT(denoise(graphs, &s, x, cs, us, guided ? 7.5 : 1.0, unit_noise, x, &a, &err), 0);
    CHECK_INT(denoise(steps, &s, x, cs, us, guided ? 7.5 : 1.0, unit_noise, x, &z, &err), 0);
    CHECK(a && sdm_tensor_dim(a, 0) == 3);
    d = max_diff(a, z);
    printf("padded replay (%s, %s): 3 frames through the 4-frame graph vs step by step: max |diff| %.3g\n",
           sdm_sampler_name(kind), guided ? "guided" : "unguided", d);
    CHECK(d <= 1e-5);
    sdm_schedule_free(&s);
end:
    sdm_tensor_free(&x);
    sdm_tensor_free(&cs);
    sdm_tensor_free(&us);
    sdm_tensor_free(&a);
    sdm_tensor_free(&z);
    sdm_denoiser_free(&graphs);
    sdm_denoiser_free(&steps);
}

/* CUDA, after a warm-up at 4 frames: 3 latents decode padded to the
 * warmed 4 (the last batch of a render) and come back as 3 frames equal to
 * the first 3 of the 4 decoded together. */
static void padded_decode_case(sdm_engine *e)
{
    const int64_t four[4] = { 4, 4, H, W };
    sdm_tensor *x = NULL, *x3 = NULL, *all = NULL, *three = NULL, *first = NULL;
    sdm_error err = { 0 };

    CHECK_INT(sdm_engine_warmup(e, 4, H, W, 1, sdm_engine_bundle(e)->token_length, &err), 0);
    CHECK_INT(sdm_tensor_randn(11, four, 4, sdm_engine_device(e), &x), 0);
    CHECK_INT(sdm_tensor_narrow(x, 0, 3, &x3), 0);
    CHECK_INT(sdm_engine_decode(e, x, &all, &err), 0);
    CHECK_INT(sdm_engine_decode(e, x3, &three, &err), 0);
    if (all && three) {
        CHECK_INT((int)sdm_tensor_dim(three, 0), 3);
        CHECK_INT(sdm_tensor_narrow(all, 0, 3, &first), 0);
        printf("padded decode: 3 latents padded to the warmed 4 vs the 4 decoded together: max |diff| %.3g\n",
               max_diff(three, first));
        CHECK(max_diff(three, first) == 0);
    }
    sdm_tensor_free(&x);
    sdm_tensor_free(&x3);
    sdm_tensor_free(&all);
    sdm_tensor_free(&three);
    sdm_tensor_free(&first);
}

static void test_padded_replay(const char *dir)
{
    const sdm_device cuda = { SDM_DEVICE_CUDA, 0 };
    sdm_engine *e = NULL;
    sdm_error err = { 0 };

    if (sdm_cuda_device_count() == 0 || !sdm_graphs_available()) {
        SKIP("no CUDA device or no CUDA graphs in this build: the padded replay did not run");
        return;
    }
    if (sdm_engine_open(dir, cuda, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    padded_case(e, SDM_SAMPLER_DDIM, 1);
    padded_case(e, SDM_SAMPLER_DDIM, 0);
    padded_case(e, SDM_SAMPLER_EULER_A, 1);
    padded_decode_case(e);
    sdm_engine_free(&e);
}

int main(void)
{
    char dir[512];
    struct stat st;
    fixture f;
    sdm_error err = { 0 };

    memset(&f, 0, sizeof f);
    snprintf(dir, sizeof dir, "%s/models/analytic", test_build_dir());
    if (stat(dir, &st)) {
        SKIP("no analytic bundle (run make first)");
        return test_report();
    }
    sdm_torch_set_threads(1);
    if (sdm_engine_open(dir, cpu, &f.e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return test_report();
    }
    f.d = engine_denoiser(f.e);
    f.unet = analytic_unet(f.e);
    CHECK_INT(sdm_engine_embed(f.e, "a red fox in the snow", &f.cond, &err), 0);
    CHECK_INT(sdm_engine_embed(f.e, "", &f.uncond, &err), 0);
    if (f.d && f.unet && f.cond && f.uncond) {
        f.x0c = target(f.unet, f.cond, H, W);
        f.x0u = target(f.unet, f.uncond, H, W);
    }
    CHECK(f.x0c && f.x0u);
    if (f.x0c && f.x0u) {
        test_first_step(&f);
        test_guidance_rule(&f);
        test_refusals(&f);
    }
    test_padded_replay(dir);
    sdm_tensor_free(&f.x0c);
    sdm_tensor_free(&f.x0u);
    sdm_module_free(&f.unet);
    sdm_denoiser_free(&f.d);
    sdm_engine_free(&f.e);
    return test_report();
}
