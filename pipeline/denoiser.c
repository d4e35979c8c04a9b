/* The sampling loop of one batch (denoiser.h). Every step's inputs go to
 * the device first; the steps then only enqueue device work, so the whole
 * loop of a batch shape can be captured once as a CUDA graph and replayed
 * for every batch of that shape. */
#include "denoiser.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "torch_error.h"

/* What the step loop reads, all on the device before it starts, so the
 * loop itself copies nothing from the host (and can be captured). */
typedef struct {
    sdm_tensor *x; /* [B,C,h,w] float32 starting latent */
    sdm_tensor *emb; /* [n,L,H] in the model's dtype; uncond first when guided */
    sdm_tensor *pooled; /* SDXL: [n,P] likewise; NULL */
    sdm_tensor *time_ids; /* SDXL: [n,6] likewise; NULL */
    sdm_tensor *g; /* [B] guidance scales (guided only) */
    sdm_tensor **t; /* per step: [n] timesteps */
    sdm_tensor **noise; /* per step: [B,C,h,w] or NULL where none is added */
    int n_steps;
    int first_step; /* the loop runs steps [first_step, n_steps) */
} step_inputs;

/* The whole sampling loop of one batch shape, captured as a CUDA graph:
 * its inputs are static buffers, refilled before every replay. */
typedef struct {
    int B, h, w, guided;
    uint64_t schedule; /* fingerprint of the schedule it was captured with */
    step_inputs in;
    sdm_graph *graph;
    sdm_tensor *out; /* static: every replay overwrites it */
} loop_graph;

struct sdm_denoiser {
    sdm_device dev;
    sdm_dtype dtype; /* the UNet's: embeddings are cast to it once */
    sdm_unet_fn unet;
    void *unet_user;
    double rescale; /* guidance_rescale */
    int pooled_size; /* SDXL's P: the UNet's added inputs; 0: none */
    int use_graphs;
    loop_graph graph;
};

static void loop_graph_clear(loop_graph *lg);

int sdm_denoiser_new(const sdm_denoiser_params *p, sdm_denoiser **out, sdm_error *err)
{
    sdm_denoiser *d = calloc(1, sizeof *d);

    *out = NULL;
    if (!d)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    d->dev = p->dev;
    d->dtype = p->dtype;
    d->unet = p->unet;
    d->unet_user = p->unet_user;
    d->rescale = p->guidance_rescale;
    d->pooled_size = p->pooled_size;
    *out = d;
    return 0;
}

void sdm_denoiser_set_graphs(sdm_denoiser *d, int on)
{
    d->use_graphs = on && d->dev.type == SDM_DEVICE_CUDA && sdm_graphs_available();
    if (!d->use_graphs)
        loop_graph_clear(&d->graph);
}

int sdm_denoiser_graphs(const sdm_denoiser *d)
{
    return d->use_graphs;
}

static void step_inputs_clear(step_inputs *in)
{
    sdm_tensor_free(&in->x);
    sdm_tensor_free(&in->emb);
    sdm_tensor_free(&in->pooled);
    sdm_tensor_free(&in->time_ids);
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
    uint64_t h = sdm_fnv1a64(SDM_FNV1A64_OFFSET, s->steps, sizeof *s->steps * (size_t)s->n_steps);
    return sdm_fnv1a64_word(h, (uint64_t)s->kind);
}

/* 1 where some frame of b is guided: then every frame runs guided. */
static int batch_guided(const sdm_batch *b, int B)
{
    for (int j = 0; j < B; j++)
        if (sdm_guided(b->guidance[j]))
            return 1;
    return 0;
}

/* SDXL's added inputs: all there (pooled [B,P], time ids [B,6], the
 * negative prompts' pooled where guided) where the UNet takes them, and
 * none where it does not. */
static int added_check(const sdm_denoiser *d, const sdm_batch *b, int B, int guided, sdm_error *err)
{
    const sdm_conditioning *c = &b->cond;

    if (!d->pooled_size) {
        if (c->pooled || c->uncond_pooled || c->time_ids)
            return sdm_error_set(err, SDM_EXIT_RUNTIME,
                                 "internal: pooled embeddings and time ids for a UNet "
                                 "that takes none");
        return 0;
    }
    if (!c->pooled || !c->time_ids || (guided && !c->uncond_pooled))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: an SDXL batch needs pooled embeddings and time ids");
    if (sdm_tensor_dim(c->pooled, 0) != B || sdm_tensor_dim(c->pooled, 1) != d->pooled_size ||
        sdm_tensor_dim(c->time_ids, 0) != B || sdm_tensor_dim(c->time_ids, 1) != 6 ||
        (guided && sdm_tensor_dim(c->uncond_pooled, 0) != B))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: pooled embeddings or time ids of the wrong shape");
    return 0;
}

/* What the loop cannot run: refused before anything goes on the device. */
static int batch_check(const sdm_denoiser *d, const sdm_schedule *s, const sdm_batch *b, sdm_error *err)
{
    const sdm_conditioning *c = &b->cond;
    int B;

    if (!b->latents || sdm_tensor_ndim(b->latents) != 4 || !c->cond || !b->guidance)
        return sdm_error_set(err, SDM_EXIT_RUNTIME,
                             "internal: a batch needs [B,C,h,w] latents, embeddings and "
                             "guidance");
    B = (int)sdm_tensor_dim(b->latents, 0);
    if (sdm_tensor_dim(c->cond, 0) != B || (c->uncond && sdm_tensor_dim(c->uncond, 0) != B))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: %d latents but %lld embeddings", B,
                             (long long)sdm_tensor_dim(c->cond, 0));
    if (batch_guided(b, B) && !c->uncond)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: a guided batch needs the negative prompts' embeddings");
    if (added_check(d, b, B, batch_guided(b, B), err))
        return -1;
    if (b->first_step < 0 || b->first_step >= s->n_steps)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: first step %d of a %d-step schedule", b->first_step,
                             s->n_steps);
    return 0;
}

/* One UNet input of the loop from the batch's conditional and negative
 * tensors: [uncond; cond] where guided, else cond, in the model's dtype. */
static sdm_torch_status paired(const sdm_denoiser *d, const sdm_tensor *cond, const sdm_tensor *uncond, int guided,
                               sdm_tensor **out)
{
    sdm_torch_status st;

    if (guided) {
        sdm_tensor *pair[2] = { (sdm_tensor *)uncond, (sdm_tensor *)cond };
        st = sdm_tensor_cat(pair, 2, out);
    } else {
        st = sdm_tensor_clone(cond, out);
    }
    if (!st && d->dtype != SDM_F32) {
        sdm_tensor *cast = NULL;
        st = sdm_tensor_to(*out, d->dev, d->dtype, &cast);
        sdm_tensor_free(out);
        *out = cast;
    }
    return st;
}

/* The starting latent, guidance scales [B] (guided only: every frame at
 * g > 1 or else 1) and the UNet's conditioning (negative prompts first
 * where guided) in the model's dtype, on the device. */
static sdm_torch_status inputs_tensors(sdm_denoiser *d, const sdm_schedule *s, const sdm_batch *b, int guided,
                                       float *buf, step_inputs *in)
{
    const sdm_conditioning *c = &b->cond;
    int B = (int)sdm_tensor_dim(b->latents, 0);
    int64_t gshape[1] = { B };
    sdm_torch_status st = SDM_TORCH_OK;

    if (guided) {
        for (int j = 0; j < B; j++)
            buf[j] = (float)(sdm_guided(b->guidance[j]) ? b->guidance[j] : 1.0);
        st = sdm_tensor_from_host(buf, SDM_F32, gshape, 1, d->dev, &in->g);
    }
    if (!st && b->first_step == 0)
        st = sdm_tensor_axpby(s->init_sigma, b->latents, 0, NULL, &in->x);
    else if (!st)
        st = sdm_tensor_clone(b->latents, &in->x);
    if (!st)
        st = paired(d, c->cond, c->uncond, guided, &in->emb);
    if (!st && c->pooled)
        st = paired(d, c->pooled, c->uncond_pooled, guided, &in->pooled);
    if (!st && c->time_ids)
        st = paired(d, c->time_ids, c->time_ids, guided, &in->time_ids);
    return st;
}

/* Whether evaluation k adds fresh noise (one that draws but adds none, the
 * last of euler_a, needs none). */
static int adds_noise(const sdm_step *k)
{
    return k->noise_draw >= 0 && k->next.noise != 0;
}

/* Puts one batch's inputs on the device: the tensors above and every
 * step's noise (drawn on the host with torch's CPU generator, like the
 * initial noise). The timesteps come apart, from timesteps_make: a
 * replayed graph has its own. */
static int inputs_make(sdm_denoiser *d, const sdm_schedule *s, const sdm_batch *b, step_inputs *in, sdm_error *err)
{
    int B = (int)sdm_tensor_dim(b->latents, 0), rc = -1;
    float *buf = malloc(sizeof *buf * B);
    sdm_torch_status st;

    memset(in, 0, sizeof *in);
    in->t = calloc(s->n_steps, sizeof *in->t);
    in->noise = calloc(s->n_steps, sizeof *in->noise);
    in->n_steps = s->n_steps;
    in->first_step = b->first_step;
    if (!buf || !in->t || !in->noise) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    st = inputs_tensors(d, s, b, batch_guided(b, B), buf, in);
    if (st) {
        sdm_torch_error(err, st, "sampling");
        goto end;
    }
    for (int i = b->first_step; s->uses_noise && i < s->n_steps; i++) {
        if (!adds_noise(&s->steps[i]))
            continue;
        if (!b->noise) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: sampler %s needs per-step noise",
                          sdm_sampler_name(s->kind));
            goto end;
        }
        if (b->noise(b->noise_user, s->steps[i].noise_draw, &in->noise[i], err))
            goto end;
    }
    rc = 0;
end:
    free(buf);
    if (rc)
        step_inputs_clear(in);
    return rc;
}

/* Every step's timestep on the device, one per UNet input. */
static int timesteps_make(sdm_denoiser *d, const sdm_schedule *s, step_inputs *in, sdm_error *err)
{
    int64_t n = sdm_tensor_dim(in->emb, 0);
    float *buf = malloc(sizeof *buf * n);
    sdm_torch_status st = SDM_TORCH_OK;

    if (!buf)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < s->n_steps && !st; i++) {
        for (int64_t j = 0; j < n; j++)
            buf[j] = (float)s->steps[i].t;
        st = sdm_tensor_from_host(buf, SDM_F32, &n, 1, d->dev, &in->t[i]);
    }
    free(buf);
    return st ? sdm_torch_error(err, st, "sampling") : 0;
}

/* The model's prediction at step k from latent cur: the UNet on c_in·cur
 * (twice over, negative prompts first, where guided), then classifier-free
 * guidance. */
static int predict(sdm_denoiser *d, const sdm_step *k, const sdm_tensor *t, const step_inputs *in,
                   const sdm_tensor *cur, sdm_tensor **pred, sdm_error *err)
{
    int guided = in->g != NULL, rc = -1;
    sdm_tensor *xin = NULL, *xin2 = NULL, *res = NULL, *args[5];
    sdm_torch_status st;

    st = sdm_tensor_axpby(k->c_in, cur, 0, NULL, &xin);
    if (!st && guided) {
        sdm_tensor *pair[2] = { xin, xin };
        st = sdm_tensor_cat(pair, 2, &xin2);
    }
    if (st) {
        sdm_torch_error(err, st, "sampling");
        goto end;
    }
    args[0] = guided ? xin2 : xin;
    args[1] = (sdm_tensor *)t;
    args[2] = in->emb;
    args[3] = in->pooled;
    args[4] = in->time_ids;
    if (d->unet(d->unet_user, args, &res, err))
        goto end;
    if (guided) {
        st = d->rescale > 0 ? sdm_tensor_cfg_rescale(res, in->g, d->rescale, pred) : sdm_tensor_cfg(res, in->g, pred);
        if (st) {
            sdm_torch_error(err, st, "sampling");
            goto end;
        }
    } else {
        *pred = res;
        res = NULL;
    }
    rc = 0;
end:
    sdm_tensor_free(&xin);
    sdm_tensor_free(&xin2);
    sdm_tensor_free(&res);
    return rc;
}

/* l·(x, out, slots) as a new tensor (sampler.h): its x and out terms in one
 * axpby, then the slots'; a pure slot copy starts from the slot. */
static sdm_torch_status lin_eval(const sdm_lin *l, const sdm_tensor *cur, const sdm_tensor *pred,
                                 sdm_tensor *const *slots, sdm_tensor **out)
{
    sdm_torch_status st = SDM_TORCH_OK;
    int j = 0;

    if (l->x != 0 || l->out != 0) {
        st = sdm_tensor_axpby(l->x, cur, l->out, pred, out);
    } else {
        while (j < SDM_SLOTS && (l->slot[j] == 0 || !slots[j]))
            j++;
        if (j == SDM_SLOTS)
            return sdm_tensor_axpby(0, cur, 0, NULL, out);
        st = sdm_tensor_axpby(l->slot[j], slots[j], 0, NULL, out);
        j++;
    }
    for (; !st && j < SDM_SLOTS; j++)
        if (l->slot[j] != 0 && slots[j])
            st = sdm_tensor_axpby_(l->slot[j], slots[j], 1.0, *out);
    return st;
}

/* The sampler's update of evaluation k, in place, from the model's
 * prediction: the slots it saves (from the values before it), then
 *     x   ← next.x·x + next.out·pred + Σ next.slot[j]·slot[j] + next.noise·noise
 * (sampler.h). The sampler math of the loop is all here. */
static sdm_torch_status step_update(const sdm_step *k, const sdm_tensor *pred, const sdm_tensor *noise, sdm_tensor *cur,
                                    sdm_tensor **slots)
{
    sdm_tensor *fresh[SDM_SLOTS] = { 0 };
    sdm_torch_status st = SDM_TORCH_OK;

    for (int j = 0; j < SDM_SLOTS && !st; j++)
        if (k->saves & (1u << j))
            st = lin_eval(&k->save[j], cur, pred, slots, &fresh[j]);
    if (!st)
        st = sdm_tensor_axpby_(k->next.out, pred, k->next.x, cur);
    for (int j = 0; j < SDM_SLOTS && !st; j++)
        if (k->next.slot[j] != 0 && slots[j])
            st = sdm_tensor_axpby_(k->next.slot[j], slots[j], 1.0, cur);
    if (!st && noise && k->next.noise != 0)
        st = sdm_tensor_axpby_(k->next.noise, noise, 1.0, cur);
    for (int j = 0; j < SDM_SLOTS; j++) {
        if (!fresh[j])
            continue;
        if (!st) {
            sdm_tensor_free(&slots[j]);
            slots[j] = fresh[j];
        } else {
            sdm_tensor_free(&fresh[j]);
        }
    }
    return st;
}

/* The sampler loop over inputs already on the device. It only enqueues
 * device work (no host copies, no syncs), so it can run under a capture;
 * `stop` (NULL when captured) is polled between steps. */
static int run_steps(sdm_denoiser *d, const sdm_schedule *s, const step_inputs *in, volatile sig_atomic_t *stop,
                     sdm_tensor **out, sdm_error *err)
{
    sdm_tensor *cur = NULL, *pred = NULL, *slots[SDM_SLOTS] = { 0 };
    sdm_torch_status st;
    int rc = -1;

    *out = NULL;
    st = sdm_tensor_clone(in->x, &cur);
    if (st) {
        sdm_torch_error(err, st, "sampling");
        goto end;
    }
    for (int i = in->first_step; i < s->n_steps; i++) {
        if (stop && *stop) {
            rc = 1;
            goto end;
        }
        if (predict(d, &s->steps[i], in->t[i], in, cur, &pred, err))
            goto end;
        st = step_update(&s->steps[i], pred, in->noise[i], cur, slots);
        if (st) {
            sdm_torch_error(err, st, "sampling");
            goto end;
        }
        sdm_tensor_free(&pred);
    }
    *out = cur;
    cur = NULL;
    rc = 0;
end:
    sdm_tensor_free(&cur);
    sdm_tensor_free(&pred);
    for (int j = 0; j < SDM_SLOTS; j++)
        sdm_tensor_free(&slots[j]);
    return rc;
}

/* Captures the loop for the shape of `in` (which become its static
 * buffers). On failure graphs are switched off, with a warning, and the
 * render goes on step by step. */
static void loop_capture(sdm_denoiser *d, const sdm_schedule *s, step_inputs *in)
{
    loop_graph *lg = &d->graph;
    sdm_error cerr;

    loop_graph_clear(lg);
    memset(&cerr, 0, sizeof cerr);
    lg->in = *in;
    memset(in, 0, sizeof *in);
    if (sdm_capture_begin(d->dev, &lg->graph)) {
        sdm_warn("CUDA graphs off: %s", sdm_torch_last_error());
        goto fail;
    }
    if (run_steps(d, s, &lg->in, NULL, &lg->out, &cerr)) {
        sdm_graph_free(&lg->graph);
        /* the captured loop has a memory pool of its own: it may not fit
         * where the steps one by one do */
        if (cerr.out_of_memory)
            sdm_warn(
                "CUDA graphs off: the captured sampling loop at %d frames per call does not fit in free "
                "device memory; going on step by step (a smaller --batch keeps graphs on)",
                (int)sdm_tensor_dim(lg->in.x, 0));
        else
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
    d->use_graphs = 0;
}

/* The captured loop runs batch `in` where everything but the batch size is
 * the captured one and the batch is no larger: a smaller batch (the last
 * one, one cut short by --frames or the de-duplication) fills the first
 * rows of the static buffers, and the rest are computed and dropped. That
 * costs a full batch's device time, far less than a loop run step by step
 * at a shape no module was warmed up or compiled for. */
static int loop_matches(const loop_graph *lg, const sdm_schedule *s, const step_inputs *in)
{
    if (!lg->graph || lg->B < sdm_tensor_dim(in->x, 0) || lg->h != sdm_tensor_dim(in->x, 2) ||
        lg->w != sdm_tensor_dim(in->x, 3) || lg->guided != (in->g != NULL) || lg->in.first_step != in->first_step ||
        lg->schedule != schedule_fingerprint(s))
        return 0;
    for (int i = 0; i < s->n_steps; i++)
        if ((lg->in.noise[i] != NULL) != (in->noise[i] != NULL))
            return 0;
    return 1;
}

/* A conditioning input's B frames into the first B rows of the graph's
 * static one; a guided loop's are [negatives; prompts], each lg->B rows. */
static sdm_torch_status fill_paired(const loop_graph *lg, sdm_tensor *dst, const sdm_tensor *src, int64_t B, int guided)
{
    sdm_torch_status st = SDM_TORCH_OK;

    if (!src)
        return st;
    st = sdm_tensor_copy_rows_(dst, 0, src, 0, B);
    if (!st && guided)
        st = sdm_tensor_copy_rows_(dst, lg->B, src, B, B);
    return st;
}

/* in's B frames into the first B rows of the graph's static inputs. */
static sdm_torch_status loop_fill(loop_graph *lg, const step_inputs *in)
{
    int64_t B = sdm_tensor_dim(in->x, 0);
    sdm_torch_status st;

    st = sdm_tensor_copy_rows_(lg->in.x, 0, in->x, 0, B);
    if (!st)
        st = fill_paired(lg, lg->in.emb, in->emb, B, in->g != NULL);
    if (!st)
        st = fill_paired(lg, lg->in.pooled, in->pooled, B, in->g != NULL);
    if (!st)
        st = fill_paired(lg, lg->in.time_ids, in->time_ids, B, in->g != NULL);
    if (!st && in->g)
        st = sdm_tensor_copy_rows_(lg->in.g, 0, in->g, 0, B);
    for (int i = 0; i < in->n_steps && !st; i++)
        if (in->noise[i])
            st = sdm_tensor_copy_rows_(lg->in.noise[i], 0, in->noise[i], 0, B);
    return st;
}

/* New values into the graph's static inputs, one replay, and a copy of
 * its output's first B rows (the next replay overwrites it). */
static int loop_replay(sdm_denoiser *d, const step_inputs *in, sdm_tensor **out, sdm_error *err)
{
    loop_graph *lg = &d->graph;
    sdm_torch_status st;

    st = loop_fill(lg, in);
    if (!st)
        st = sdm_graph_replay(lg->graph);
    if (!st)
        st = sdm_tensor_narrow(lg->out, 0, sdm_tensor_dim(in->x, 0), out);
    if (st)
        return sdm_torch_error(err, st, "sampling (CUDA graph)");
    return 0;
}

int sdm_denoiser_run(sdm_denoiser *d, const sdm_schedule *s, const sdm_batch *b, sdm_tensor **out, sdm_error *err)
{
    step_inputs in;
    int rc;

    *out = NULL;
    if (batch_check(d, s, b, err) || inputs_make(d, s, b, &in, err))
        return -1;
    if (d->use_graphs && loop_matches(&d->graph, s, &in)) {
        rc = loop_replay(d, &in, out, err);
    } else {
        /* another shape (larger, or another size or schedule): its
         * activations need the memory the captured loop holds */
        loop_graph_clear(&d->graph);
        rc = timesteps_make(d, s, &in, err);
        if (!rc)
            rc = run_steps(d, s, &in, b->stop, out, err);
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

    (void)step;
    for (int i = 0; i < 4; i++)
        shape[i] = sdm_tensor_dim(x, i);
    st = sdm_tensor_zeros(SDM_F32, shape, 4, sdm_tensor_device(x), noise);
    return st ? sdm_torch_error(err, st, "warm-up") : 0;
}

/* On zero inputs: the values do not matter to a capture (guided frames at
 * g = 2, any g > 1 would do). The graph is then uploaded, so the first
 * batch's replay costs what the others do (with libtorch before 2.6, by
 * running it once: a batch's work at the warm-up). */
int sdm_denoiser_capture(sdm_denoiser *d, const sdm_schedule *s, const int64_t latent[4], const int64_t text[3],
                         int guided, sdm_error *err)
{
    int batch = (int)latent[0];
    int64_t ps[2] = { batch, d->pooled_size }, ts[2] = { batch, 6 };
    double *g = malloc(sizeof *g * batch);
    sdm_tensor *x = NULL, *emb = NULL, *pooled = NULL, *tids = NULL;
    sdm_batch b;
    step_inputs in;
    sdm_torch_status st;
    int rc = -1;

    memset(&in, 0, sizeof in);
    memset(&b, 0, sizeof b);
    if (!g) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < batch; i++)
        g[i] = guided ? 2.0 : 1.0;
    st = sdm_tensor_zeros(SDM_F32, latent, 4, d->dev, &x);
    if (!st)
        st = sdm_tensor_zeros(SDM_F32, text, 3, d->dev, &emb);
    if (!st && d->pooled_size)
        st = sdm_tensor_zeros(SDM_F32, ps, 2, d->dev, &pooled);
    if (!st && d->pooled_size)
        st = sdm_tensor_zeros(SDM_F32, ts, 2, d->dev, &tids);
    if (st) {
        sdm_torch_error(err, st, "warm-up");
        goto end;
    }
    b.latents = x;
    b.cond.cond = emb;
    b.cond.uncond = guided ? emb : NULL;
    b.cond.pooled = pooled;
    b.cond.uncond_pooled = guided ? pooled : NULL;
    b.cond.time_ids = tids;
    b.guidance = g;
    b.noise = zero_noise;
    b.noise_user = x;
    if (inputs_make(d, s, &b, &in, err) || timesteps_make(d, s, &in, err))
        goto end;
    loop_capture(d, s, &in);
    if (d->graph.graph) {
        st = sdm_graph_upload(d->graph.graph, NULL);
        if (st) {
            sdm_torch_error(err, st, "warm-up (CUDA graph)");
            goto end;
        }
    }
    rc = 0;
end:
    free(g);
    step_inputs_clear(&in);
    sdm_tensor_free(&x);
    sdm_tensor_free(&emb);
    sdm_tensor_free(&pooled);
    sdm_tensor_free(&tids);
    return rc;
}

void sdm_denoiser_release(sdm_denoiser *d)
{
    if (d)
        loop_graph_clear(&d->graph);
}

void sdm_denoiser_free(sdm_denoiser **pd)
{
    if (!pd || !*pd)
        return;
    loop_graph_clear(&(*pd)->graph);
    free(*pd);
    *pd = NULL;
}
