/* SDXL's conditioning on the analytic SDXL-shaped bundle (analytic.py
 * --xl), in process: both text encoders and the pooled embedding against
 * the modules' own answers from ids, and a morph and a walk rendered end to
 * end against closed forms. Frame k is decode(DDIM's final latent toward
 * x0* = u + g·(c − u)), c = target_xl(embedding, pooled, time ids) of the
 * frame's mix or walk step, u the same for the zeros an empty negative
 * prompt is; the time ids come from the recipe's size keys. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "condition.h"
#include "devices.h"
#include "engine.h"
#include "png.h"
#include "preflight.h"
#include "join.h"
#include "render.h"
#include "safetensors.h"
#include "sampler.h"
#include "analytic.h"
#include "cli_run.h"
#include "test.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
static char xl_dir[512];

/* ---- helpers ------------------------------------------------------------- */

static sdm_recipe *recipe_of(const char *yaml)
{
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };

    if (sdm_recipe_load_string("xl.yaml", yaml, strlen(yaml), &r, &err))
        fprintf(stderr, "recipe: %s\n", err.msg);
    return r;
}

/* Renders a recipe in process on `engine`, or where NULL on model `dir`
 * opened for it, its frames into c. */
static int render_xl_on(sdm_engine *engine, sdm_device dev, const char *dir, const char *yaml, int batch, capture *c)
{
    sdm_recipe *r = recipe_of(yaml);
    sdm_render_params p = sdm_render_default_params();
    sdm_error err = { 0 };
    int rc = -1;

    if (!r)
        return -1;
    p.model_dir = dir;
    p.engine = engine;
    p.device = dev;
    p.write_outputs = 0; /* frames only: the recipe's default out/xl.mp4 may be the user's */
    p.on_frame = capture_frame;
    p.user = c;
    p.batch = batch;
    rc = sdm_render(r, &p, NULL, &err);
    if (rc)
        fprintf(stderr, "render: %s\n", err.msg);
    sdm_recipe_free(&r);
    return rc;
}

static int render_xl(const char *dir, const char *yaml, int batch, capture *c)
{
    return render_xl_on(NULL, cpu, dir, yaml, batch, c);
}

/* target_xl of the analytic UNet on [1,..] tensors, h×w latents. */
static sdm_tensor *target_xl(sdm_module *unet, const sdm_tensor *emb, const sdm_tensor *pooled, const sdm_tensor *tids,
                             int h, int w)
{
    sdm_arg a[5] = { sdm_arg_tensor(emb), sdm_arg_tensor(pooled), sdm_arg_tensor(tids), sdm_arg_int(h),
                     sdm_arg_int(w) };
    sdm_tensor *x0 = NULL;

    if (sdm_module_call_args(unet, "target_xl", a, 5, &x0))
        fprintf(stderr, "target_xl: %s\n", sdm_torch_last_error());
    return x0;
}

static sdm_tensor *time_ids_of(const float v[6])
{
    int64_t shape[2] = { 1, 6 };
    sdm_tensor *t = NULL;

    sdm_tensor_from_host(v, SDM_F32, shape, 2, cpu, &t);
    return t;
}

/* The frame a guided DDIM render of `steps` steps from seed's noise gives
 * for conditional (emb, pooled), negative zeros and time ids: decoded, as
 * bytes [8h·8w·3] (h, w latent cells). */
static uint8_t *closed_form_frame(sdm_engine *e, sdm_module *unet, const sdm_tensor *emb, const sdm_tensor *pooled,
                                  const sdm_tensor *tids, double g, int steps, uint64_t seed, int h, int w)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    int64_t shape[4] = { 1, b->latent_channels, h, w };
    size_t n = (size_t)b->latent_channels * h * w, bytes = (size_t)h * w * 64 * 3;
    sdm_tensor *xT = NULL, *ze = NULL, *zp = NULL, *x0c = NULL, *x0u = NULL, *lat = NULL, *rgb = NULL;
    float *x0 = malloc(n * sizeof *x0), *latf = malloc(n * sizeof *latf), *c = NULL, *u = NULL, *xTh = NULL;
    double *want = malloc(n * sizeof *want);
    uint8_t *img = malloc(bytes);
    sdm_error err = { 0 };

    sdm_tensor_randn(seed, shape, 4, cpu, &xT);
    sdm_tensor_axpby(0, emb, 0, NULL, &ze);
    sdm_tensor_axpby(0, pooled, 0, NULL, &zp);
    x0c = target_xl(unet, emb, pooled, tids, h, w);
    x0u = target_xl(unet, ze, zp, tids, h, w);
    c = host_f32(x0c);
    u = host_f32(x0u);
    xTh = host_f32(xT);
    if (c && u && xTh && x0 && latf && want && img) {
        guided_target(c, u, g, n, x0);
        ddim_closed_form(b, steps, x0, xTh, n, want);
        for (size_t i = 0; i < n; i++)
            latf[i] = (float)want[i];
        sdm_tensor_from_host(latf, SDM_F32, shape, 4, cpu, &lat);
        if (sdm_engine_decode(e, lat, &rgb, &err) || sdm_tensor_to_host(rgb, SDM_U8, img, bytes)) {
            free(img);
            img = NULL;
        }
    }
    free(x0);
    free(latf);
    free(want);
    free(c);
    free(u);
    free(xTh);
    sdm_tensor_free(&xT);
    sdm_tensor_free(&ze);
    sdm_tensor_free(&zp);
    sdm_tensor_free(&x0c);
    sdm_tensor_free(&x0u);
    sdm_tensor_free(&lat);
    sdm_tensor_free(&rgb);
    return img;
}

/* A rendered 64×64 frame against its closed form (closed_form_frame): at
 * most 1/255 apart. */
static void check_frame(sdm_engine *e, sdm_module *unet, const sdm_tensor *emb, const sdm_tensor *pooled,
                        const sdm_tensor *tids, double g, int steps, uint64_t seed, const uint8_t *got,
                        const char *what, int k)
{
    uint8_t *want = closed_form_frame(e, unet, emb, pooled, tids, g, steps, seed, 8, 8);
    double maxd, mean;

    CHECK(want != NULL);
    if (!want)
        return;
    maxd = max_abs_u8(want, got, 64 * 64 * 3, &mean);
    printf("xl %s frame %d: max |frame - decode(closed form)| = %.0f/255\n", what, k, maxd);
    CHECK(maxd <= 1);
    free(want);
}

/* ---- the text side -------------------------------------------------------- */

/* emb = [encoder 1's layer before the last | encoder 2's], the second on
 * the ids padded with "!" after the end of text; pooled = the second's
 * pooled output. */
static void test_text_encoders(sdm_engine *e)
{
    const char *prompt = "a rainy city street at night, neon";
    const sdm_bundle *b = sdm_engine_bundle(e);
    const sdm_text_opts o = { 1, 1, 1 };
    int L = b->token_length, H1 = b->hidden_size, H2 = b->text2.hidden_size, W = H1 + H2, after = 0;
    int64_t *ids = malloc(sizeof *ids * L), *ids2 = malloc(sizeof *ids2 * L), shape[2] = { 1, L };
    const sdm_tensor *emb = NULL, *pooled = NULL;
    sdm_tensor *ti = NULL, *ti2 = NULL, *last = NULL, *delta = NULL, *want2 = NULL, *wantp = NULL;
    sdm_module *m1 = NULL, *m2 = NULL;
    double d1 = 0, d2 = 0, dp = 0;
    int checked = 0;

    sdm_tokenizer_encode(sdm_engine_tokenizer(e), prompt, ids, NULL);
    for (int i = 0; i < L; i++) {
        ids2[i] = after ? b->text2.pad_id : ids[i];
        after |= i > 0 && ids[i] == b->eos_id;
    }
    CHECK_INT((int)b->text2.pad_id, 0);
    CHECK(sdm_engine_embed_pooled(e, prompt, &o, &emb, &pooled, NULL) == 0);
    CHECK(emb && pooled);
    CHECK(sdm_module_load(b->text_encoder, cpu, &m1) == SDM_TORCH_OK);
    CHECK(sdm_module_load(b->text2.text_encoder, cpu, &m2) == SDM_TORCH_OK);
    if (!emb || !pooled || !m1 || !m2)
        goto end;
    CHECK_INT((int)sdm_tensor_dim(emb, 2), W);
    CHECK_INT((int)sdm_tensor_dim(pooled, 1), b->text2.pooled_size);
    sdm_tensor_from_host(ids, SDM_I64, shape, 2, cpu, &ti);
    sdm_tensor_from_host(ids2, SDM_I64, shape, 2, cpu, &ti2);
    sdm_module_call(m1, "from_ids", &ti, 1, &last);
    sdm_module_call(m1, "layer_delta", NULL, 0, &delta);
    sdm_module_call(m2, "penultimate_from_ids", &ti2, 1, &want2);
    sdm_module_call(m2, "pooled_from_ids", &ti2, 1, &wantp);
    if (last && delta && want2 && wantp) {
        /* encoder 1's layer before the last is its last plus one delta (analytic.py) */
        float *g = host_f32(emb), *w1 = host_f32(last), *dl = host_f32(delta), *w2 = host_f32(want2);
        float *gp = host_f32(pooled), *wp = host_f32(wantp);
        for (int i = 0; g && w1 && dl && w2 && i < L; i++) {
            for (int j = 0; j < H1; j++)
                d1 = fmax(d1, fabs(g[i * W + j] - (w1[i * H1 + j] + dl[j])));
            for (int j = 0; j < H2; j++)
                d2 = fmax(d2, fabs(g[i * W + H1 + j] - w2[i * H2 + j]));
        }
        checked = g && w1 && dl && w2 && gp && wp;
        for (int j = 0; gp && wp && j < b->text2.pooled_size; j++)
            dp = fmax(dp, fabs(gp[j] - wp[j]));
        free(g);
        free(w1);
        free(dl);
        free(w2);
        free(gp);
        free(wp);
    }
    printf("text: max |emb - encoder 1| %.2e, |emb - encoder 2| %.2e, |pooled - encoder 2's| %.2e\n", d1, d2, dp);
    CHECK(checked && d1 <= 1e-5 && d2 <= 1e-5 && dp <= 1e-5);
end:
    free(ids);
    free(ids2);
    sdm_tensor_free(&ti);
    sdm_tensor_free(&ti2);
    sdm_tensor_free(&last);
    sdm_tensor_free(&delta);
    sdm_tensor_free(&want2);
    sdm_tensor_free(&wantp);
    sdm_module_free(&m1);
    sdm_module_free(&m2);
}

/* ---- a morph and a walk, end to end ---------------------------------------- */

static const char *morph_yaml =
    "width: 64\nheight: 64\nsteps: 10\nguidance: 7.5\nseed: 7\nframes: 4\n"
    "sampler: ddim\noriginal_size: [512, 384]\ncrops_coords_top_left: [16, 8]\n"
    "keyframes:\n  - a rainy city street at night, neon\n  - a dense forest in the rain\n";

/* Frame k of the morph: both the embedding and the pooled embedding lerped
 * with t = k/4, the recipe's time ids, the negative zeros. */
static void test_morph(sdm_engine *e, sdm_module *unet)
{
    const sdm_text_opts o = { 1, 1, 1 };
    const float tv[6] = { 512, 384, 16, 8, 64, 64 };
    const sdm_tensor *ea, *eb, *pa, *pb;
    sdm_tensor *tids = time_ids_of(tv);
    capture c = { 0 }, c1 = { 0 };
    size_t bytes = 64 * 64 * 3;

    CHECK(render_xl(xl_dir, morph_yaml, 0, &c) == 0);
    CHECK_INT(c.n, 5);
    CHECK(sdm_engine_embed_pooled(e, "a rainy city street at night, neon", &o, &ea, &pa, NULL) == 0);
    CHECK(sdm_engine_embed_pooled(e, "a dense forest in the rain", &o, &eb, &pb, NULL) == 0);
    for (int k = 0; k < c.n && k < 5; k++) {
        double t = k / 4.0;
        sdm_tensor *me = NULL, *mp = NULL;
        sdm_tensor_axpby(1.0 - t, ea, t, eb, &me);
        sdm_tensor_axpby(1.0 - t, pa, t, pb, &mp);
        check_frame(e, unet, me, mp, tids, 7.5, 10, 7, c.frames[k], "morph (t = k/4)", k);
        sdm_tensor_free(&me);
        sdm_tensor_free(&mp);
    }
    /* batched (three frames per UNet call, the last batch short) as one at a time */
    CHECK(render_xl(xl_dir, morph_yaml, 3, &c1) == 0);
    CHECK_INT(c1.n, c.n);
    for (int k = 0; k < c.n && k < c1.n; k++)
        CHECK(memcmp(c.frames[k], c1.frames[k], bytes) == 0);
    capture_free(&c);
    capture_free(&c1);
    sdm_tensor_free(&tids);
}

static const char *walk_yaml =
    "width: 64\nheight: 64\nsteps: 6\nguidance: 6\nsampler: ddim\n"
    "walk:\n  prompt: a technopriest in a red robe, portrait\n  seed: 11\n  frames: 4\n"
    "  sigma: 0.5\n  noise_seed: 5\n";

/* Frame k of the walk: y[k] = a·y0 + (1−a)·(y[k−1] + σ·n_k) for the
 * embedding and the pooled embedding alike, each with its own noise. */
static void test_walk(sdm_engine *e, sdm_module *unet)
{
    const sdm_text_opts o = { 1, 1, 1 };
    const float tv[6] = { 64, 64, 0, 0, 64, 64 };
    const double a = 0.5, sigma = 0.5;
    const sdm_tensor *y0[2];
    sdm_tensor *y[2] = { NULL }, *tids = time_ids_of(tv);
    capture c = { 0 };
    size_t bytes = 64 * 64 * 3;

    CHECK(render_xl(xl_dir, walk_yaml, 0, &c) == 0);
    CHECK_INT(c.n, 4);
    CHECK(sdm_engine_embed_pooled(e, "a technopriest in a red robe, portrait", &o, &y0[0], &y0[1], NULL) == 0);
    sdm_tensor_clone(y0[0], &y[0]);
    sdm_tensor_clone(y0[1], &y[1]);
    for (int k = 0; k < c.n && k < 4; k++) {
        for (int p = 0; k > 0 && p < 2; p++) {
            int64_t shape[3] = { 1, sdm_tensor_dim(y0[p], 1), p ? 0 : sdm_tensor_dim(y0[p], 2) };
            sdm_tensor *n = NULL;
            sdm_tensor_randn(p ? sdm_walk_pooled_noise_seed(5, k) : sdm_walk_noise_seed(5, k), shape, p ? 2 : 3, cpu,
                             &n);
            sdm_tensor_axpby_((1 - a) * sigma, n, 1 - a, y[p]);
            sdm_tensor_axpby_(a, y0[p], 1.0, y[p]);
            sdm_tensor_free(&n);
        }
        check_frame(e, unet, y[0], y[1], tids, 6.0, 6, 11, c.frames[k], "walk", k);
    }
    if (c.n == 4) {
        double mean;
        max_abs_u8(c.frames[0], c.frames[1], bytes, &mean);
        CHECK(mean > 0.05); /* the walk moves */
    }
    capture_free(&c);
    sdm_tensor_free(&y[0]);
    sdm_tensor_free(&y[1]);
    sdm_tensor_free(&tids);
}

/* The text encoders let go, as a render does once its texts are encoded:
 * a cached prompt does not load them again; a new one does, and encodes as
 * an engine that never let them go (ref), bit for bit. A render on a
 * shared engine leaves them let go, and gives the frames of a render on an
 * engine of its own; so does the next render there, whose texts are new.
 * The TorchScript UNet let go (as a render whose batches all run the
 * AOTInductor UNet does, on CUDA) is loaded again by the first call. */
static void test_release(sdm_engine *ref)
{
    const sdm_text_opts o = { 1, 1, 1 };
    const sdm_tensor *a = NULL, *a2 = NULL, *pa = NULL, *b = NULL, *pb = NULL, *rb = NULL, *rpb = NULL;
    capture own[2] = { { 0 } }, shared[2] = { { 0 } };
    const char *yaml[2] = { morph_yaml, walk_yaml };
    size_t bytes = 64 * 64 * 3;
    double d = -1, dp = -1;
    sdm_engine *e = NULL;
    sdm_error err = { 0 };

    if (sdm_engine_open(xl_dir, cpu, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    CHECK(sdm_text_encoder_loaded(sdm_engine_text(e)));
    CHECK(sdm_engine_embed_pooled(e, "a red house", &o, &a, &pa, &err) == 0);
    sdm_engine_release_text(e);
    CHECK(!sdm_text_encoder_loaded(sdm_engine_text(e)));
    CHECK(sdm_engine_embed_pooled(e, "a red house", &o, &a2, &pa, &err) == 0 && a2 == a);
    CHECK(!sdm_text_encoder_loaded(sdm_engine_text(e)));
    CHECK(sdm_engine_embed_pooled(e, "a blue house by the sea", &o, &b, &pb, &err) == 0);
    CHECK(sdm_text_encoder_loaded(sdm_engine_text(e)));
    CHECK(sdm_engine_embed_pooled(ref, "a blue house by the sea", &o, &rb, &rpb, &err) == 0);
    if (b && rb && pb && rpb)
        CHECK(!sdm_tensor_max_abs_diff(b, rb, &d) && !sdm_tensor_max_abs_diff(pb, rpb, &dp));
    printf("text after release: max |emb - never released| %g, pooled %g\n", d, dp);
    CHECK(d == 0 && dp == 0);
    sdm_engine_release_unet(e);
    CHECK(!sdm_engine_unet_loaded(e));
    for (int i = 0; i < 2; i++) {
        CHECK(render_xl(xl_dir, yaml[i], 0, &own[i]) == 0);
        CHECK(render_xl_on(e, cpu, xl_dir, yaml[i], 0, &shared[i]) == 0);
        CHECK(!sdm_text_encoder_loaded(sdm_engine_text(e)));
        CHECK(sdm_engine_unet_loaded(e));
        CHECK(own[i].n > 0 && shared[i].n == own[i].n);
        for (int k = 0; k < own[i].n && k < shared[i].n; k++)
            CHECK(memcmp(own[i].frames[k], shared[i].frames[k], bytes) == 0);
        capture_free(&own[i]);
        capture_free(&shared[i]);
    }
    sdm_engine_free(&e);
}

/* On CUDA (skipped elsewhere): the text encoders and the TorchScript UNet
 * let go before a render on a shared engine, as a render whose batches all
 * run the AOTInductor UNet lets the UNet go: the warm-up loads it again
 * before the sampling loop is captured, and the frames are those of a
 * render on an engine of its own (within 1/255: the TorchScript profiles
 * of the two engines' UNets saw other shapes first). */
static void test_release_cuda(void)
{
    const sdm_device cuda = { SDM_DEVICE_CUDA, 0 };
    capture own = { 0 }, shared = { 0 };
    sdm_engine *e = NULL;
    sdm_error err = { 0 };
    double worst = 0, mean;

    if (sdm_cuda_device_count() == 0) {
        SKIP("no CUDA device: the release on CUDA did not run");
        return;
    }
    if (sdm_engine_open(xl_dir, cuda, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    sdm_engine_release_text(e);
    sdm_engine_release_unet(e);
    CHECK(render_xl_on(NULL, cuda, xl_dir, morph_yaml, 2, &own) == 0);
    CHECK(render_xl_on(e, cuda, xl_dir, morph_yaml, 2, &shared) == 0);
    CHECK(sdm_engine_unet_loaded(e) && !sdm_text_encoder_loaded(sdm_engine_text(e)));
    CHECK(own.n == 5 && shared.n == own.n);
    for (int k = 0; k < own.n && k < shared.n; k++)
        worst = fmax(worst, max_abs_u8(own.frames[k], shared.frames[k], 64 * 64 * 3, &mean));
    printf("released on CUDA: max |frame - own engine's| = %.0f/255\n", worst);
    CHECK(worst <= 1);
    capture_free(&own);
    capture_free(&shared);
    sdm_engine_free(&e);
}

/* A seed morph with a sampler that adds noise every step (its stream
 * slerped between the seeds), every frame rendered alone by --frames equal
 * to the whole render's, as for SD. */
static void test_seed_morph_frames(void)
{
    const char *yaml =
        "width: 64\nheight: 64\nsteps: 5\nsampler: euler_a\nguidance: 4\nframes: 3\n"
        "keyframes:\n  - prompt: a red house\n    seed: 1\n  - prompt: a red house\n    seed: 2\n";
    sdm_recipe *r = recipe_of(yaml);
    capture all = { 0 }, one = { 0 };
    sdm_render_params p = sdm_render_default_params();
    sdm_error err = { 0 };
    size_t bytes = 64 * 64 * 3;

    CHECK(render_xl(xl_dir, yaml, 2, &all) == 0);
    CHECK_INT(all.n, 4);
    p.model_dir = xl_dir;
    p.device = cpu;
    p.write_outputs = 0;
    p.on_frame = capture_frame;
    p.user = &one;
    p.frames = "2";
    CHECK(r && sdm_render(r, &p, NULL, &err) == 0);
    CHECK_INT(one.n, 1);
    /* (the analytic UNet's euler_a lands on its target whatever the seed:
     * the frames' equality is what is tested here) */
    if (all.n == 4 && one.n == 1)
        CHECK(memcmp(all.frames[2], one.frames[0], bytes) == 0);
    capture_free(&all);
    capture_free(&one);
    sdm_recipe_free(&r);
}

/* ---- size conditioning and refusals ----------------------------------------- */

/* Frames per VAE call: SD 1.5's 8 at 512² in float16, SDXL's float32 decode
 * at 1024² a frame at a time (tests/export_checks.py asserts the exporter's
 * rule gives the same table). */
static void test_decode_chunk(void)
{
    static const int cases[][4] = { { 64, 64, 2, 8 },   { 64, 64, 4, 4 }, { 96, 96, 2, 3 },  { 128, 128, 2, 2 },
                                    { 128, 128, 4, 1 }, { 32, 32, 4, 8 }, { 256, 256, 4, 1 } };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_INT(sdm_decode_chunk(cases[i][0], cases[i][1], cases[i][2]), cases[i][3]);
}

/* A decode of more latents than one VAE call takes (8 at this size) is split
 * into calls and joined in order: each frame equals its latent decoded alone. */
/* The automatic batch's memory rule: SD's 1.2 GB a guided frame at 512²;
 * SDXL's 0.64 GiB a frame and 6 GiB fixed at 1024² (an H100's batch of 8:
 * 15.2 GiB with the weights). Cards by their free memory after the
 * weights load. */
static void test_batch_for_memory(void)
{
    const double GiB = 1024.0 * 1024.0 * 1024.0;

    CHECK_INT(sdm_batch_for_memory(20e9, 0, 512, 512), 11); /* 14e9 / 1.2e9 */
    CHECK_INT(sdm_batch_for_memory(1e9, 0, 512, 512), 1); /* at least 1 */
    CHECK_INT(sdm_batch_for_memory(70 * GiB, 0, 512, 512), 16); /* at most 16 */
    CHECK_INT(sdm_batch_for_memory(20e9, 0, 1024, 1024), 2); /* scaled by pixels */
    /* SDXL at 1024²: a 24 GB card with the fp16 UNet and VAE loaded
     * (18.4 GiB free) batches 10; the H100's 73 GiB, 16; a 12 GB card, 1 */
    CHECK_INT(sdm_batch_for_memory(18.4 * GiB, 1, 1024, 1024), 10);
    CHECK_INT(sdm_batch_for_memory(73 * GiB, 1, 1024, 1024), 16);
    CHECK_INT(sdm_batch_for_memory(6.4 * GiB, 1, 1024, 1024), 1);
    /* the measured batch of 8 (about 9.2 GiB beside weights and context)
     * is within what the rule gives 15.2 GiB of room for */
    CHECK(sdm_batch_for_memory(15.2 * GiB, 1, 1024, 1024) <= 8);
    /* at 512² the SDXL rule is a quarter of everything */
    CHECK_INT(sdm_batch_for_memory(18.4 * GiB / 4, 1, 512, 512), 10);
}

static void test_decode_split(sdm_engine *e)
{
    const int64_t shape[4] = { 10, 4, 8, 8 };
    const size_t frame = 64 * 64 * 3;
    sdm_tensor *z = NULL, *rgb = NULL, *one = NULL, *one_rgb = NULL;
    static uint8_t all[10 * 64 * 64 * 3], alone[64 * 64 * 3];
    sdm_error err = { 0 };

    CHECK_INT(sdm_decode_chunk(8, 8, 4), 8);
    CHECK_INT(sdm_tensor_randn(5, shape, 4, cpu, &z), 0);
    CHECK_INT(z ? sdm_engine_decode(e, z, &rgb, &err) : -1, 0);
    CHECK_INT(rgb ? (int)sdm_tensor_dim(rgb, 0) : -1, 10);
    CHECK(rgb && sdm_tensor_to_host(rgb, SDM_U8, all, sizeof all) == 0);
    for (int i = 0; z && i < 10; i += 9) { /* the first call's first frame, the second call's last */
        CHECK_INT(sdm_tensor_narrow(z, i, 1, &one), 0);
        CHECK_INT(one ? sdm_engine_decode(e, one, &one_rgb, &err) : -1, 0);
        CHECK(one_rgb && sdm_tensor_to_host(one_rgb, SDM_U8, alone, sizeof alone) == 0);
        CHECK(memcmp(all + (size_t)i * frame, alone, frame) == 0);
        sdm_tensor_free(&one);
        sdm_tensor_free(&one_rgb);
    }
    sdm_tensor_free(&z);
    sdm_tensor_free(&rgb);
}

static void test_time_ids(void)
{
    sdm_recipe *r = recipe_of("width: 1024\nheight: 768\nkeyframes:\n  - a\n");
    sdm_recipe *r2 = recipe_of(
        "original_size: [2048, 1536]\ncrops_coords_top_left: [0, 64]\n"
        "target_size: [768, 1024]\nkeyframes:\n  - a\n");
    float v[6];
    capture c0 = { 0 }, c1 = { 0 };
    double mean = 0;

    CHECK(r && r2);
    if (r && r2) {
        sdm_time_ids(r, 1024, 768, v);
        CHECK(v[0] == 768 && v[1] == 1024 && v[2] == 0 && v[3] == 0 && v[4] == 768 && v[5] == 1024);
        sdm_time_ids(r2, 1024, 768, v);
        CHECK(v[0] == 2048 && v[1] == 1536 && v[2] == 0 && v[3] == 64 && v[4] == 768 && v[5] == 1024);
        CHECK(r2->size_conditioning && !r->size_conditioning);
    }
    /* the time ids reach the UNet: another original size, another picture */
    CHECK(render_xl(xl_dir, "width: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - a red house\n", 0, &c0) == 0);
    CHECK(render_xl(xl_dir, "width: 64\nheight: 64\nsteps: 4\noriginal_size: [4096, 64]\nkeyframes:\n  - a red house\n",
                    0, &c1) == 0);
    if (c0.n == 1 && c1.n == 1)
        max_abs_u8(c0.frames[0], c1.frames[0], 64 * 64 * 3, &mean);
    printf("time ids: mean |default - original_size [4096, 64]| = %.2f/255\n", mean);
    CHECK(mean > 1);
    capture_free(&c0);
    capture_free(&c1);
    sdm_recipe_free(&r);
    sdm_recipe_free(&r2);
}

/* A whole (small) file into buf, NUL-terminated; -1 if unreadable. */
static int read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");

    if (!f)
        return -1;
    buf[fread(buf, 1, len - 1, f)] = '\0';
    fclose(f);
    return 0;
}

/* Two shards of a morph in dir, joined, and the morph on two engines: the
 * sidecars record the time ids and VAE dtype as a single render's does. */
static void joined_sidecar(const char *dir)
{
    sdm_recipe *r = recipe_of(
        "width: 64\nheight: 64\nsteps: 2\noriginal_size: [512, 384]\n"
        "crops_coords_top_left: [16, 8]\nframes: 3\nkeyframes:\n  - a red house\n  - a blue sea\n");
    char seg[2][128], rgb[2][128], out[128], json[128], text[8192] = "";
    const char *one[1], *outs[1] = { out }, *segs[2] = { seg[0], seg[1] };
    sdm_render_params p = sdm_render_default_params();
    sdm_join_params jp = { segs, 2, outs, 1 };
    const sdm_device devs[2] = { cpu, cpu };
    sdm_error err = { 0 };

    p.model_dir = xl_dir;
    p.device = cpu;
    p.write_outputs = 1;
    p.n_outputs = 1;
    p.outputs = one;
    for (int i = 0; i < 2; i++) {
        snprintf(rgb[i], sizeof rgb[i], "%s/s%d.rgb", dir, i + 1);
        snprintf(seg[i], sizeof seg[i], "%s/s%d.json", dir, i + 1);
        one[0] = rgb[i];
        p.shard = (sdm_shard){ i + 1, 2 };
        CHECK(r && sdm_render(r, &p, NULL, &err) == 0);
    }
    snprintf(out, sizeof out, "%s/j.rgb", dir);
    snprintf(json, sizeof json, "%s/j.json", dir);
    CHECK(r && sdm_join(r, &jp, NULL, &err) == 0);
    CHECK(read_text(json, text, sizeof text) == 0);
    CHECK_CONTAINS(text, "\"time_ids\": [ 512, 384, 16, 8, 64, 64 ]");
    CHECK_CONTAINS(text, "\"vae_dtype\": \"float32\"");
    CHECK_CONTAINS(text, "\"sampler_auto\": \"euler\""); /* the bundle's EulerDiscreteScheduler */
    CHECK_CONTAINS(text, "\"device\": \"cpu\"");
    /* engines on two threads: their sidecar too */
    p.shard = (sdm_shard){ 0, 0 };
    p.outputs = outs;
    CHECK(r && sdm_render_devices(r, &p, devs, 2, NULL, &err) == 0);
    CHECK(read_text(json, text, sizeof text) == 0);
    CHECK_CONTAINS(text, "\"time_ids\": [ 512, 384, 16, 8, 64, 64 ]");
    CHECK_CONTAINS(text, "\"vae_dtype\": \"float32\"");
    CHECK_CONTAINS(text, "\"sampler_auto\": \"euler\""); /* the bundle's EulerDiscreteScheduler */
    CHECK_CONTAINS(text, "\"device\": \"cpu,cpu\"");
    remove(out);
    remove(json);
    for (int i = 0; i < 2; i++) {
        remove(rgb[i]);
        remove(seg[i]);
    }
    sdm_recipe_free(&r);
}

/* The sidecar records the time ids the UNet got and the VAE decoder's dtype. */
static void test_sidecar(void)
{
    const char *yaml =
        "width: 64\nheight: 64\nsteps: 2\noriginal_size: [512, 384]\ncrops_coords_top_left: [16, 8]\n"
        "keyframes:\n  - a red house\n";
    char dir[] = "/tmp/sdm_xl_side_XXXXXX", out[128], json[128], text[8192] = "";
    const char *outs[1] = { out };
    sdm_recipe *r = recipe_of(yaml);
    sdm_render_params p = sdm_render_default_params();
    sdm_error err = { 0 };

    CHECK(r && mkdtemp(dir) != NULL);
    snprintf(out, sizeof out, "%s/x.png", dir);
    snprintf(json, sizeof json, "%s/x.json", dir);
    p.model_dir = xl_dir;
    p.device = cpu;
    p.write_outputs = 1;
    p.outputs = outs;
    p.n_outputs = 1;
    CHECK(r && sdm_render(r, &p, NULL, &err) == 0);
    CHECK(read_text(json, text, sizeof text) == 0);
    CHECK_CONTAINS(text, "\"time_ids\": [ 512, 384, 16, 8, 64, 64 ]");
    CHECK_CONTAINS(text, "\"vae_dtype\": \"float32\"");
    CHECK_CONTAINS(text, "\"sampler_auto\": \"euler\""); /* the bundle's EulerDiscreteScheduler */
    remove(json);
    remove(out);
    joined_sidecar(dir);
    rmdir(dir);
    sdm_recipe_free(&r);
}

/* Image starts on the SDXL path: a picture the decoder made comes back
 * from a strength-0 start (SDXL's encoder and scaling round trip); starts
 * that run steps denoise; a morph from an image keyframe to a prompt
 * renders the same frames at batch 1 and 3. */
static char *xl_image_yaml(const char *pic, double strength, const char *more)
{
    static char y[1024];
    snprintf(y, sizeof y,
             "width: 64\nheight: 64\nsteps: 10\nsampler: ddim\nguidance: 5\nseed: 3\n%s"
             "keyframes:\n  - {prompt: a red house, image: \"%s\", strength: %g}\n%s",
             more ? "frames: 3\n" : "", pic, strength, more ? more : "");
    return y;
}

static void test_image_start(sdm_engine *e)
{
    char dir[] = "/tmp/sdm_xl_img_XXXXXX", pic[128];
    const int64_t shape[4] = { 1, 4, 8, 8 };
    sdm_tensor *z = NULL, *rgb = NULL;
    uint8_t img[64 * 64 * 3];
    capture c0 = { 0 }, c5 = { 0 }, c10 = { 0 }, m1 = { 0 }, m3 = { 0 };
    sdm_error err = { 0 };
    double mean = 0, d0, d5, d10;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(pic, sizeof pic, "%s/pic.png", dir);
    CHECK_INT(sdm_tensor_randn(21, shape, 4, cpu, &z), 0);
    CHECK_INT(z ? sdm_engine_decode(e, z, &rgb, &err) : -1, 0);
    CHECK(rgb && sdm_tensor_to_host(rgb, SDM_U8, img, sizeof img) == 0);
    CHECK_INT(sdm_png_write(pic, img, 64, 64, NULL, pic, &err), 0);
    CHECK_INT(render_xl(xl_dir, xl_image_yaml(pic, 0.0, NULL), 1, &c0), 0);
    CHECK_INT(render_xl(xl_dir, xl_image_yaml(pic, 0.5, NULL), 1, &c5), 0);
    CHECK_INT(render_xl(xl_dir, xl_image_yaml(pic, 1.0, NULL), 1, &c10), 0);
    if (c0.n == 1 && c5.n == 1 && c10.n == 1) {
        d0 = max_abs_u8(img, c0.frames[0], sizeof img, &mean);
        printf("xl image start, strength 0: max %.0f/255, mean %.3f/255 off the picture\n", d0, mean);
        CHECK(d0 <= 3 && mean <= 0.5);
        max_abs_u8(img, c5.frames[0], sizeof img, &d5);
        max_abs_u8(img, c10.frames[0], sizeof img, &d10);
        printf("xl image start: mean distance to the picture %.2f/255 at strength 0.5, %.2f/255 at 1\n", d5, d10);
        /* the analytic denoiser is perfect: any start that runs steps ends
         * near its target, far from the picture (test_img2img has the SD
         * closed forms per strength) */
        CHECK(d5 > 10 && d10 > 10);
    }
    CHECK_INT(render_xl(xl_dir, xl_image_yaml(pic, 0.6, "  - {prompt: a blue sea, strength: 0.6}\n"), 1, &m1), 0);
    CHECK_INT(render_xl(xl_dir, xl_image_yaml(pic, 0.6, "  - {prompt: a blue sea, strength: 0.6}\n"), 3, &m3), 0);
    CHECK(m1.n == 4 && m3.n == 4);
    for (int i = 0; i < m1.n && i < m3.n; i++)
        CHECK(max_abs_u8(m1.frames[i], m3.frames[i], sizeof img, NULL) == 0);
    capture_free(&c0);
    capture_free(&c5);
    capture_free(&c10);
    capture_free(&m1);
    capture_free(&m3);
    sdm_tensor_free(&z);
    sdm_tensor_free(&rgb);
    remove(pic);
    rmdir(dir);
}

/* What check refuses before a model loads: size conditioning for a model
 * without it, embeddings for two encoders, clip_skip past the layers. */
static void test_refusals(void)
{
    static const struct {
        const char *model, *yaml, *says;
    } cases[] = {
        /* each refusal names where the key is written */
        { "analytic", "steps: 4\ntarget_size: [512, 512]\noriginal_size: [1024, 1024]\nkeyframes:\n  - a\n",
          "xl.yaml:3:16: original_size, crops_coords_top_left and target_size are SDXL's size conditioning" },
        { "analytic-xl", "embeddings: /nonexistent-embeddings\nkeyframes:\n  - a\n",
          "xl.yaml:1:13: 'embeddings': no folder /nonexistent-embeddings" },
        { "analytic-xl", "clip_skip: 3\nkeyframes:\n  - a\n", "clip_skip 3" },
    };
    char dir[600];

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sdm_recipe *r = recipe_of(cases[i].yaml);
        sdm_render_params p = sdm_render_default_params();
        sdm_preflight pf;
        sdm_error err = { 0 };
        snprintf(dir, sizeof dir, "%s/models/%s", test_build_dir(), cases[i].model);
        p.model_dir = dir;
        p.device = cpu;
        CHECK(r != NULL);
        if (!r)
            continue;
        CHECK(sdm_preflight_run(r, &p, &pf, &err) != 0);
        CHECK_CONTAINS(err.msg, cases[i].says);
        sdm_preflight_free(&pf);
        sdm_recipe_free(&r);
    }
    /* a key set on the command line is named as the option */
    {
        const sdm_recipe_override ov = { "--set target_size=[512,512]", "target_size", "[512, 512]" };
        const char *yaml = "keyframes:\n  - a\n";
        sdm_recipe *r = NULL;
        sdm_render_params p = sdm_render_default_params();
        sdm_preflight pf;
        sdm_error err = { 0 };
        snprintf(dir, sizeof dir, "%s/models/analytic", test_build_dir());
        p.model_dir = dir;
        p.device = cpu;
        CHECK_INT(sdm_recipe_load_string_with("xl.yaml", yaml, strlen(yaml), &ov, 1, &r, &err), 0);
        CHECK(r && sdm_preflight_run(r, &p, &pf, &err) != 0);
        CHECK_CONTAINS(err.msg, "--set target_size=[512,512]: original_size, crops_coords_top_left and target_size");
        if (r)
            sdm_preflight_free(&pf);
        sdm_recipe_free(&r);
    }
}

/* The denoiser of an SDXL UNet refuses a batch without its added inputs,
 * or with them of the wrong shape, before anything runs. */
static void test_denoiser_refusals(sdm_engine *e)
{
    const sdm_text_opts o = { 1, 1, 1 };
    const int64_t xs[4] = { 1, 4, 8, 8 }, ps[2] = { 1, 5 };
    const float tv[6] = { 64, 64, 0, 0, 64, 64 };
    sdm_denoiser *d = engine_denoiser(e);
    sdm_sampler_params sp = { SDM_SAMPLER_DDIM, 2, 0.0, 0, SDM_SPACING_DEFAULT, 0, 0 };
    const sdm_tensor *emb = NULL, *pooled = NULL;
    sdm_tensor *x = NULL, *bad = NULL, *tids = time_ids_of(tv), *out = NULL;
    sdm_schedule s;
    sdm_batch b = { 0 };
    sdm_error e2 = { 0 };
    double g = 1.0;

    CHECK(d && sdm_schedule_make(sdm_engine_bundle(e), &sp, &s, &e2) == 0);
    CHECK(sdm_engine_embed_pooled(e, "a", &o, &emb, &pooled, NULL) == 0);
    sdm_tensor_randn(1, xs, 4, cpu, &x);
    sdm_tensor_randn(1, ps, 2, cpu, &bad);
    b.latents = x;
    b.cond.cond = emb;
    b.guidance = &g;
    for (int i = 0; d && i < 3; i++) {
        sdm_error err = { 0 };
        b.cond.pooled = i == 0 ? NULL : i == 1 ? bad : pooled;
        b.cond.time_ids = i == 2 ? NULL : tids;
        CHECK_INT(sdm_denoiser_run(d, &s, &b, &out, &err), -1);
        CHECK(out == NULL);
        CHECK_CONTAINS(err.msg, i == 1 ? "wrong shape" : "needs pooled embeddings and time ids");
    }
    /* and runs it with them */
    b.cond.pooled = pooled;
    b.cond.time_ids = tids;
    CHECK(d && sdm_denoiser_run(d, &s, &b, &out, &e2) == 0);
    CHECK(out && sdm_tensor_dim(out, 0) == 1);
    sdm_tensor_free(&out);
    sdm_tensor_free(&x);
    sdm_tensor_free(&bad);
    sdm_tensor_free(&tids);
    sdm_schedule_free(&s);
    sdm_denoiser_free(&d);
}

/* A .safetensors of float32 tensors [n, widths[i]] named names[i], their
 * data one after the other. */
static void write_tensors(const char *path, const char *const *names, const float *const *data, int count, int n,
                          const int *widths)
{
    char header[512];
    uint64_t len;
    int hl = 1, off = 0;
    FILE *f;

    header[0] = '{';
    for (int i = 0; i < count; i++, off += n * widths[i - 1] * 4)
        hl += snprintf(header + hl, sizeof header - (size_t)hl,
                       "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%d,%d]}", i ? "," : "",
                       names[i], n, widths[i], off, off + n * widths[i] * 4);
    header[hl++] = '}';
    while (hl % 8)
        header[hl++] = ' ';
    len = (uint64_t)hl;
    f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, (size_t)hl, f);
    for (int i = 0; i < count; i++)
        fwrite(data[i], sizeof(float), (size_t)n * widths[i], f);
    fclose(f);
}

/* The rows of token ids a and b of a bundle's token table (path) into out [2, H]. */
static int table_rows(const char *path, int a, int b, int H, float *out)
{
    sdm_safetensors *st = NULL;
    sdm_error err = { 0 };
    const sdm_st_tensor *t;
    float *table = NULL;
    int rc = -1;

    if (sdm_safetensors_open(path, &st, &err))
        return -1;
    t = sdm_safetensors_tensor(st, 0);
    table = malloc(sizeof *table * (size_t)t->numel);
    if (table && !sdm_safetensors_read_f32(st, t, table, t->numel, &err)) {
        memcpy(out, table + (size_t)a * H, sizeof *out * H);
        memcpy(out + H, table + (size_t)b * H, sizeof *out * H);
        rc = 0;
    }
    free(table);
    sdm_safetensors_free(&st);
    return rc;
}

/* Same embedding and pooled embedding for two prompts? */
static int same_text(sdm_engine *e, const char *p, const char *q)
{
    const sdm_text_opts o = { 1, 1, 1 };
    const sdm_tensor *ep, *eq, *pp, *pq;
    float *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    int same = 0;

    if (!sdm_engine_embed_pooled(e, p, &o, &ep, &pp, NULL) && !sdm_engine_embed_pooled(e, q, &o, &eq, &pq, NULL)) {
        a = host_f32(ep);
        b = host_f32(eq);
        c = host_f32(pp);
        d = host_f32(pq);
        same = a && b && c && d && !memcmp(a, b, sizeof *a * (size_t)sdm_tensor_numel(ep)) &&
               !memcmp(c, d, sizeof *c * (size_t)sdm_tensor_numel(pp));
    }
    free(a);
    free(b);
    free(c);
    free(d);
    return same;
}

/* A recipe naming embeddings folder dir, through check's preflight on the
 * SDXL bundle: 0 where it passes, else -1 with err set. */
static int preflight_embeddings(const char *dir, sdm_error *err)
{
    char yaml[400];
    sdm_recipe *r;
    sdm_render_params p = sdm_render_default_params();
    sdm_preflight pf;
    int rc;

    snprintf(yaml, sizeof yaml, "embeddings: %s\nkeyframes:\n  - a grim city\n", dir);
    r = recipe_of(yaml);
    if (!r)
        return -1;
    p.model_dir = xl_dir;
    p.device = cpu;
    rc = sdm_preflight_run(r, &p, &pf, err);
    sdm_preflight_free(&pf); /* what a refusal leaves too */
    sdm_recipe_free(&r);
    return rc;
}

/* Textual inversion with both encoders (A1111's SDXL files: clip_l and
 * clip_g): an embedding whose vectors are the two tables' rows of "city"
 * and "fog" reads as those words, in the embedding and the pooled one, and
 * `tokenize` shows it; a one-tensor (SD) file is refused, naming it, by
 * check before any model loads as by the render. */
static void test_embeddings(sdm_engine *e)
{
    const sdm_bundle *b = sdm_engine_bundle(e);
    const sdm_tokenizer *tok = sdm_engine_tokenizer(e);
    const char *xl_names[2] = { "clip_g", "clip_l" }, *sd_name[1] = { "emb_params" };
    int H1 = b->hidden_size, H2 = b->text2.hidden_size, widths[2] = { H2, H1 };
    int city = sdm_tokenizer_find(tok, "city</w>"), fog = sdm_tokenizer_find(tok, "fog</w>");
    float l[2 * 64], g[2 * 64];
    const float *data[2] = { g, l };
    char dir[] = "/tmp/sdm_xl_emb_XXXXXX", path[256];
    sdm_error err = { 0 };

    CHECK(city >= 0 && fog >= 0 && H1 <= 64 && H2 <= 64 && mkdtemp(dir) != NULL);
    CHECK(table_rows(b->token_embedding, city, fog, H1, l) == 0);
    CHECK(table_rows(b->text2.token_embedding, city, fog, H2, g) == 0);
    snprintf(path, sizeof path, "%s/grim.safetensors", dir);
    write_tensors(path, xl_names, data, 2, 2, widths);
    CHECK_INT(sdm_text_encoder_use_embeddings(sdm_engine_text(e), dir, &err), 0);
    CHECK(!same_text(e, "a grim", "a city"));
    CHECK(same_text(e, "a grim", "a city fog"));
    CHECK_INT(preflight_embeddings(dir, &err), 0);
    {
        char out[8192];
        char *argv[] = {
            "sdmorph", "tokenize", "--model", xl_dir, "--embeddings", dir, "--tokens", "a grim city", NULL
        };
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "grim (embedding, vector 2 of 2)");
        CHECK_CONTAINS(out, "(padding; the second text encoder's: 0)");
    }
    remove(path);
    snprintf(path, sizeof path, "%s/plain.safetensors", dir);
    write_tensors(path, sd_name, &data[1], 1, 2, &widths[1]);
    CHECK_INT(sdm_text_encoder_use_embeddings(sdm_engine_text(e), dir, &err), -1);
    CHECK_CONTAINS(err.msg, "plain.safetensors");
    CHECK_CONTAINS(err.msg, "'clip_l' and 'clip_g'");
    memset(&err, 0, sizeof err);
    CHECK_INT(preflight_embeddings(dir, &err), -1);
    CHECK_CONTAINS(err.msg, "xl.yaml:1:13: 'embeddings': ");
    CHECK_CONTAINS(err.msg, "plain.safetensors");
    CHECK_CONTAINS(err.msg, "'clip_l' and 'clip_g'");
    remove(path);
    rmdir(dir);
}

int main(void)
{
    sdm_engine *e = analytic_engine_named("analytic-xl", xl_dir, sizeof xl_dir);
    sdm_module *unet = NULL;

    if (!e)
        return test_report();
    unet = analytic_unet(e);
    CHECK(unet != NULL);
    CHECK(sdm_bundle_is_xl(sdm_engine_bundle(e)));
    CHECK_INT(sdm_bundle_context_size(sdm_engine_bundle(e)), 56);
    test_text_encoders(e);
    if (unet) {
        test_morph(e, unet);
        test_walk(e, unet);
    }
    test_release(e);
    test_release_cuda();
    test_seed_morph_frames();
    test_denoiser_refusals(e);
    test_time_ids();
    test_decode_chunk();
    test_batch_for_memory();
    test_decode_split(e);
    test_refusals();
    test_sidecar();
    test_image_start(e);
    test_embeddings(e); /* last: the engine then reads "grim" as its embedding */
    sdm_module_free(&unet);
    sdm_engine_free(&e);
    return test_report();
}
