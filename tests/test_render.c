/* End to end on the analytic bundle, in process: the sampler, CFG, the
 * morph, loops and walks against answers known in closed form; frames with
 * identical inputs rendered once, with conditioning identical bit for bit. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condition.h"
#include "engine.h"
#include "probe.h"
#include "render.h"
#include "render_hooks.h"
#include "sampler.h"
#include "torch_error.h"
#include "unet_faults.h"
#include "analytic.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
static char model_dir[512];

/* ---- small host-side helpers ------------------------------------------- */

static void test_ddim_closed_form(sdm_engine *e, sdm_denoiser *d, sdm_module *unet)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    const int h = 8, w = 8, step_counts[] = { 1, 2, 10, 50 };
    const double guidances[] = { 1.0, 7.5 };
    int64_t shape[4] = { 1, b->latent_channels, h, w };
    const sdm_tensor *ec, *eu;
    sdm_tensor *xT = NULL, *x0c_t, *x0u_t;
    size_t n = (size_t)b->latent_channels * h * w;

    CHECK(sdm_engine_embed(e, "a rainy city street at night, neon", &ec, NULL) == 0);
    CHECK(sdm_engine_embed(e, "", &eu, NULL) == 0);
    CHECK(sdm_tensor_randn(1234, shape, 4, cpu, &xT) == SDM_TORCH_OK);
    x0c_t = target(unet, ec, h, w);
    x0u_t = target(unet, eu, h, w);
    float *x0c = host_f32(x0c_t), *x0u = host_f32(x0u_t), *xTh = host_f32(xT), *x0 = malloc(n * sizeof *x0);
    double *want = malloc(n * sizeof *want);

    for (size_t si = 0; si < sizeof step_counts / sizeof *step_counts; si++) {
        for (size_t gi = 0; gi < 2; gi++) {
            sdm_sampler_params sp = { SDM_SAMPLER_DDIM, step_counts[si], 0.0, 0, SDM_SPACING_DEFAULT, 0, 0 };
            sdm_schedule s;
            sdm_error err = { 0 };
            sdm_tensor *out = NULL;
            double g = guidances[gi], maxd = 0;

            CHECK(sdm_schedule_make(b, &sp, &s, &err) == 0);
            CHECK(denoise(d, &s, xT, ec, g > 1 ? eu : NULL, g, NULL, NULL, &out, &err) == 0);
            if (!out) {
                fprintf(stderr, "denoise: %s\n", err.msg);
                sdm_schedule_free(&s);
                continue;
            }
            float *got = host_f32(out);
            guided_target(x0c, x0u, g, n, x0);
            ddim_closed_form(b, step_counts[si], x0, xTh, n, want);
            for (size_t i = 0; i < n; i++)
                maxd = fmax(maxd, fabs(got[i] - want[i]));
            printf("ddim steps %d guidance %.1f: max |latent - closed form| = %.2e\n", step_counts[si], g, maxd);
            CHECK(maxd <= 1e-4);
            free(got);
            sdm_tensor_free(&out);
            sdm_schedule_free(&s);
        }
    }
    free(x0c);
    free(x0u);
    free(xTh);
    free(x0);
    free(want);
    sdm_tensor_free(&xT);
    sdm_tensor_free(&x0c_t);
    sdm_tensor_free(&x0u_t);
}

/* ---- rendering recipes in process --------------------------------------- */

static int render_opts(const char *yaml, const char *frames, const char *output, int batch, unet_faults *oom,
                       capture *c, sdm_render_stats *stats, sdm_error *err_out)
{
    sdm_error err = { 0 };
    sdm_render_params p = sdm_render_default_params();
    sdm_render_hooks hooks = { unet_faults_wrap, oom, NULL };
    int rc;

    p.frames = frames;
    p.write_outputs = output != NULL;
    p.outputs = &output;
    p.n_outputs = output ? 1 : 0;
    p.on_frame = capture_frame;
    p.user = c;
    p.batch = batch;
    rc = render_text(yaml, model_dir, &p, oom ? &hooks : NULL, stats, &err);
    if (err_out)
        *err_out = err;
    return rc;
}

static int render_string(const char *yaml, const char *frames, const char *output, capture *c, sdm_render_stats *stats)
{
    return render_opts(yaml, frames, output, 0, NULL, c, stats, NULL);
}

static const char *morph_yaml =
    "width: 64\nheight: 64\nsteps: 10\nguidance: 7.5\nseed: 7\nframes: 4\n"
    "keyframes:\n  - a rainy city street at night, neon\n  - a dense forest in the rain\n";

/* Frame k of a morph is decode(final latent of x0* for lerp(e_a, e_b, t_k)). */
static void test_morph_frames(sdm_engine *e, sdm_module *unet)
{
    capture c = { 0 };
    sdm_render_stats st;
    const sdm_bundle *b = sdm_engine_bundle(e);
    const sdm_tensor *ea, *eb, *eu;
    const int h = 8, w = 8;
    size_t n = (size_t)b->latent_channels * h * w, bytes = 64 * 64 * 3;
    int64_t shape[4] = { 1, b->latent_channels, h, w };
    sdm_tensor *xT = NULL;

    CHECK(render_string(morph_yaml, NULL, NULL, &c, &st) == 0);
    CHECK_INT(c.n, 5); /* 4 transition frames + the last keyframe */
    CHECK_INT(st.frames_rendered, 5);
    sdm_engine_embed(e, "a rainy city street at night, neon", &ea, NULL);
    sdm_engine_embed(e, "a dense forest in the rain", &eb, NULL);
    sdm_engine_embed(e, "", &eu, NULL);
    sdm_tensor_randn(7, shape, 4, cpu, &xT);
    float *xTh = host_f32(xT), *x0 = malloc(n * sizeof *x0), *lat = malloc(n * sizeof *lat);
    double *want = malloc(n * sizeof *want);
    float *x0u;
    sdm_tensor *x0u_t = target(unet, eu, h, w);
    x0u = host_f32(x0u_t);

    for (int k = 0; k < c.n && k < 5; k++) {
        double t = k / 4.0, maxd, mean;
        sdm_tensor *mix = NULL, *x0c_t, *lat_t = NULL, *rgb = NULL, *g_t = NULL, *grgb = NULL;
        uint8_t *img = malloc(bytes), *gimg = malloc(bytes);
        sdm_error err = { 0 };

        if (k == 0)
            sdm_tensor_clone(ea, &mix);
        else if (k == 4)
            sdm_tensor_clone(eb, &mix);
        else
            sdm_tensor_axpby(1.0 - t, ea, t, eb, &mix);
        x0c_t = target(unet, mix, h, w);
        float *x0c = host_f32(x0c_t);
        guided_target(x0c, x0u, 7.5, n, x0);
        ddim_closed_form(b, 10, x0, xTh, n, want);
        for (size_t i = 0; i < n; i++)
            lat[i] = (float)want[i];
        sdm_tensor_from_host(lat, SDM_F32, shape, 4, cpu, &lat_t);
        CHECK(sdm_engine_decode(e, lat_t, &rgb, &err) == 0);
        sdm_tensor_to_host(rgb, SDM_U8, img, bytes);
        maxd = max_abs_u8(img, c.frames[k], bytes, &mean);
        printf("morph frame %d (t=%.2f): max |frame - decode(closed form)| = %.0f/255\n", k, t, maxd);
        CHECK(maxd <= 1);
        /* and close to the clean target decode(G(mix)) itself: only the
         * schedule's last sqrt(1 − alphas_cumprod[0]) of noise remains */
        for (size_t i = 0; i < n; i++)
            lat[i] = x0[i];
        sdm_tensor_from_host(lat, SDM_F32, shape, 4, cpu, &g_t);
        CHECK(sdm_engine_decode(e, g_t, &grgb, &err) == 0);
        sdm_tensor_to_host(grgb, SDM_U8, gimg, bytes);
        maxd = max_abs_u8(gimg, c.frames[k], bytes, &mean);
        printf("morph frame %d: mean |frame - decode(G(mix))| = %.2f/255 (max %.0f)\n", k, mean, maxd);
        CHECK(mean <= 3.0);
        free(x0c);
        free(img);
        free(gimg);
        sdm_tensor_free(&mix);
        sdm_tensor_free(&x0c_t);
        sdm_tensor_free(&lat_t);
        sdm_tensor_free(&rgb);
        sdm_tensor_free(&g_t);
        sdm_tensor_free(&grgb);
    }
    /* a morph moves: the ends differ clearly */
    if (c.n == 5) {
        double mean;
        max_abs_u8(c.frames[0], c.frames[4], bytes, &mean);
        printf("morph: mean |frame 0 - frame 4| = %.1f/255\n", mean);
        CHECK(mean > 10);
    }
    free(xTh);
    free(x0);
    free(lat);
    free(want);
    free(x0u);
    sdm_tensor_free(&x0u_t);
    sdm_tensor_free(&xT);
    capture_free(&c);
}

/* The MP4 decoded back: frame count, rate, pixel format, PSNR ≥ 35 dB. */
typedef struct {
    capture *ref;
    double min_psnr;
} psnr_check;

static int psnr_frame(void *user, int index, const uint8_t *rgb, int width, int height)
{
    psnr_check *pc = user;
    if (index < pc->ref->n) {
        double p = sdm_probe_psnr(rgb, pc->ref->frames[index], (size_t)width * height * 3);
        if (p < pc->min_psnr)
            pc->min_psnr = p;
    }
    return 0;
}

static void test_mp4_roundtrip(void)
{
    const char *yaml =
        "width: 128\nheight: 96\nsteps: 8\nguidance: 5\nseed: 3\nframes: 6\nfps: 12\nloop: pingpong\n"
        "keyframes:\n  - a rainy city street at night, neon\n  - a dense forest in the rain\n"
        "  - an oil painting of a lighthouse\n";
    char dir[] = "/tmp/sdm-test-XXXXXX", path[128];
    capture c = { 0 };
    sdm_render_stats st;
    sdm_probe_info info;
    sdm_error err = { 0 };
    psnr_check pc = { &c, 99 };

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/morph.mp4", dir);
    CHECK(render_string(yaml, NULL, path, &c, &st) == 0);
    /* pingpong over 3 keyframes, 6 frames a transition: 13 there, 11 back */
    CHECK_INT(c.n, 24);
    CHECK_INT(st.frames_rendered, 13);
    for (int i = 1; i < c.n; i++) /* the way back reuses the way there */
        CHECK(memcmp(c.frames[i], c.frames[c.n - i], (size_t)128 * 96 * 3) == 0);
    CHECK(sdm_probe_file(path, psnr_frame, &pc, 0, &info, &err) == 0);
    CHECK_STR(info.codec, "h264");
    CHECK_STR(info.pix_fmt, "yuv420p");
    CHECK_INT(info.frames, 24);
    CHECK_INT(info.width, 128);
    CHECK_INT(info.height, 96);
    CHECK_NEAR(info.duration, 2.0, 1e-6);
    CHECK_NEAR(info.fps, 12.0, 1e-6);
    printf("mp4: %d frames, min PSNR %.1f dB\n", info.frames, pc.min_psnr);
    CHECK(pc.min_psnr >= 35);
    snprintf(path, sizeof path, "%s/morph.json", dir);
    CHECK(access(path, R_OK) == 0); /* the sidecar */
    capture_free(&c);
}

/* A walk's frame k rendered alone equals frame k of the whole walk. */
static void test_walk_frame_alone(void)
{
    const char *yaml =
        "width: 64\nheight: 64\nsteps: 6\nguidance: 6\n"
        "walk:\n  prompt: a technopriest in a red robe, portrait\n  seed: 11\n  frames: 8\n"
        "  sigma: 0.5\n  noise_seed: 5\n  closed: true\n";
    capture all = { 0 }, one = { 0 };
    sdm_render_stats st;
    size_t bytes = 64 * 64 * 3;
    double mean;

    CHECK(render_string(yaml, NULL, NULL, &all, &st) == 0);
    CHECK_INT(all.n, 8);
    CHECK(render_string(yaml, "5", NULL, &one, &st) == 0);
    CHECK_INT(one.n, 1);
    CHECK_INT(st.frames_rendered, 1);
    if (all.n == 8 && one.n == 1)
        CHECK(memcmp(all.frames[5], one.frames[0], bytes) == 0);
    if (all.n == 8) {
        max_abs_u8(all.frames[0], all.frames[1], bytes, &mean);
        printf("walk: mean |frame 0 - frame 1| = %.2f/255\n", mean);
        CHECK(mean > 0.05); /* the walk moves */
    }
    capture_free(&all);
    capture_free(&one);
}

/* Largest mean |frame k+1 − frame k| along a render. */
static double largest_jump(const capture *c)
{
    double worst = 0, mean;
    for (int k = 0; k + 1 < c->n; k++) {
        max_abs_u8(c->frames[k], c->frames[k + 1], (size_t)c->width * c->height * 3, &mean);
        worst = fmax(worst, mean);
    }
    return worst;
}

/* Ancestral sampling draws fresh noise every step, keyed by (seed, step):
 * the same seed gives the same frame, another seed another, and a seed
 * morph slerps the per-step noise too, so it moves as smoothly as plain
 * DDIM. On the analytic model Euler ancestral's last step lands exactly on
 * x0* whatever the noise, so its noise shows through DDIM with eta 1 (the
 * same per-step noise path), while euler_a must give x0*: seed-independent. */
static void test_ancestral_seed_morph(void)
{
    const char *const fmt =
        "width: 64\nheight: 64\nsteps: 12\nguidance: 4\nsampler: %s\neta: %g\nframes: 8\n"
        "keyframes:\n  - {prompt: a lighthouse in a storm, seed: %d}\n  - {prompt: a lighthouse in a storm, seed: "
        "%d}\n";
    char yaml[512];
    capture a = { 0 }, b = { 0 }, c = { 0 }, ddim = { 0 };
    sdm_render_stats st;
    size_t bytes = 64 * 64 * 3;
    double mean;

    snprintf(yaml, sizeof yaml, fmt, "ddim", 1.0, 1, 1);
    CHECK(render_string(yaml, "0", NULL, &a, &st) == 0);
    CHECK(render_string(yaml, "0", NULL, &b, &st) == 0);
    snprintf(yaml, sizeof yaml, fmt, "ddim", 1.0, 2, 2);
    CHECK(render_string(yaml, "0", NULL, &c, &st) == 0);
    if (a.n == 1 && b.n == 1 && c.n == 1) {
        CHECK(memcmp(a.frames[0], b.frames[0], bytes) == 0);
        max_abs_u8(a.frames[0], c.frames[0], bytes, &mean);
        printf("ddim eta 1: seed 1 vs seed 2: mean |diff| %.2f/255\n", mean);
        CHECK(mean > 0.5);
    }
    capture_free(&a);
    capture_free(&b);
    capture_free(&c);
    snprintf(yaml, sizeof yaml, fmt, "euler_a", 0.0, 1, 1);
    CHECK(render_string(yaml, "0", NULL, &a, &st) == 0);
    snprintf(yaml, sizeof yaml, fmt, "euler_a", 0.0, 2, 2);
    CHECK(render_string(yaml, "0", NULL, &c, &st) == 0);
    if (a.n == 1 && c.n == 1) {
        max_abs_u8(a.frames[0], c.frames[0], bytes, &mean);
        CHECK(mean < 0.01);
    }
    capture_free(&a);
    capture_free(&c);

    snprintf(yaml, sizeof yaml, fmt, "ddim", 1.0, 1, 2);
    CHECK(render_string(yaml, NULL, NULL, &a, &st) == 0);
    snprintf(yaml, sizeof yaml, fmt, "ddim", 0.0, 1, 2);
    CHECK(render_string(yaml, NULL, NULL, &ddim, &st) == 0);
    double ja = largest_jump(&a), jd = largest_jump(&ddim);
    printf(
        "seed morph, largest jump between adjacent frames: ancestral (ddim eta 1) %.2f/255, ddim %.2f/255 "
        "(ratio %.2f)\n",
        ja, jd, jd > 0 ? ja / jd : 0.0);
    CHECK_INT(a.n, 9);
    CHECK(jd > 0);
    CHECK(ja <= 2 * jd);
    capture_free(&a);
    capture_free(&ddim);
}

/* Bit for bit, same element type and count. */
static int same_tensor(const sdm_tensor *a, const sdm_tensor *b)
{
    float *x, *y;
    int same;

    if (!a || !b || sdm_tensor_numel(a) != sdm_tensor_numel(b) || sdm_tensor_dtype(a) != sdm_tensor_dtype(b))
        return 0;
    x = host_f32(a);
    y = host_f32(b);
    same = x && y && !memcmp(x, y, (size_t)sdm_tensor_numel(a) * sizeof *x);
    free(x);
    free(y);
    return same;
}

/* The planner's merges hold against the real conditioner: an output frame
 * at its own place in the recipe gets bit-identical embeddings, negative
 * embeddings, initial noise, per-step noise and guidance to the render it
 * is shown as. */
static void test_reuse_conditioning(sdm_engine *e)
{
    static const struct {
        const char *text;
        int shown, rendered;
    } recipes[] = {
        /* a keyframe repeated (its negative given explicitly, equal to the
         * recipe's), then transitions between keyframes alike */
        { "negative: blurry\nframes: 3\nloop: cycle\ninterp: slerp\nkeyframes:\n"
          "  - {prompt: a lighthouse in a storm, seed: 1}\n"
          "  - {prompt: a dense forest, seed: 2, negative: dark, guidance: 9}\n"
          "  - {prompt: a lighthouse in a storm, seed: 1, negative: blurry}\n"
          "  - {prompt: a lighthouse in a storm, seed: 1, ease: cosine, interp: lerp}\n",
          12, 6 },
        /* a transition given twice */
        { "frames: 4\nease: smoothstep\nkeyframes:\n  - {prompt: a castle, seed: 5}\n  - {prompt: a cave, seed: 6}\n"
          "  - {prompt: a castle, seed: 5}\n  - {prompt: a cave, seed: 6}\n",
          13, 8 },
        /* near misses, none merged: another seed, guidance, negative */
        { "frames: 2\nkeyframes:\n  - {prompt: a castle, seed: 1}\n  - {prompt: a castle, seed: 2}\n"
          "  - {prompt: a castle, seed: 1, guidance: 9}\n  - {prompt: a castle, seed: 1, negative: fog}\n",
          7, 7 },
    };
    int pairs = 0, wrong = 0;

    for (size_t c = 0; c < sizeof recipes / sizeof recipes[0]; c++) {
        sdm_recipe *r = NULL;
        sdm_plan p;
        sdm_conditioner *cond = NULL;
        sdm_error err = { 0 };

        memset(&p, 0, sizeof p);
        if (sdm_recipe_load_string("reuse.yaml", recipes[c].text, strlen(recipes[c].text), &r, &err) ||
            sdm_plan_make(r, &p, &err) || sdm_conditioner_new(e, r, 8, 8, &cond, &err)) {
            fprintf(stderr, "reuse: %s\n", err.msg);
            CHECK(!"recipe, plan and conditioner");
            goto next;
        }
        CHECK_INT(p.n_sequence, recipes[c].shown);
        CHECK_INT(p.n_renders, recipes[c].rendered);
        for (int i = 0; i < p.n_sequence; i++) {
            const sdm_plan_frame *own = &p.shown[i], *ren = &p.renders[p.sequence[i]];
            sdm_frame_cond a = { 0 }, b = { 0 };
            int same;

            if (own->key_a == ren->key_a && own->key_b == ren->key_b && own->t == ren->t)
                continue; /* the render itself (or a hold of it) */
            pairs++;
            if (sdm_conditioner_frame(cond, own, &a, &err) || sdm_conditioner_frame(cond, ren, &b, &err)) {
                fprintf(stderr, "reuse: %s\n", err.msg);
                wrong++;
                sdm_frame_cond_clear(&a);
                sdm_frame_cond_clear(&b);
                continue;
            }
            same = same_tensor(a.cond, b.cond) && same_tensor(a.uncond, b.uncond) && same_tensor(a.noise, b.noise) &&
                   a.guidance == b.guidance;
            for (int step = 0; step < 3 && same; step++) {
                sdm_tensor *na = NULL, *nb = NULL;
                same = !sdm_conditioner_step_noise(cond, &a, step, &na, &err) &&
                       !sdm_conditioner_step_noise(cond, &b, step, &nb, &err) && same_tensor(na, nb);
                sdm_tensor_free(&na);
                sdm_tensor_free(&nb);
            }
            if (!same && wrong < 3)
                fprintf(stderr, "reuse: output frame %d differs from render %d in recipe %zu\n", i, p.sequence[i], c);
            wrong += !same;
            sdm_frame_cond_clear(&a);
            sdm_frame_cond_clear(&b);
        }
    next:
        sdm_conditioner_free(&cond);
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
    printf("reuse: %d merged frames, conditioning identical to their render's in %d\n", pairs, pairs - wrong);
    CHECK_INT(pairs, 6 + 5); /* 6-11 of the cycle; 8-12 of the repeated transition */
    CHECK_INT(wrong, 0);
}

/* Per-step noise is diffusers' stream: one CPU generator per seed, the
 * initial latent its first draw, step noise the draws after it (values from
 * torch.Generator().manual_seed(5) and torch.randn([1,4,8,8]) three times),
 * the same asked in any order; a seed morph's step noise is a slerp. */
static void test_noise_stream(sdm_engine *e)
{
    const char *text = "seed: 5\nframes: 3\ninterp: slerp\nkeyframes:\n  - a\n  - {prompt: a, seed: 6}\n";
    sdm_recipe *r = NULL;
    sdm_plan p;
    sdm_conditioner *cond = NULL;
    sdm_frame_cond a = { 0 }, mid = { 0 };
    sdm_tensor *n0 = NULL, *n1 = NULL, *again = NULL, *m1 = NULL;
    sdm_error err = { 0 };
    float *v0 = NULL, *v1 = NULL, *init = NULL;

    memset(&p, 0, sizeof p);
    if (sdm_recipe_load_string("noise.yaml", text, strlen(text), &r, &err) || sdm_plan_make(r, &p, &err) ||
        sdm_conditioner_new(e, r, 8, 8, &cond, &err) || sdm_conditioner_frame(cond, &p.renders[0], &a, &err) ||
        sdm_conditioner_frame(cond, &p.renders[1], &mid, &err)) {
        fprintf(stderr, "noise stream: %s\n", err.msg);
        CHECK(!"recipe, plan and conditioner");
        goto end;
    }
    CHECK_INT(sdm_conditioner_step_noise(cond, &a, 0, &n0, &err), 0);
    CHECK_INT(sdm_conditioner_step_noise(cond, &a, 1, &n1, &err), 0);
    CHECK_INT(sdm_conditioner_step_noise(cond, &a, 0, &again, &err), 0); /* restarts the stream */
    CHECK_INT(sdm_conditioner_step_noise(cond, &mid, 1, &m1, &err), 0);
    init = host_f32(a.noise);
    v0 = n0 ? host_f32(n0) : NULL;
    v1 = n1 ? host_f32(n1) : NULL;
    CHECK(init && v0 && v1);
    if (init && v0 && v1) {
        CHECK_NEAR(init[0], 1.84233, 1e-5);
        CHECK_NEAR(init[2], -1.711921, 1e-5);
        CHECK_NEAR(v0[0], 0.1949381, 1e-6);
        CHECK_NEAR(v0[1], 1.540764, 1e-6);
        CHECK_NEAR(v1[254], -0.5283732, 1e-6);
        CHECK_NEAR(v1[255], -1.149235, 1e-6);
    }
    CHECK(again && n0 && same_tensor(again, n0));
    CHECK(m1 && n1 && !same_tensor(m1, n1)); /* between seeds 5 and 6 */
end:
    free(init);
    free(v0);
    free(v1);
    sdm_tensor_free(&n0);
    sdm_tensor_free(&n1);
    sdm_tensor_free(&again);
    sdm_tensor_free(&m1);
    sdm_frame_cond_clear(&a);
    sdm_frame_cond_clear(&mid);
    sdm_conditioner_free(&cond);
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

/* A, B, A cycling: the second A and the A -> A transition back to the start
 * are the first frame again, rendered once. Another seed or guidance on the
 * second A is another picture, rendered. */
static void test_reuse_render(void)
{
    const char *const fmt =
        "width: 64\nheight: 64\nsteps: 6\nguidance: 5\nseed: 3\nsampler: ddim\neta: 1\nframes: 3\nloop: cycle\n"
        "keyframes:\n  - a lighthouse in a storm\n  - a dense forest in the rain\n"
        "  - {prompt: a lighthouse in a storm%s}\n";
    static const char *const changes[] = { "", ", seed: 8", ", guidance: 9" };
    size_t bytes = 64 * 64 * 3;
    capture ref = { 0 };

    for (int v = 0; v < 3; v++) {
        char yaml[512];
        capture c = { 0 }, one = { 0 };
        sdm_render_stats st;
        double mean = 0;

        snprintf(yaml, sizeof yaml, fmt, changes[v]);
        CHECK(render_string(yaml, NULL, NULL, &c, &st) == 0);
        CHECK_INT(c.n, 9);
        CHECK_INT(st.frames_shown, 9);
        if (c.n != 9) {
            capture_free(&c);
            continue;
        }
        if (v == 0) {
            /* 0 A, 1-2 A->B, 3 B, 4-5 B->A, 6 A again, 7-8 A->A: six renders */
            CHECK_INT(st.frames_rendered, 6);
            for (int k = 6; k < 9; k++)
                CHECK(memcmp(c.frames[k], c.frames[0], bytes) == 0);
            max_abs_u8(c.frames[0], c.frames[3], bytes, &mean);
            CHECK(mean > 10); /* A and B differ: the check above means something */
            max_abs_u8(c.frames[0], c.frames[5], bytes, &mean);
            CHECK(mean > 0.5);
            printf("reuse: A, B, A cycle: %d frames shown, %d rendered\n", st.frames_shown, st.frames_rendered);
            /* frame 6 alone: one render, the same picture */
            CHECK(render_string(yaml, "6", NULL, &one, &st) == 0);
            CHECK_INT(st.frames_rendered, 1);
            CHECK(one.n == 1 && memcmp(one.frames[0], c.frames[0], bytes) == 0);
            capture_free(&one);
            ref = c;
            continue;
        }
        CHECK_INT(st.frames_rendered, 9);
        if (ref.n == 9) {
            /* frames 0-3 do not involve the changed keyframe; 4-5 lead to it */
            for (int k = 0; k < 4; k++)
                CHECK(memcmp(c.frames[k], ref.frames[k], bytes) == 0);
        }
        max_abs_u8(c.frames[6], c.frames[0], bytes, &mean);
        printf("reuse: second A with%s: mean |frame 6 - frame 0| = %.2f/255\n", changes[v], mean);
        CHECK(mean > 0.5);
        capture_free(&c);
    }
    capture_free(&ref);
}

/* Same recipe, same model, same device: the same bits, a seed morph and a
 * walk included; and the file says what made it. */
static void test_determinism(void)
{
    const char *morph =
        "width: 64\nheight: 64\nsteps: 8\nguidance: 5\nframes: 5\nsampler: euler_a\nloop: pingpong\n"
        "keyframes:\n  - {prompt: a castle on a hill, seed: 3}\n  - {prompt: a castle under the sea, seed: 4}\n";
    const char *walk =
        "width: 64\nheight: 64\nsteps: 8\nguidance: 5\n"
        "walk: {prompt: a technopriest, seed: 9, frames: 6, sigma: 0.3, noise_seed: 2, closed: true}\n";
    const char *recipes[2] = { morph, walk };
    size_t bytes = 64 * 64 * 3;

    for (int i = 0; i < 2; i++) {
        capture a = { 0 }, b = { 0 };
        sdm_render_stats st;
        int same = 1;
        CHECK(render_string(recipes[i], NULL, NULL, &a, &st) == 0);
        CHECK(render_string(recipes[i], NULL, NULL, &b, &st) == 0);
        CHECK(a.n > 0 && a.n == b.n);
        for (int k = 0; k < a.n && k < b.n; k++)
            same &= memcmp(a.frames[k], b.frames[k], bytes) == 0;
        printf("determinism, %s: %d frames, bit-identical: %s\n", i ? "walk" : "seed morph", a.n, same ? "yes" : "no");
        CHECK(same);
        capture_free(&a);
        capture_free(&b);
    }
}

/* Out of memory mid-render (a real out-of-memory status from the UNet
 * call): the batch halves (said once) and the render goes on, with the
 * frames it would have made anyway. */
static void test_oom_fallback(void)
{
    capture big = { 0 }, one = { 0 };
    sdm_render_stats st;
    unet_faults oom = { .max_inputs = 4 }; /* two guided frames fit */
    size_t bytes = 64 * 64 * 3;
    double worst = 0;

    CHECK(render_opts(morph_yaml, NULL, NULL, 8, &oom, &big, &st, NULL) == 0);
    CHECK_INT(st.batch, 2);
    CHECK_INT(st.batch_halved, 1); /* 8 is cut to the 5 frames there are, then 5 → 2 */
    CHECK_INT(oom.failed, 1);
    CHECK(render_opts(morph_yaml, NULL, NULL, 1, NULL, &one, &st, NULL) == 0);
    CHECK_INT(big.n, 5);
    CHECK_INT(one.n, 5);
    for (int k = 0; k < big.n && k < one.n; k++)
        worst = fmax(worst, max_abs_u8(big.frames[k], one.frames[k], bytes, NULL));
    printf("oom fallback: batch 8 -> 2, max |frame - batch-1 frame| = %.0f/255\n", worst);
    CHECK(worst <= 1);
    capture_free(&big);
    capture_free(&one);
}

/* Out of memory even at one frame per call: the render fails with what
 * happened and the advice, said once (torch_api and the pipeline both
 * gave it once, so it was read twice). */
static void test_oom_at_one_frame(void)
{
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err = { 0 };
    unet_faults oom = { .max_inputs = 0 };
    const char *lower;
    int n_lower = 0;

    CHECK_INT(render_opts(morph_yaml, NULL, NULL, 4, &oom, &c, &st, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_RUNTIME);
    CHECK_INT(err.out_of_memory, 1);
    CHECK_INT(st.batch_halved, 2); /* 4 → 2 → 1, which fails too */
    CHECK_INT(oom.failed, 3);
    CHECK_INT(c.n, 0);
    CHECK_CONTAINS(err.msg, "out of device memory during UNet");
    CHECK_CONTAINS(err.msg, "out of memory ("); /* torch_api's facts */
    for (lower = strstr(err.msg, "lower"); lower; lower = strstr(lower + 1, "lower"))
        n_lower++;
    CHECK_INT(n_lower, 1);
    CHECK_CONTAINS(err.msg,
                   "out of device memory during UNet; even 1 frame per call does not fit: lower "
                   "width/height and try again (");
    CHECK(!strstr(err.msg, "--batch")); /* at one frame, a smaller batch cannot help */
    CHECK(!strstr(err.msg, "fp16-fixed VAE")); /* a float32 model: its VAE decodes as its weights */
    printf("oom at one frame: %s\n", err.msg);
    capture_free(&c);
}

/* The output records the sdmorph version, the recipe and the bundle. */
static void test_metadata(void)
{
    char dir[] = "/tmp/sdm-meta-XXXXXX", path[128];
    capture c = { 0 };
    sdm_render_stats st;
    sdm_probe_info info;
    sdm_error err = { 0 };

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/m.mp4", dir);
    CHECK(render_string(morph_yaml, NULL, path, &c, &st) == 0);
    CHECK(sdm_probe_file(path, NULL, NULL, 0, &info, &err) == 0);
    printf("mp4 comment: %s\n", info.comment);
    CHECK_CONTAINS(info.comment, "sdmorph 0.");
    CHECK_CONTAINS(info.comment, "recipe test.yaml");
    CHECK_CONTAINS(info.comment, "fingerprint ");
    capture_free(&c);
}

/* Stops the render once `after` frames have been shown. */
typedef struct {
    capture c;
    int after;
    volatile sig_atomic_t stop;
} stopper;

static int capture_then_stop(void *user, int index, const uint8_t *rgb, int width, int height)
{
    stopper *s = user;
    if (capture_frame(&s->c, index, rgb, width, height))
        return -1;
    if (s->c.n >= s->after)
        s->stop = 1;
    return 0;
}

/* Batches are pipelined: batch i+1 is queued before batch i's frames are
 * shown. Stopped while batch i is shown, the render still shows batch i+1
 * (its work is done or under way) and nothing after it, in order. */
static void test_interrupt_pipelined(void)
{
    const char *yaml =
        "width: 64\nheight: 64\nsteps: 4\nseed: 3\nframes: 9\n"
        "keyframes:\n  - a rainy city street at night, neon\n  - a dense forest in the rain\n";
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    sdm_render_params p = sdm_render_default_params();
    sdm_render_stats st;
    capture full = { 0 };
    stopper s = { { 0 }, 1, 0 };
    int rc;

    CHECK(render_opts(yaml, NULL, NULL, 2, NULL, &full, &st, NULL) == 0);
    CHECK_INT(full.n, 10);
    if (sdm_recipe_load_string("test.yaml", yaml, strlen(yaml), &r, &err))
        goto end;
    p.model_dir = model_dir;
    p.device = cpu;
    p.write_outputs = 0;
    p.on_frame = capture_then_stop;
    p.user = &s;
    p.batch = 2;
    p.stop = &s.stop;
    rc = sdm_render(r, &p, &st, &err);
    CHECK_INT(rc, 1);
    CHECK_INT(st.interrupted, 1);
    CHECK_INT(st.frames_rendered, 4); /* batch 0, and batch 1 already queued */
    CHECK_INT(s.c.n, 4);
    for (int i = 0; i < s.c.n && i < full.n; i++)
        CHECK(memcmp(s.c.frames[i], full.frames[i], 64 * 64 * 3) == 0);
end:
    sdm_recipe_free(&r);
    capture_free(&full);
    capture_free(&s.c);
}

/* Frames shown again later, kept as images or (past the memory budget)
 * as latents decoded again: the same pictures either way. */
static void test_keep_as_latents(void)
{
    const char *yaml =
        "width: 64\nheight: 64\nsteps: 4\nseed: 5\nframes: 7\nloop: pingpong\n"
        "keyframes:\n  - a rainy city street at night, neon\n  - {prompt: a dense forest, hold: 2}\n"
        "  - a lighthouse on a cliff\n";
    capture c[2] = { { 0 }, { 0 } };
    sdm_render_stats st[2];
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };

    if (sdm_recipe_load_string("test.yaml", yaml, strlen(yaml), &r, &err)) {
        CHECK(0);
        return;
    }
    for (int i = 0; i < 2; i++) {
        sdm_render_params p = sdm_render_default_params();
        p.model_dir = model_dir;
        p.device = cpu;
        p.write_outputs = 0;
        p.on_frame = capture_frame;
        p.user = &c[i];
        p.batch = 3;
        p.keep_rgb_mb = i == 0 ? SDM_KEEP_RGB_MB : 0;
        CHECK_INT(sdm_render(r, &p, &st[i], &err), 0);
    }
    /* 15 renders there; shown there and back (not the last twice, not the
     * first again at the end) with the hold on both ways: 32 */
    CHECK_INT(st[0].frames_rendered, 15);
    CHECK_INT(st[1].frames_rendered, 15);
    CHECK_INT(c[0].n, 32);
    CHECK_INT(c[1].n, c[0].n);
    for (int i = 0; i < c[0].n && i < c[1].n; i++)
        CHECK(memcmp(c[0].frames[i], c[1].frames[i], 64 * 64 * 3) == 0);
    /* the way back is the way there: frame 31 is frame 1 again, 24 is 7 */
    if (c[1].n == 32) {
        CHECK(memcmp(c[1].frames[31], c[1].frames[1], 64 * 64 * 3) == 0);
        CHECK(memcmp(c[1].frames[24], c[1].frames[7], 64 * 64 * 3) == 0);
        CHECK(memcmp(c[1].frames[31], c[1].frames[2], 64 * 64 * 3) != 0);
    }
    sdm_recipe_free(&r);
    capture_free(&c[0]);
    capture_free(&c[1]);
}

int main(void)
{
    sdm_engine *e = analytic_engine(model_dir, sizeof model_dir);
    sdm_denoiser *d = NULL;
    sdm_module *unet = NULL;

    if (!e)
        return test_report();
    d = engine_denoiser(e);
    unet = analytic_unet(e);
    CHECK(d && unet);
    if (d && unet) {
        test_ddim_closed_form(e, d, unet);
        test_morph_frames(e, unet);
    }
    test_mp4_roundtrip();
    test_walk_frame_alone();
    test_ancestral_seed_morph();
    test_reuse_conditioning(e);
    test_noise_stream(e);
    test_reuse_render();
    test_determinism();
    test_oom_fallback();
    test_oom_at_one_frame();
    test_interrupt_pipelined();
    test_keep_as_latents();
    test_metadata();
    sdm_module_free(&unet);
    sdm_denoiser_free(&d);
    sdm_engine_free(&e);
    return test_report();
}
