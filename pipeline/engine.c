#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    char *prompt;
    sdm_tensor *emb;
} embed_entry;

/* What the step loop reads, all on the device before it starts, so the
 * loop itself copies nothing from the host (and can be captured). */
typedef struct {
    sdm_tensor *x;          /* [B,C,h,w] float32 starting latent */
    sdm_tensor *emb;        /* [n,L,H] in the model's dtype; uncond first when guided */
    sdm_tensor *g;          /* [B] guidance scales (guided only) */
    sdm_tensor **t;         /* per step: [n] timesteps */
    sdm_tensor **noise;     /* per step: [B,C,h,w] or NULL where none is added */
    int n_steps;
} step_inputs;

/* The whole sampling loop of one batch shape, captured as a CUDA graph:
 * its inputs are static buffers, refilled before every replay. */
typedef struct {
    int B, h, w, guided;
    uint64_t schedule;      /* fingerprint of the schedule it was captured with */
    step_inputs in;
    sdm_graph *graph;
    sdm_tensor *out;        /* static: every replay overwrites it */
} loop_graph;

struct sdm_engine {
    sdm_bundle bundle;
    int use_graphs;
    loop_graph loop;
    sdm_device dev;
    sdm_dtype dtype;                /* what the modules compute in */
    sdm_tokenizer *tok;
    sdm_module *text_encoder, *unet, *vae;
    sdm_module *unet_aoti;          /* the bundle's AOTInductor UNet, where loaded */
    embed_entry *embeds;
    int n_embeds, cap_embeds;
};

int sdm_engine_torch_error(sdm_error *err, sdm_torch_status st, const char *what)
{
    if (st == SDM_TORCH_OOM) {
        if (err && !err->code)
            err->out_of_memory = 1;
        return sdm_error_set(err, SDM_EXIT_RUNTIME,
                             "out of device memory during %s; lower --batch (or width/height) and try again (%s)",
                             what, sdm_torch_last_error());
    }
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s failed: %s", what, sdm_torch_last_error());
}

static int load_module(const char *path, sdm_device dev, sdm_module **m, sdm_error *err)
{
    sdm_torch_status st = sdm_module_load(path, dev, m);
    if (st)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot load model file %s: %s", path,
                             sdm_torch_last_error());
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
    snprintf(err->msg + n, sizeof err->msg - n, " -- does it fit %s/model.yaml (latent_channels %d, "
             "token_length %d, hidden_size %d, vae_scale %d)?", b->dir, b->latent_channels, b->token_length,
             b->hidden_size, b->vae_scale);
    return -1;
}

static int check_modules(sdm_engine *e, sdm_error *err)
{
    const sdm_bundle *b = &e->bundle;
    int64_t ids_shape[2] = { 1, b->token_length }, x_shape[4] = { 1, b->latent_channels, 8, 8 }, t_shape[1] = { 1 };
    int64_t *ids = calloc(b->token_length, sizeof *ids);
    float t = 1.0f;
    sdm_tensor *t_ids = NULL, *emb = NULL, *x = NULL, *tt = NULL, *eps = NULL, *img = NULL;
    char got[96];
    int rc = -1;

    if (!ids) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < b->token_length; i++)
        ids[i] = i == 0 ? b->bos_id : b->eos_id;
    if (sdm_tensor_from_host(ids, SDM_I64, ids_shape, 2, e->dev, &t_ids) ||
        sdm_tensor_zeros(SDM_F32, x_shape, 4, e->dev, &x) || sdm_tensor_from_host(&t, SDM_F32, t_shape, 1, e->dev, &tt)) {
        sdm_engine_torch_error(err, SDM_TORCH_ERROR, "checking the model");
        goto end;
    }
    if (call_f32(e, e->text_encoder, &t_ids, 1, &emb, b->text_encoder, err)) {
        module_misfit(b, err);
        goto end;
    }
    if (sdm_tensor_ndim(emb) != 3 || sdm_tensor_dim(emb, 1) != b->token_length ||
        sdm_tensor_dim(emb, 2) != b->hidden_size) {
        shape_str(emb, got, sizeof got);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s gives %s for one prompt, but %s/model.yaml says [1,%d,%d] "
                      "(token_length, hidden_size)", b->text_encoder, got, b->dir, b->token_length, b->hidden_size);
        goto end;
    }
    {
        sdm_tensor *args[3] = { x, tt, emb };
        if (call_f32(e, e->unet, args, 3, &eps, b->unet, err)) {
            module_misfit(b, err);
            goto end;
        }
    }
    if (sdm_tensor_ndim(eps) != 4 || sdm_tensor_dim(eps, 0) != 1 || sdm_tensor_dim(eps, 1) != b->latent_channels ||
        sdm_tensor_dim(eps, 2) != 8 || sdm_tensor_dim(eps, 3) != 8) {
        shape_str(eps, got, sizeof got);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s gives %s for a [1,%d,8,8] latent; it must give the same shape "
                      "(latent_channels in %s/model.yaml)", b->unet, got, b->latent_channels, b->dir);
        goto end;
    }
    if (call_f32(e, e->vae, &x, 1, &img, b->vae_decoder, err)) {
        module_misfit(b, err);
        goto end;
    }
    if (sdm_tensor_ndim(img) != 4 || sdm_tensor_dim(img, 1) != 3 || sdm_tensor_dim(img, 2) != 8 * b->vae_scale ||
        sdm_tensor_dim(img, 3) != 8 * b->vae_scale) {
        shape_str(img, got, sizeof got);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s gives %s for a [1,%d,8,8] latent; expected [1,3,%d,%d] "
                      "(vae_scale %d in %s/model.yaml)", b->vae_decoder, got, b->latent_channels, 8 * b->vae_scale,
                      8 * b->vae_scale, b->vae_scale, b->dir);
        goto end;
    }
    rc = 0;
end:
    free(ids);
    sdm_tensor_free(&t_ids);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&x);
    sdm_tensor_free(&tt);
    sdm_tensor_free(&eps);
    sdm_tensor_free(&img);
    return rc;
}

int sdm_engine_open(const char *model_dir, sdm_device dev, sdm_engine **out, sdm_error *err)
{
    sdm_engine *e = calloc(1, sizeof *e);
    sdm_tokenizer_params tp = sdm_tokenizer_default_params();
    int rc = -1;

    *out = NULL;
    if (!e) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    e->dev = dev;
    if (sdm_bundle_load(model_dir, &e->bundle, err))
        goto end;
    if (sdm_dtype_from_str(e->bundle.dtype, &e->dtype)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s/model.yaml: dtype '%s' is not float32 or float16",
                      model_dir, e->bundle.dtype);
        goto end;
    }
    if (e->dtype == SDM_F16 && dev.type == SDM_DEVICE_CPU) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s holds float16 modules, which need a CUDA device; export with --dtype float32 for the CPU",
                      model_dir);
        goto end;
    }
    sdm_torch_set_tf32(e->dtype != SDM_F32);
    tp.token_length = e->bundle.token_length;
    tp.pad_id = e->bundle.pad_id;
    if (sdm_tokenizer_load(e->bundle.vocab, e->bundle.merges, tp, &e->tok, err))
        goto end;
    if (load_module(e->bundle.text_encoder, dev, &e->text_encoder, err) ||
        load_module(e->bundle.unet, dev, &e->unet, err) ||
        load_module(e->bundle.vae_decoder, dev, &e->vae, err))
        goto end;
    if (check_modules(e, err))
        goto end;
    rc = 0;
end:
    if (rc)
        sdm_engine_free(&e);
    *out = e;
    return rc;
}

const sdm_bundle *sdm_engine_bundle(const sdm_engine *e)
{
    return &e->bundle;
}

sdm_device sdm_engine_device(const sdm_engine *e)
{
    return e->dev;
}

const sdm_tokenizer *sdm_engine_tokenizer(const sdm_engine *e)
{
    return e->tok;
}

sdm_module *sdm_engine_unet(sdm_engine *e)
{
    return e->unet;
}

int sdm_engine_uses_aoti(const sdm_engine *e, int n, int latent_h, int latent_w)
{
    const sdm_bundle *b = &e->bundle;
    return e->unet_aoti && latent_h == b->aoti_latent_h && latent_w == b->aoti_latent_w &&
           n >= b->aoti_min_batch && n <= b->aoti_max_batch;
}

/* The UNet for a call on n latents of h×w: the AOTInductor one where it
 * was compiled for that shape (it checks no shapes itself), else TorchScript. */
static sdm_module *unet_for(sdm_engine *e, int n, int h, int w)
{
    return sdm_engine_uses_aoti(e, n, h, w) ? e->unet_aoti : e->unet;
}

/* The package and the TorchScript UNet on one seeded input: a package
 * compiled from other weights (a stale unet.pt2) or for other shapes than
 * model.yaml says fails here. Loose bounds: the export checked precision. */
static int aoti_probe(sdm_engine *e, sdm_error *err)
{
    const sdm_bundle *b = &e->bundle;
    int n = b->aoti_min_batch > 2 ? b->aoti_min_batch : b->aoti_max_batch < 2 ? b->aoti_max_batch : 2;
    int64_t xs[4] = { n, b->latent_channels, b->aoti_latent_h, b->aoti_latent_w };
    int64_t es[3] = { n, b->token_length, b->hidden_size }, ts[1] = { n };
    float *tv = malloc(sizeof *tv * n);
    sdm_tensor *x = NULL, *emb = NULL, *t = NULL, *ref = NULL, *got = NULL, *zero = NULL;
    double diff = 0, scale = 0, tol = e->dtype == SDM_F32 ? 1e-2 : 5e-2;
    sdm_torch_status st;
    int rc = -1;

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
    if (st) {
        sdm_engine_torch_error(err, st, "checking the AOTInductor UNet");
        goto end;
    }
    {
        sdm_tensor *args[3] = { x, t, emb };
        if (call_f32(e, e->unet, args, 3, &ref, b->unet, err) || call_f32(e, e->unet_aoti, args, 3, &got, b->unet_aoti, err))
            goto end;
    }
    if (sdm_tensor_ndim(got) != 4 || sdm_tensor_dim(got, 0) != n || sdm_tensor_dim(got, 1) != b->latent_channels ||
        sdm_tensor_dim(got, 2) != b->aoti_latent_h || sdm_tensor_dim(got, 3) != b->aoti_latent_w) {
        char got_s[96];
        shape_str(got, got_s, sizeof got_s);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s gives %s for [%d,%d,%d,%d] latents", b->unet_aoti, got_s, n,
                      b->latent_channels, b->aoti_latent_h, b->aoti_latent_w);
        goto end;
    }
    st = sdm_tensor_max_abs_diff(got, ref, &diff);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, xs, 4, e->dev, &zero);
    if (!st)
        st = sdm_tensor_max_abs_diff(ref, zero, &scale);
    if (st) {
        sdm_engine_torch_error(err, st, "checking the AOTInductor UNet");
        goto end;
    }
    if (!(diff <= tol * (scale > 1 ? scale : 1))) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s differs from %s by up to %.3g (outputs up to %.3g): made from "
                      "other weights? Export it again with export_sd.py --aoti", b->unet_aoti, b->unet, diff, scale);
        goto end;
    }
    rc = 0;
end:
    free(tv);
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&t);
    sdm_tensor_free(&ref);
    sdm_tensor_free(&got);
    sdm_tensor_free(&zero);
    return rc;
}

static void loop_graph_clear(loop_graph *lg);

void sdm_engine_set_aoti(sdm_engine *e, int on)
{
    const sdm_bundle *b = &e->bundle;
    sdm_error err = { 0 };

    if (!on || !b->unet_aoti[0] || e->dev.type != SDM_DEVICE_CUDA) {
        /* a loop captured from the package uses its buffers: it goes first */
        if (e->unet_aoti)
            loop_graph_clear(&e->loop);
        sdm_module_free(&e->unet_aoti);
        return;
    }
    if (e->unet_aoti)
        return;
    if (!sdm_aoti_available()) {
        sdm_warn("%s: this build cannot load AOTInductor packages (torch >= 2.6 with CUDA): the TorchScript "
                 "UNet is used", b->unet_aoti);
        return;
    }
    if (load_module(b->unet_aoti, e->dev, &e->unet_aoti, &err) || aoti_probe(e, &err)) {
        sdm_warn("%s; the TorchScript UNet is used", err.msg);
        sdm_module_free(&e->unet_aoti);
        return;
    }
    sdm_info("UNet: %s (AOTInductor) for %dx%d latents, %d to %d per call; TorchScript otherwise", b->unet_aoti,
             b->aoti_latent_w, b->aoti_latent_h, b->aoti_min_batch, b->aoti_max_batch);
}

/* Runs a module on one input, casting to its dtype and the result back to float32. */
static int call_f32(sdm_engine *e, sdm_module *m, sdm_tensor *const *args, int nargs, sdm_tensor **out,
                    const char *what, sdm_error *err)
{
    sdm_tensor *cast[4] = { NULL }, *res = NULL;
    sdm_torch_status st = SDM_TORCH_OK;
    int rc = -1;

    /* Activations go to the model's dtype; timesteps ([B]) stay float32,
     * as the modules were traced with them (fp16 would round t > 2048). */
    for (int i = 0; i < nargs && !st; i++) {
        if (sdm_tensor_dtype(args[i]) == SDM_F32 && e->dtype != SDM_F32 && sdm_tensor_ndim(args[i]) > 1)
            st = sdm_tensor_to(args[i], e->dev, e->dtype, &cast[i]);
    }
    if (!st) {
        sdm_tensor *use[4];
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
        sdm_engine_torch_error(err, st, what);
        goto end;
    }
    *out = res;
    res = NULL;
    rc = 0;
end:
    for (int i = 0; i < 4; i++)
        sdm_tensor_free(&cast[i]);
    sdm_tensor_free(&res);
    return rc;
}

int sdm_engine_embed(sdm_engine *e, const char *prompt, const sdm_tensor **out, sdm_error *err)
{
    int L = e->bundle.token_length, rc = -1;
    int64_t *ids = NULL, shape[2] = { 1, L };
    sdm_tensor *t_ids = NULL, *emb = NULL;
    sdm_tokenize_info info;
    sdm_torch_status st;

    for (int i = 0; i < e->n_embeds; i++) {
        if (!strcmp(e->embeds[i].prompt, prompt)) {
            *out = e->embeds[i].emb;
            return 0;
        }
    }
    ids = malloc(sizeof *ids * L);
    if (!ids) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    sdm_tokenizer_encode(e->tok, prompt, ids, &info);
    if (info.n_dropped > 0)
        sdm_warn("prompt \"%.60s%s\" is %d tokens, the model reads %d: dropped %d from \"%.60s\"", prompt,
                 strlen(prompt) > 60 ? "..." : "", info.n_tokens, L - 2, info.n_dropped,
                 info.dropped_at >= 0 ? prompt + info.dropped_at : "");
    st = sdm_tensor_from_host(ids, SDM_I64, shape, 2, e->dev, &t_ids);
    if (st) {
        sdm_engine_torch_error(err, st, "text encoding");
        goto end;
    }
    if (call_f32(e, e->text_encoder, &t_ids, 1, &emb, "text encoder", err))
        goto end;
    if (e->n_embeds == e->cap_embeds) {
        int cap = e->cap_embeds ? 2 * e->cap_embeds : 8;
        embed_entry *n = realloc(e->embeds, sizeof *n * cap);
        if (!n) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
            goto end;
        }
        e->embeds = n;
        e->cap_embeds = cap;
    }
    e->embeds[e->n_embeds].prompt = strdup(prompt);
    if (!e->embeds[e->n_embeds].prompt) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    e->embeds[e->n_embeds].emb = emb;
    *out = emb;
    emb = NULL;
    e->n_embeds++;
    rc = 0;
end:
    free(ids);
    sdm_tensor_free(&t_ids);
    sdm_tensor_free(&emb);
    return rc;
}

void sdm_engine_set_graphs(sdm_engine *e, int on)
{
    e->use_graphs = on && e->dev.type == SDM_DEVICE_CUDA && sdm_graphs_available();
}

static void step_inputs_clear(step_inputs *in)
{
    sdm_tensor_free(&in->x);
    sdm_tensor_free(&in->emb);
    sdm_tensor_free(&in->g);
    for (int i = 0; i < in->n_steps; i++) {
        if (in->t)
            sdm_tensor_free(&in->t[i]);
        if (in->noise)
            sdm_tensor_free(&in->noise[i]);
    }
    free(in->t);
    free(in->noise);
    memset(in, 0, sizeof *in);
}

static void loop_graph_clear(loop_graph *lg)
{
    sdm_graph_free(&lg->graph);
    sdm_tensor_free(&lg->out);
    step_inputs_clear(&lg->in);
    memset(lg, 0, sizeof *lg);
}

static uint64_t schedule_fingerprint(const sdm_schedule *s)
{
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)s->steps;

    for (size_t i = 0; i < sizeof *s->steps * (size_t)s->n_steps; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (h ^ (uint64_t)s->kind) * 1099511628211ull;
}

/* Puts one batch's inputs on the device: timesteps, guidance, embeddings in
 * the model's dtype, and every step's noise (drawn on the host with torch's
 * CPU generator, like the initial noise). */
static int inputs_make(sdm_engine *e, const sdm_schedule *s, const sdm_tensor *x, const sdm_tensor *cond,
                       const sdm_tensor *uncond, const double *g, sdm_step_noise_fn noise_fn, void *noise_user,
                       step_inputs *in, sdm_error *err)
{
    int B = (int)sdm_tensor_dim(x, 0), n = uncond ? 2 * B : B, rc = -1;
    int64_t tshape[1] = { n }, gshape[1] = { B };
    float *buf = malloc(sizeof *buf * n);
    sdm_torch_status st = SDM_TORCH_OK;

    memset(in, 0, sizeof *in);
    in->t = calloc(s->n_steps, sizeof *in->t);
    in->noise = calloc(s->n_steps, sizeof *in->noise);
    in->n_steps = s->n_steps;
    if (!buf || !in->t || !in->noise) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < s->n_steps && !st; i++) {
        for (int j = 0; j < n; j++)
            buf[j] = (float)s->steps[i].t;
        st = sdm_tensor_from_host(buf, SDM_F32, tshape, 1, e->dev, &in->t[i]);
    }
    if (!st && uncond) {
        for (int j = 0; j < B; j++)
            buf[j] = (float)g[j];
        st = sdm_tensor_from_host(buf, SDM_F32, gshape, 1, e->dev, &in->g);
    }
    if (!st)
        st = sdm_tensor_clone(x, &in->x);
    if (!st && uncond) {
        sdm_tensor *pair[2] = { (sdm_tensor *)uncond, (sdm_tensor *)cond };
        st = sdm_tensor_cat(pair, 2, &in->emb);
    } else if (!st) {
        st = sdm_tensor_clone(cond, &in->emb);
    }
    if (!st && e->dtype != SDM_F32) {
        sdm_tensor *cast = NULL;
        st = sdm_tensor_to(in->emb, e->dev, e->dtype, &cast);
        sdm_tensor_free(&in->emb);
        in->emb = cast;
    }
    if (st) {
        sdm_engine_torch_error(err, st, "sampling");
        goto end;
    }
    for (int i = 0; s->uses_noise && i < s->n_steps; i++) {
        if (s->steps[i].cnoise == 0)
            continue;
        if (!noise_fn) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: sampler %s needs per-step noise",
                          sdm_sampler_name(s->kind));
            goto end;
        }
        if (noise_fn(noise_user, i, &in->noise[i], err))
            goto end;
    }
    rc = 0;
end:
    free(buf);
    if (rc)
        step_inputs_clear(in);
    return rc;
}

/* The sampler loop over inputs already on the device. It only enqueues
 * device work (no host copies, no syncs), so it can run under a capture;
 * `stop` (NULL when captured) is polled between steps. */
static int run_steps(sdm_engine *e, const sdm_schedule *s, const step_inputs *in,
                     volatile sig_atomic_t *stop, sdm_tensor **out, sdm_error *err)
{
    int guided = in->g != NULL, rc = -1;
    sdm_tensor *cur = NULL, *xin = NULL, *xin2 = NULL, *res = NULL, *pred = NULL, *x0_prev = NULL, *x0 = NULL;
    sdm_torch_status st;

    *out = NULL;
    st = sdm_tensor_clone(in->x, &cur);
    if (st) {
        sdm_engine_torch_error(err, st, "sampling");
        goto end;
    }
    for (int i = 0; i < s->n_steps; i++) {
        const sdm_step *k = &s->steps[i];
        sdm_tensor *args[3];

        if (stop && *stop) {
            rc = 1;
            goto end;
        }
        st = sdm_tensor_axpby(k->c_in, cur, 0, NULL, &xin);
        if (!st && guided) {
            sdm_tensor *pair[2] = { xin, xin };
            st = sdm_tensor_cat(pair, 2, &xin2);
        }
        if (st) {
            sdm_engine_torch_error(err, st, "sampling");
            goto end;
        }
        args[0] = guided ? xin2 : xin;
        args[1] = in->t[i];
        args[2] = in->emb;
        if (call_f32(e, unet_for(e, (int)sdm_tensor_dim(args[0], 0), (int)sdm_tensor_dim(cur, 2),
                                 (int)sdm_tensor_dim(cur, 3)), args, 3, &res, "UNet", err))
            goto end;
        if (guided) {
            st = sdm_tensor_cfg(res, in->g, &pred);
            sdm_tensor_free(&res);
        } else {
            pred = res;
            res = NULL;
        }
        /* x_next = cx·x + cout·out (+ cprev·x0_prev + cnoise·noise) */
        if (!st && s->uses_prev)
            st = sdm_tensor_axpby(k->x0_x, cur, k->x0_out, pred, &x0);
        if (!st)
            st = sdm_tensor_axpby_(k->cout, pred, k->cx, cur);
        if (!st && s->uses_prev && x0_prev && k->cprev != 0)
            st = sdm_tensor_axpby_(k->cprev, x0_prev, 1.0, cur);
        if (!st && in->noise[i])
            st = sdm_tensor_axpby_(k->cnoise, in->noise[i], 1.0, cur);
        if (st) {
            sdm_engine_torch_error(err, st, "sampling");
            goto end;
        }
        if (x0) {
            sdm_tensor_free(&x0_prev);
            x0_prev = x0;
            x0 = NULL;
        }
        sdm_tensor_free(&xin);
        sdm_tensor_free(&xin2);
        sdm_tensor_free(&pred);
    }
    *out = cur;
    cur = NULL;
    rc = 0;
end:
    sdm_tensor_free(&cur);
    sdm_tensor_free(&xin);
    sdm_tensor_free(&xin2);
    sdm_tensor_free(&res);
    sdm_tensor_free(&pred);
    sdm_tensor_free(&x0_prev);
    sdm_tensor_free(&x0);
    return rc;
}

/* Captures the loop for the shape of `in` (which become its static
 * buffers). On failure graphs are switched off, with a warning, and the
 * render goes on step by step. */
static void loop_capture(sdm_engine *e, const sdm_schedule *s, step_inputs *in)
{
    loop_graph *lg = &e->loop;
    sdm_error cerr;

    loop_graph_clear(lg);
    memset(&cerr, 0, sizeof cerr);
    lg->in = *in;
    memset(in, 0, sizeof *in);
    if (sdm_capture_begin(e->dev, &lg->graph)) {
        sdm_warn("CUDA graphs off: %s", sdm_torch_last_error());
        goto fail;
    }
    if (run_steps(e, s, &lg->in, NULL, &lg->out, &cerr)) {
        sdm_graph_free(&lg->graph);
        sdm_warn("CUDA graphs off, the sampling loop could not be captured: %s", cerr.msg);
        goto fail;
    }
    if (sdm_capture_end(lg->graph)) {
        sdm_warn("CUDA graphs off, the sampling loop could not be captured: %s", sdm_torch_last_error());
        goto fail;
    }
    lg->B = (int)sdm_tensor_dim(lg->in.x, 0);
    lg->h = (int)sdm_tensor_dim(lg->in.x, 2);
    lg->w = (int)sdm_tensor_dim(lg->in.x, 3);
    lg->guided = lg->in.g != NULL;
    lg->schedule = schedule_fingerprint(s);
    return;
fail:
    loop_graph_clear(lg);
    e->use_graphs = 0;
}

static int loop_matches(const loop_graph *lg, const sdm_schedule *s, const step_inputs *in)
{
    if (!lg->graph || lg->B != sdm_tensor_dim(in->x, 0) || lg->h != sdm_tensor_dim(in->x, 2) ||
        lg->w != sdm_tensor_dim(in->x, 3) || lg->guided != (in->g != NULL) ||
        lg->schedule != schedule_fingerprint(s))
        return 0;
    for (int i = 0; i < s->n_steps; i++)
        if ((lg->in.noise[i] != NULL) != (in->noise[i] != NULL))
            return 0;
    return 1;
}

/* New values into the graph's static inputs, one replay, and a copy of
 * its output (the next replay overwrites it). */
static int loop_replay(sdm_engine *e, const step_inputs *in, sdm_tensor **out, sdm_error *err)
{
    loop_graph *lg = &e->loop;
    sdm_torch_status st;

    st = sdm_tensor_copy_(lg->in.x, in->x);
    if (!st)
        st = sdm_tensor_copy_(lg->in.emb, in->emb);
    if (!st && in->g)
        st = sdm_tensor_copy_(lg->in.g, in->g);
    for (int i = 0; i < in->n_steps && !st; i++)
        if (in->noise[i])
            st = sdm_tensor_copy_(lg->in.noise[i], in->noise[i]);
    if (!st)
        st = sdm_graph_replay(lg->graph);
    if (!st)
        st = sdm_tensor_clone(lg->out, out);
    if (st)
        return sdm_engine_torch_error(err, st, "sampling (CUDA graph)");
    return 0;
}

int sdm_engine_denoise(sdm_engine *e, const sdm_schedule *s, const sdm_tensor *x,
                       const sdm_tensor *cond, const sdm_tensor *uncond, const double *g,
                       sdm_step_noise_fn noise_fn, void *noise_user, volatile sig_atomic_t *stop,
                       sdm_tensor **out, sdm_error *err)
{
    step_inputs in;
    int rc;

    *out = NULL;
    if (inputs_make(e, s, x, cond, uncond, g, noise_fn, noise_user, &in, err))
        return -1;
    if (e->use_graphs && loop_matches(&e->loop, s, &in)) {
        rc = loop_replay(e, &in, out, err);
    } else {
        /* another shape (the last, smaller batch): its activations need the
         * memory the captured loop holds */
        loop_graph_clear(&e->loop);
        rc = run_steps(e, s, &in, stop, out, err);
    }
    step_inputs_clear(&in);
    return rc;
}

/* The warm-up's per-step noise: zeros of the latent's shape. */
static int zero_noise(void *user, int step, sdm_tensor **noise, sdm_error *err)
{
    const sdm_tensor *x = user;
    int64_t shape[4];
    sdm_torch_status st;

    for (int i = 0; i < 4; i++)
        shape[i] = sdm_tensor_dim(x, i);
    st = sdm_tensor_zeros(SDM_F32, shape, 4, sdm_tensor_device(x), noise);
    return st ? sdm_engine_torch_error(err, st, "warm-up") : 0;
}

/* Captures the sampling loop at the render's batch shape, on zero inputs
 * (the values do not matter to a capture), and replays it once: the first
 * replay of a graph pays for uploading it. */
static int warmup_capture(sdm_engine *e, const sdm_schedule *s, int batch, int h, int w, int guided,
                          sdm_error *err)
{
    int64_t xs[4] = { batch, e->bundle.latent_channels, h, w };
    int64_t es[3] = { batch, e->bundle.token_length, e->bundle.hidden_size };
    double *g = malloc(sizeof *g * batch);
    sdm_tensor *x = NULL, *emb = NULL;
    step_inputs in;
    sdm_torch_status st;
    int rc = -1;

    memset(&in, 0, sizeof in);
    if (!g) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < batch; i++)
        g[i] = 1.0;
    st = sdm_tensor_zeros(SDM_F32, xs, 4, e->dev, &x);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, es, 3, e->dev, &emb);
    if (st) {
        sdm_engine_torch_error(err, st, "warm-up");
        goto end;
    }
    if (inputs_make(e, s, x, emb, guided ? emb : NULL, g, zero_noise, x, &in, err))
        goto end;
    loop_capture(e, s, &in);
    if (e->loop.graph) {
        st = sdm_graph_replay(e->loop.graph);
        if (st) {
            sdm_engine_torch_error(err, st, "warm-up (CUDA graph)");
            goto end;
        }
    }
    rc = 0;
end:
    free(g);
    step_inputs_clear(&in);
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    return rc;
}

int sdm_engine_warmup(sdm_engine *e, const sdm_schedule *s, int batch, int latent_h, int latent_w, int guided,
                      sdm_error *err)
{
    int n = guided ? 2 * batch : batch, rc = -1;
    int64_t xs[4] = { n, e->bundle.latent_channels, latent_h, latent_w };
    int64_t es[3] = { n, e->bundle.token_length, e->bundle.hidden_size }, ts[1] = { n };
    sdm_tensor *x = NULL, *emb = NULL, *t = NULL, *out = NULL, *zs = NULL, *rgb = NULL;
    sdm_torch_status st;

    if (e->dev.type == SDM_DEVICE_CPU)
        return 0;
    loop_graph_clear(&e->loop);
    st = sdm_tensor_zeros(SDM_F32, xs, 4, e->dev, &x);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, es, 3, e->dev, &emb);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, ts, 1, e->dev, &t);
    if (!st)
        st = sdm_tensor_narrow(x, 0, batch < SDM_DECODE_CHUNK ? batch : SDM_DECODE_CHUNK, &zs);
    if (st) {
        sdm_engine_torch_error(err, st, "warm-up");
        goto end;
    }
    /* TorchScript profiles its first runs of a shape and then settles on an
     * optimized graph: that is the one to capture */
    for (int i = 0; i < 3; i++) {
        sdm_tensor *args[3] = { x, t, emb };
        if (call_f32(e, unet_for(e, n, latent_h, latent_w), args, 3, &out, "UNet", err))
            goto end;
        sdm_tensor_free(&out);
        if (i < 2 && sdm_engine_decode(e, zs, &rgb, err))
            goto end;
        sdm_tensor_free(&rgb);
    }
    if (e->use_graphs && s) {
        if (warmup_capture(e, s, batch, latent_h, latent_w, guided, err))
            goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&t);
    sdm_tensor_free(&out);
    sdm_tensor_free(&zs);
    sdm_tensor_free(&rgb);
    return rc;
}

static int decode_chunk(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err)
{
    sdm_tensor *z = NULL, *img = NULL;
    sdm_torch_status st;
    int rc = -1;

    st = sdm_tensor_axpby(1.0 / e->bundle.scaling_factor, latents, 0, NULL, &z);
    if (st) {
        sdm_engine_torch_error(err, st, "VAE decode");
        goto end;
    }
    if (call_f32(e, e->vae, &z, 1, &img, "VAE decoder", err))
        goto end;
    st = sdm_tensor_to_rgb8(img, rgb);
    if (st) {
        sdm_engine_torch_error(err, st, "VAE decode");
        goto end;
    }
    rc = 0;
end:
    sdm_tensor_free(&z);
    sdm_tensor_free(&img);
    return rc;
}

int sdm_engine_decode(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err)
{
    int64_t B = sdm_tensor_dim(latents, 0);
    int n = (int)((B + SDM_DECODE_CHUNK - 1) / SDM_DECODE_CHUNK), rc = -1;
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
        int64_t first = (int64_t)i * SDM_DECODE_CHUNK, len = B - first < SDM_DECODE_CHUNK ? B - first : SDM_DECODE_CHUNK;
        st = sdm_tensor_narrow(latents, first, len, &part);
        if (st) {
            sdm_engine_torch_error(err, st, "VAE decode");
            goto end;
        }
        if (decode_chunk(e, part, &parts[i], err))
            goto end;
        sdm_tensor_free(&part);
    }
    st = sdm_tensor_cat(parts, n, rgb);
    if (st) {
        sdm_engine_torch_error(err, st, "VAE decode");
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
    for (int i = 0; i < e->n_embeds; i++) {
        free(e->embeds[i].prompt);
        sdm_tensor_free(&e->embeds[i].emb);
    }
    free(e->embeds);
    loop_graph_clear(&e->loop);
    sdm_module_free(&e->text_encoder);
    sdm_module_free(&e->unet);
    sdm_module_free(&e->unet_aoti);
    sdm_module_free(&e->vae);
    sdm_tokenizer_free(&e->tok);
    free(e);
    *pe = NULL;
}
