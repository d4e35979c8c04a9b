#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "torch_error.h"

/* The most inputs a module takes: SDXL's UNet, with pooled and time ids. */
#define MODULE_MAX_ARGS 5

struct sdm_engine {
    sdm_bundle bundle;
    sdm_device dev;
    sdm_dtype dtype; /* what the modules compute in */
    sdm_dtype vae_dtype; /* the VAE decoder's: float32 where SDXL's overflows in float16 */
    sdm_tokenizer *tok;
    sdm_text_encoder *text;
    sdm_module *unet, *vae;
    sdm_module *unet_aoti, *vae_aoti; /* the bundle's AOTInductor builds, where loaded */
    int decode_rows; /* frames per VAE call the warm-up ran (0: none); smaller calls are padded to it */
    sdm_engine_loading loading;
};

/* Adds the seconds since *t to *part and moves *t to now. */
static void lap(double *t, double *part)
{
    struct timespec ts;
    double now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (part)
        *part += now - *t;
    *t = now;
}

static int load_module(const char *path, sdm_device dev, sdm_module **m, sdm_error *err)
{
    sdm_torch_status st = sdm_module_load(path, dev, m);
    if (st)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot load model file %s: %s", path, sdm_torch_last_error());
    return 0;
}

static void shape_str(const sdm_tensor *t, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < sdm_tensor_ndim(t) && n + 24 < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? "," : "[", (long long)sdm_tensor_dim(t, i));
    snprintf(buf + n, len - n, "]");
}

/* One small input through each module, so a bundle whose files do not fit
 * its model.yaml (or each other) fails now, naming the file and the shapes,
 * not after hours of rendering. */
static int call_f32(sdm_engine *e, sdm_module *m, sdm_tensor *const *args, int nargs, sdm_tensor **out,
                    const char *what, sdm_error *err);
static int call_as(sdm_engine *e, sdm_dtype dtype, sdm_module *m, sdm_tensor *const *args, int nargs, sdm_tensor **out,
                   const char *what, sdm_error *err);

/* SDXL's added UNet inputs for n latents: pooled embeddings [n,P] (zeros)
 * and time ids [n,6] (a square image of 8 latent cells, no crop); NULL
 * for other bundles. */
static sdm_torch_status xl_inputs(const sdm_engine *e, int64_t n, sdm_tensor **pooled, sdm_tensor **time_ids)
{
    const sdm_bundle *b = &e->bundle;
    int64_t ps[2] = { n, b->text2.pooled_size }, ts[2] = { n, SDM_TIME_IDS };
    float *v;
    sdm_torch_status st;

    *pooled = *time_ids = NULL;
    if (!sdm_bundle_is_xl(b))
        return SDM_TORCH_OK;
    v = malloc(sizeof *v * (size_t)n * SDM_TIME_IDS);
    if (!v)
        return SDM_TORCH_OOM;
    for (int64_t i = 0; i < n * SDM_TIME_IDS; i++)
        v[i] = i % 3 == 2 ? 0.0f : (float)(8 * b->vae_scale);
    st = sdm_tensor_zeros(SDM_F32, ps, 2, e->dev, pooled);
    if (!st)
        st = sdm_tensor_from_host(v, SDM_F32, ts, 2, e->dev, time_ids);
    free(v);
    return st;
}

/* A module that would not run on the probe input: the first line of
 * libtorch's message (the rest is a TorchScript traceback), and what the
 * module was asked to fit. */
static int module_misfit(const sdm_bundle *b, sdm_error *err)
{
    char *nl = strchr(err->msg, '\n');
    size_t n;

    if (nl)
        *nl = '\0';
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             " -- does it fit %s/model.yaml (latent_channels %d, "
             "token_length %d, hidden_size %d, vae_scale %d)?",
             b->dir, b->latent_channels, b->token_length, b->hidden_size, b->vae_scale);
    return -1;
}

static int check_modules(sdm_engine *e, sdm_error *err)
{
    const sdm_bundle *b = &e->bundle;
    int64_t x_shape[4] = { 1, b->latent_channels, 8, 8 }, t_shape[1] = { 1 };
    const sdm_text_opts o = { 0, 1, 1 };
    float t = 1.0f;
    sdm_tensor *emb = NULL, *x = NULL, *tt = NULL, *eps = NULL, *img = NULL, *pooled = NULL, *tids = NULL;
    char got[96];
    int rc = -1;

    if (sdm_tensor_zeros(SDM_F32, x_shape, 4, e->dev, &x) ||
        sdm_tensor_from_host(&t, SDM_F32, t_shape, 1, e->dev, &tt) || xl_inputs(e, 1, &pooled, &tids)) {
        sdm_torch_error(err, SDM_TORCH_ERROR, "checking the model");
        goto end;
    }
    if (sdm_text_encoder_run(e->text, "", &o, &emb, err)) {
        module_misfit(b, err);
        goto end;
    }
    {
        sdm_tensor *args[5] = { x, tt, emb, pooled, tids };
        if (call_f32(e, e->unet, args, pooled ? 5 : 3, &eps, b->unet, err)) {
            module_misfit(b, err);
            goto end;
        }
    }
    if (sdm_tensor_ndim(eps) != 4 || sdm_tensor_dim(eps, 0) != 1 || sdm_tensor_dim(eps, 1) != b->latent_channels ||
        sdm_tensor_dim(eps, 2) != 8 || sdm_tensor_dim(eps, 3) != 8) {
        shape_str(eps, got, sizeof got);
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s gives %s for a [1,%d,8,8] latent; it must give the same shape "
                      "(latent_channels in %s/model.yaml)",
                      b->unet, got, b->latent_channels, b->dir);
        goto end;
    }
    if (call_as(e, e->vae_dtype, e->vae, &x, 1, &img, b->vae_decoder, err)) {
        module_misfit(b, err);
        goto end;
    }
    if (sdm_tensor_ndim(img) != 4 || sdm_tensor_dim(img, 1) != 3 || sdm_tensor_dim(img, 2) != 8 * b->vae_scale ||
        sdm_tensor_dim(img, 3) != 8 * b->vae_scale) {
        shape_str(img, got, sizeof got);
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s gives %s for a [1,%d,8,8] latent; expected [1,3,%d,%d] "
                      "(vae_scale %d in %s/model.yaml)",
                      b->vae_decoder, got, b->latent_channels, 8 * b->vae_scale, 8 * b->vae_scale, b->vae_scale,
                      b->dir);
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&emb);
    sdm_tensor_free(&x);
    sdm_tensor_free(&tt);
    sdm_tensor_free(&eps);
    sdm_tensor_free(&img);
    sdm_tensor_free(&pooled);
    sdm_tensor_free(&tids);
    return rc;
}

/* The bundle's embeddings/ folder, where it has one and its encoder takes them. */
static int bundle_embeddings(sdm_engine *e, sdm_error *err)
{
    char dir[1100];
    struct stat st;

    snprintf(dir, sizeof dir, "%s/embeddings", e->bundle.dir);
    if (!e->bundle.text_layers || stat(dir, &st) || !S_ISDIR(st.st_mode))
        return 0;
    return sdm_text_encoder_use_embeddings(e->text, dir, err);
}

int sdm_engine_open(const char *model_dir, sdm_device dev, sdm_engine **out, sdm_error *err)
{
    sdm_engine *e = calloc(1, sizeof *e);
    double t = 0;
    int rc = -1;

    *out = NULL;
    lap(&t, NULL);
    if (!e) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    e->dev = dev;
    if (sdm_bundle_load(model_dir, &e->bundle, err))
        goto end;
    if (sdm_dtype_from_str(e->bundle.dtype, &e->dtype)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s/model.yaml: dtype '%s' is not float32 or float16", model_dir,
                      e->bundle.dtype);
        goto end;
    }
    sdm_dtype_from_str(e->bundle.vae_dtype, &e->vae_dtype); /* checked by the bundle's loader */
    if (e->dtype == SDM_F16 && dev.type == SDM_DEVICE_CPU) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s holds float16 modules, which need a CUDA device; export with --dtype float32 for the CPU",
                      model_dir);
        goto end;
    }
    /* libtorch's own message, before a module's load would wrap it */
    if (!sdm_torch_load()) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s", sdm_torch_last_error());
        goto end;
    }
    sdm_torch_set_tf32(e->dtype != SDM_F32);
    lap(&t, &e->loading.runtime);
    if (sdm_bundle_tokenizer(&e->bundle, &e->tok, err) ||
        sdm_text_encoder_open(&e->bundle, e->tok, dev, e->dtype, &e->text, err) || bundle_embeddings(e, err))
        goto end;
    lap(&t, &e->loading.text);
    if (load_module(e->bundle.unet, dev, &e->unet, err))
        goto end;
    lap(&t, &e->loading.unet);
    if (load_module(e->bundle.vae_decoder, dev, &e->vae, err))
        goto end;
    lap(&t, &e->loading.vae);
    if (check_modules(e, err))
        goto end;
    lap(&t, &e->loading.check);
    rc = 0;
end:
    if (rc)
        sdm_engine_free(&e);
    *out = e;
    return rc;
}

sdm_engine_loading sdm_engine_loading_split(const sdm_engine *e)
{
    return e->loading;
}

const sdm_bundle *sdm_engine_bundle(const sdm_engine *e)
{
    return &e->bundle;
}

sdm_device sdm_engine_device(const sdm_engine *e)
{
    return e->dev;
}

int sdm_engine_unet_args(const sdm_engine *e)
{
    return sdm_bundle_is_xl(&e->bundle) ? 5 : 3;
}

const sdm_tokenizer *sdm_engine_tokenizer(const sdm_engine *e)
{
    return e->tok;
}

sdm_dtype sdm_engine_dtype(const sdm_engine *e)
{
    return e->dtype;
}

/* 1 where module m, built for a's shapes, takes n latents of h×w. */
static int aoti_fits(const sdm_module *m, const sdm_aoti_build *a, int n, int h, int w)
{
    return m && h == a->latent_h && w == a->latent_w && n >= a->min_batch && n <= a->max_batch;
}

int sdm_engine_uses_aoti(const sdm_engine *e, int n, int latent_h, int latent_w, int tokens)
{
    /* compiled for one prompt chunk: longer prompts run on TorchScript */
    return tokens == e->bundle.token_length && aoti_fits(e->unet_aoti, &e->bundle.unet_aoti, n, latent_h, latent_w);
}

int sdm_engine_has_aoti(const sdm_engine *e)
{
    return e->unet_aoti != NULL;
}

/* The TorchScript UNet, loaded again where sdm_engine_release_unet let it go. */
static int ts_unet(sdm_engine *e, sdm_module **m, sdm_error *err)
{
    if (!e->unet && load_module(e->bundle.unet, e->dev, &e->unet, err))
        return -1;
    *m = e->unet;
    return 0;
}

/* The UNet for a call on latents x [n,C,h,w] and text emb [n,L,H]: the
 * AOTInductor one where it was compiled for that shape (it checks no shapes
 * itself), else TorchScript, loaded again where it was let go. */
static int unet_for(sdm_engine *e, const sdm_tensor *x, const sdm_tensor *emb, sdm_module **m, sdm_error *err)
{
    int n = (int)sdm_tensor_dim(x, 0), h = (int)sdm_tensor_dim(x, 2), w = (int)sdm_tensor_dim(x, 3);

    if (sdm_engine_uses_aoti(e, n, h, w, (int)sdm_tensor_dim(emb, 1))) {
        *m = e->unet_aoti;
        return 0;
    }
    if (!e->unet)
        sdm_info(
            "%d UNet inputs of %dx%d latents: the AOTInductor UNet does not take them; TorchScript's is "
            "loaded again",
            n, w, h);
    return ts_unet(e, m, err);
}

void sdm_engine_release_unet(sdm_engine *e)
{
    sdm_module_free(&e->unet);
    sdm_device_release_cached(e->dev); /* best effort, as sdm_engine_release_text */
}

int sdm_engine_unet_loaded(const sdm_engine *e)
{
    return e->unet != NULL;
}

/* The VAE decoder for latents z [n,C,h,w], likewise. */
static sdm_module *vae_for(sdm_engine *e, const sdm_tensor *z)
{
    return aoti_fits(e->vae_aoti, &e->bundle.vae_aoti, (int)sdm_tensor_dim(z, 0), (int)sdm_tensor_dim(z, 2),
                     (int)sdm_tensor_dim(z, 3))
               ? e->vae_aoti
               : e->vae;
}

/* A package and its TorchScript module on the same seeded inputs: a
 * package compiled from other weights (a stale .pt2) or for other shapes
 * than model.yaml says fails here. want[4] is the output's shape. Loose
 * bounds: the export checked precision. FP8 products (fp8: the bundle's
 * aoti.fp8) move the output by a few percent, other weights by all of it. */
static int aoti_agree(sdm_engine *e, sdm_dtype dtype, sdm_module *ts, const char *ts_path, sdm_module *pkg,
                      const char *pkg_path, int fp8, sdm_tensor *const *args, int nargs, const int64_t want[4],
                      sdm_error *err)
{
    sdm_tensor *ref = NULL, *got = NULL;
    double diff = 0, scale = 0, tol = fp8 ? 0.25 : e->dtype == SDM_F32 ? 1e-2 : 5e-2;
    sdm_torch_status st;
    int rc = -1, shape_ok;

    if (call_as(e, dtype, ts, args, nargs, &ref, ts_path, err) ||
        call_as(e, dtype, pkg, args, nargs, &got, pkg_path, err))
        goto end;
    shape_ok = sdm_tensor_ndim(got) == 4;
    for (int i = 0; shape_ok && i < 4; i++)
        shape_ok = sdm_tensor_dim(got, i) == want[i];
    if (!shape_ok) {
        char got_s[96];
        shape_str(got, got_s, sizeof got_s);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s gives %s where [%lld,%lld,%lld,%lld] was due", pkg_path, got_s,
                      (long long)want[0], (long long)want[1], (long long)want[2], (long long)want[3]);
        goto end;
    }
    st = sdm_tensor_max_abs_diff(got, ref, &diff);
    if (!st)
        st = sdm_tensor_max_abs_diff(ref, NULL, &scale);
    if (st) {
        sdm_torch_error(err, st, "checking an AOTInductor build");
        goto end;
    }
    if (!(diff <= tol * (scale > 1 ? scale : 1))) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s differs from %s by up to %.3g (outputs up to %.3g): made from "
                      "other weights? Export it again with export_sd.py --aoti",
                      pkg_path, ts_path, diff, scale);
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&ref);
    sdm_tensor_free(&got);
    return rc;
}

/* The batch a package is probed at: 2 where it takes 2 (cheap), else the
 * nearest it takes. */
static int probe_batch(const sdm_aoti_build *a)
{
    return a->min_batch > 2 ? a->min_batch : a->max_batch < 2 ? a->max_batch : 2;
}

static int unet_probe(sdm_engine *e, sdm_error *err)
{
    const sdm_bundle *b = &e->bundle;
    const sdm_aoti_build *a = &b->unet_aoti;
    int n = probe_batch(a), rc = -1;
    int64_t xs[4] = { n, b->latent_channels, a->latent_h, a->latent_w };
    int64_t es[3] = { n, b->token_length, sdm_bundle_context_size(b) }, ts[1] = { n };
    float *tv = malloc(sizeof *tv * n);
    sdm_tensor *x = NULL, *emb = NULL, *t = NULL, *pooled = NULL, *tids = NULL;
    sdm_module *torchscript;
    sdm_torch_status st;

    if (!tv) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < n; i++)
        tv[i] = i % 2 ? 21.0f : 981.0f;
    st = sdm_tensor_randn(1, xs, 4, e->dev, &x);
    if (!st)
        st = sdm_tensor_randn(2, es, 3, e->dev, &emb);
    if (!st)
        st = sdm_tensor_from_host(tv, SDM_F32, ts, 1, e->dev, &t);
    if (!st)
        st = xl_inputs(e, n, &pooled, &tids);
    if (st) {
        sdm_torch_error(err, st, "checking the AOTInductor UNet");
        goto end;
    }
    if (ts_unet(e, &torchscript, err))
        goto end;
    {
        sdm_tensor *args[5] = { x, t, emb, pooled, tids };
        rc = aoti_agree(e, e->dtype, torchscript, b->unet, e->unet_aoti, a->path, a->fp8 != SDM_FP8_NONE, args,
                        pooled ? 5 : 3, xs, err);
    }
end:
    free(tv);
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&t);
    sdm_tensor_free(&pooled);
    sdm_tensor_free(&tids);
    return rc;
}

static int vae_probe(sdm_engine *e, sdm_error *err)
{
    const sdm_bundle *b = &e->bundle;
    const sdm_aoti_build *a = &b->vae_aoti;
    int n = probe_batch(a), rc;
    int64_t zs[4] = { n, b->latent_channels, a->latent_h, a->latent_w };
    int64_t want[4] = { n, 3, (int64_t)a->latent_h * b->vae_scale, (int64_t)a->latent_w * b->vae_scale };
    sdm_tensor *z = NULL;
    sdm_torch_status st = sdm_tensor_randn(3, zs, 4, e->dev, &z);

    if (st)
        return sdm_torch_error(err, st, "checking the AOTInductor VAE decoder");
    rc = aoti_agree(e, e->vae_dtype, e->vae, b->vae_decoder, e->vae_aoti, a->path, 0, &z, 1, want, err);
    sdm_tensor_free(&z);
    return rc;
}

/* Loads one AOTInductor build and probes it; a warning and NULL where that
 * fails. */
static void aoti_load(sdm_engine *e, const char *what, const sdm_aoti_build *a, sdm_module **m,
                      int (*probe)(sdm_engine *, sdm_error *), double *seconds)
{
    sdm_error err = { 0 };
    double t = 0;
    int bad;

    if (*m || !a->path[0])
        return;
    lap(&t, NULL);
    bad = load_module(a->path, e->dev, m, &err) || probe(e, &err);
    lap(&t, seconds);
    if (bad) {
        sdm_warn("%s; the TorchScript %s is used", err.msg, what);
        sdm_module_free(m);
        return;
    }
    sdm_info("%s: %s (AOTInductor%s%s%s) for %dx%d latents, %d to %d per call; TorchScript otherwise", what, a->path,
             a->fp8 ? ", FP8 products with " : "", a->fp8 ? sdm_fp8_scales_name(a->fp8) : "", a->fp8 ? " scales" : "",
             a->latent_w, a->latent_h, a->min_batch, a->max_batch);
}

void sdm_engine_set_aoti(sdm_engine *e, int on)
{
    const sdm_bundle *b = &e->bundle;

    if (!on || e->dev.type != SDM_DEVICE_CUDA) {
        sdm_module_free(&e->unet_aoti);
        sdm_module_free(&e->vae_aoti);
        return;
    }
    if (!sdm_aoti_available()) {
        if (b->unet_aoti.path[0] || b->vae_aoti.path[0])
            sdm_warn(
                "%s: this build cannot load AOTInductor packages (torch >= 2.6 with CUDA): the TorchScript "
                "modules are used",
                b->unet_aoti.path[0] ? b->unet_aoti.path : b->vae_aoti.path);
        return;
    }
    aoti_load(e, "UNet", &b->unet_aoti, &e->unet_aoti, unet_probe, &e->loading.aoti_unet);
    aoti_load(e, "VAE decoder", &b->vae_aoti, &e->vae_aoti, vae_probe, &e->loading.aoti_vae);
}

static int call_f32(sdm_engine *e, sdm_module *m, sdm_tensor *const *args, int nargs, sdm_tensor **out,
                    const char *what, sdm_error *err)
{
    return call_as(e, e->dtype, m, args, nargs, out, what, err);
}

/* Runs a module on one input, casting to dtype (the module's) and the result back to float32. */
static int call_as(sdm_engine *e, sdm_dtype dtype, sdm_module *m, sdm_tensor *const *args, int nargs, sdm_tensor **out,
                   const char *what, sdm_error *err)
{
    sdm_tensor *cast[MODULE_MAX_ARGS] = { NULL }, *res = NULL;
    sdm_torch_status st = SDM_TORCH_OK;
    int rc = -1;

    /* Activations go to the model's dtype; timesteps ([B]) stay float32,
     * as the modules were traced with them (fp16 would round t > 2048). */
    for (int i = 0; i < nargs && !st; i++) {
        if (sdm_tensor_dtype(args[i]) == SDM_F32 && dtype != SDM_F32 && sdm_tensor_ndim(args[i]) > 1)
            st = sdm_tensor_to(args[i], e->dev, dtype, &cast[i]);
    }
    if (!st) {
        sdm_tensor *use[MODULE_MAX_ARGS];
        for (int i = 0; i < nargs; i++)
            use[i] = cast[i] ? cast[i] : args[i];
        st = sdm_module_call(m, NULL, use, nargs, &res);
    }
    if (!st && sdm_tensor_dtype(res) != SDM_F32) {
        sdm_tensor *f = NULL;
        st = sdm_tensor_to(res, e->dev, SDM_F32, &f);
        sdm_tensor_free(&res);
        res = f;
    }
    if (st) {
        sdm_torch_error(err, st, what);
        goto end;
    }
    *out = res;
    res = NULL;
    rc = 0;
end:
    for (int i = 0; i < MODULE_MAX_ARGS; i++)
        sdm_tensor_free(&cast[i]);
    sdm_tensor_free(&res);
    return rc;
}

int sdm_engine_embed_opts(sdm_engine *e, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                          sdm_error *err)
{
    return sdm_text_encoder_embed(e->text, prompt, o, out, err);
}

int sdm_engine_embed_pooled(sdm_engine *e, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                            const sdm_tensor **pooled, sdm_error *err)
{
    return sdm_text_encoder_embed_pooled(e->text, prompt, o, out, pooled, err);
}

int sdm_engine_embed(sdm_engine *e, const char *prompt, const sdm_tensor **out, sdm_error *err)
{
    const sdm_text_opts o = { 1, 1, 1 };

    return sdm_text_encoder_embed(e->text, prompt, &o, out, err);
}

sdm_text_encoder *sdm_engine_text(sdm_engine *e)
{
    return e->text;
}

void sdm_engine_release_text(sdm_engine *e)
{
    sdm_text_encoder_release(e->text);
    sdm_device_release_cached(e->dev); /* best effort: a measure of free memory, not a need */
}

int sdm_engine_unet_call(void *engine, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err)
{
    sdm_engine *e = engine;
    sdm_module *m;

    if (unet_for(e, args[0], args[2], &m, err))
        return -1;
    return call_f32(e, m, args, sdm_engine_unet_args(e), out, "UNet", err);
}

int sdm_decode_chunk(int latent_h, int latent_w, int elem_bytes)
{
    int64_t per_frame = (int64_t)latent_h * latent_w * elem_bytes;
    int64_t n = per_frame > 0 ? (int64_t)SDM_DECODE_CHUNK * 64 * 64 * 2 / per_frame : SDM_DECODE_CHUNK;

    return n < 1 ? 1 : n > SDM_DECODE_CHUNK ? SDM_DECODE_CHUNK : (int)n;
}

int sdm_batch_for_memory(double free_bytes, int xl, int width, int height)
{
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    double pixels = (double)width * height, budget = 0.7 * free_bytes, per_frame, fixed = 0;
    int b;

    if (xl) {
        per_frame = 0.64 * GiB * pixels / (1024.0 * 1024.0);
        fixed = 6.0 * GiB * pixels / (1024.0 * 1024.0);
    } else {
        per_frame = 1.2e9 * pixels / (512.0 * 512.0);
    }
    b = budget > fixed ? (int)((budget - fixed) / per_frame) : 0;
    return b < 1 ? 1 : b > 16 ? 16 : b;
}

static int engine_decode_chunk(const sdm_engine *e, int64_t latent_h, int64_t latent_w)
{
    return sdm_decode_chunk((int)latent_h, (int)latent_w, e->vae_dtype == SDM_F16 ? 2 : 4);
}

int sdm_engine_warmup(sdm_engine *e, int batch, int latent_h, int latent_w, int guided, int tokens, sdm_error *err)
{
    int n = guided ? 2 * batch : batch, chunk = engine_decode_chunk(e, latent_h, latent_w), rc = -1;
    int64_t xs[4] = { n, e->bundle.latent_channels, latent_h, latent_w };
    int64_t es[3] = { n, tokens, sdm_bundle_context_size(&e->bundle) }, ts[1] = { n };
    sdm_tensor *x = NULL, *emb = NULL, *t = NULL, *out = NULL, *zs = NULL, *rgb = NULL, *pooled = NULL, *tids = NULL;
    sdm_torch_status st;

    if (e->dev.type == SDM_DEVICE_CPU)
        return 0;
    st = sdm_tensor_zeros(SDM_F32, xs, 4, e->dev, &x);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, es, 3, e->dev, &emb);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, ts, 1, e->dev, &t);
    e->decode_rows = 0; /* the warm-up's own decode runs at its size */
    if (!st)
        st = sdm_tensor_narrow(x, 0, batch < chunk ? batch : chunk, &zs);
    if (!st)
        st = xl_inputs(e, n, &pooled, &tids);
    if (st) {
        sdm_torch_error(err, st, "warm-up");
        goto end;
    }
    /* TorchScript profiles its first runs of a shape and then settles on an
     * optimized graph: that is the one a capture must record. (The text
     * encoder settled as it loaded: text_encoder.c.) */
    for (int i = 0; i < 3; i++) {
        sdm_tensor *args[5] = { x, t, emb, pooled, tids };
        if (sdm_engine_unet_call(e, args, &out, err))
            goto end;
        sdm_tensor_free(&out);
        if (i < 2 && sdm_engine_decode(e, zs, &rgb, err))
            goto end;
        sdm_tensor_free(&rgb);
    }
    e->decode_rows = (int)sdm_tensor_dim(zs, 0);
    rc = 0;
end:
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&t);
    sdm_tensor_free(&out);
    sdm_tensor_free(&zs);
    sdm_tensor_free(&rgb);
    sdm_tensor_free(&pooled);
    sdm_tensor_free(&tids);
    return rc;
}

/* Latents scaled for the VAE, padded with zero rows up to the warmed call
 * size: a render's last batch is often smaller, and at a shape the VAE
 * never ran TorchScript profiles again and an AOTInductor package built for
 * one batch size falls back to TorchScript, seconds of first calls for a
 * few frames. The padding costs a few decodes; its rows are dropped. */
static sdm_torch_status decode_input(const sdm_engine *e, const sdm_tensor *latents, sdm_tensor **z)
{
    int64_t n = sdm_tensor_dim(latents, 0), shape[4];
    sdm_tensor *scaled = NULL;
    sdm_torch_status st = sdm_tensor_axpby(1.0 / e->bundle.scaling_factor, latents, 0, NULL, &scaled);

    if (st || n >= e->decode_rows) {
        *z = scaled;
        return st;
    }
    for (int i = 0; i < 4; i++)
        shape[i] = sdm_tensor_dim(scaled, i);
    shape[0] = e->decode_rows;
    st = sdm_tensor_zeros(sdm_tensor_dtype(scaled), shape, 4, e->dev, z);
    if (!st)
        st = sdm_tensor_copy_rows_(*z, 0, scaled, 0, n);
    sdm_tensor_free(&scaled);
    return st;
}

static int decode_chunk(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err)
{
    sdm_tensor *z = NULL, *img = NULL, *all = NULL;
    int64_t n = sdm_tensor_dim(latents, 0);
    sdm_torch_status st;
    int rc = -1;

    st = decode_input(e, latents, &z);
    if (st) {
        sdm_torch_error(err, st, "VAE decode");
        goto end;
    }
    if (call_as(e, e->vae_dtype, vae_for(e, z), &z, 1, &img, "VAE decoder", err)) {
        /* padded out of memory: the render halves its batch and decodes
         * again, unpadded from now on (padding would ask for the same memory) */
        if (err->out_of_memory && sdm_tensor_dim(z, 0) > n)
            e->decode_rows = 0;
        goto end;
    }
    st = sdm_tensor_to_rgb8(img, &all);
    if (!st && sdm_tensor_dim(all, 0) == n) {
        *rgb = all;
        all = NULL;
    } else if (!st) {
        st = sdm_tensor_narrow(all, 0, n, rgb);
    }
    if (st) {
        sdm_torch_error(err, st, "VAE decode");
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&z);
    sdm_tensor_free(&img);
    sdm_tensor_free(&all);
    return rc;
}

int sdm_engine_decode(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err)
{
    int64_t B = sdm_tensor_dim(latents, 0);
    int chunk = engine_decode_chunk(e, sdm_tensor_dim(latents, 2), sdm_tensor_dim(latents, 3));
    int n = (int)((B + chunk - 1) / chunk), rc = -1;
    sdm_tensor **parts = NULL, *part = NULL;
    sdm_torch_status st;

    *rgb = NULL;
    if (n <= 1)
        return decode_chunk(e, latents, rgb, err);
    parts = calloc(n, sizeof *parts);
    if (!parts) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < n; i++) {
        int64_t first = (int64_t)i * chunk, len = B - first < chunk ? B - first : chunk;
        st = sdm_tensor_narrow(latents, first, len, &part);
        if (st) {
            sdm_torch_error(err, st, "VAE decode");
            goto end;
        }
        if (decode_chunk(e, part, &parts[i], err))
            goto end;
        sdm_tensor_free(&part);
    }
    st = sdm_tensor_cat(parts, n, rgb);
    if (st) {
        sdm_torch_error(err, st, "VAE decode");
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&part);
    for (int i = 0; parts && i < n; i++)
        sdm_tensor_free(&parts[i]);
    free(parts);
    return rc;
}

void sdm_engine_free(sdm_engine **pe)
{
    sdm_engine *e = pe ? *pe : NULL;

    if (!e)
        return;
    sdm_text_encoder_free(&e->text);
    sdm_module_free(&e->unet);
    sdm_module_free(&e->unet_aoti);
    sdm_module_free(&e->vae_aoti);
    sdm_module_free(&e->vae);
    sdm_tokenizer_free(&e->tok);
    free(e);
    *pe = NULL;
}
