#include "render.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "condition.h"
#include "denoiser.h"
#include "engine.h"
#include "frame_cache.h"
#include "outputs.h"
#include "preflight.h"
#include "render_hooks.h"
#include "retime.h"
#include "sampler.h"
#include "sink.h"
#include "torch_error.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A batch whose work is queued on the device: its frames arrive in host
 * memory while the next batch is being queued behind it. */
typedef struct {
    int first, nb;
    sdm_download *frames;
    sdm_tensor *latents; /* [nb,C,h,w]: what frames kept as latents are made from */
} batch_flight;

/* One render, from prepare to finish. */
typedef struct {
    const sdm_recipe *r;
    const sdm_render_params *p;
    sdm_render_stats *stats;
    sdm_preflight pf; /* what was checked before the model loads: outputs, size */
    sdm_fileset *files; /* the outputs and their sidecars, committed together */
    sdm_plan plan;
    sdm_engine *engine;
    sdm_denoiser *denoiser; /* the sampling loop, on the engine's UNet */
    sdm_schedule_set sched; /* from noise, and the image starts' */
    sdm_schedule_set probe_sched; /* the retiming probe's fewer steps (retime.h), while it is to run */
    int probing; /* probe_sched is made: the probe has not run yet */
    sdm_conditioner *cond;
    sdm_sink *sink;
    sdm_stills *stills; /* the PNG stills, written on workers */
    sdm_frame_cache *cache; /* renders shown again later */
    sdm_pace *pace; /* the pace of the frames shown (pace.h); NULL with --frames */
    int *rendered; /* per render: done */
    int width, height, latent_h, latent_w;
    size_t frame_bytes;
    int guided; /* some frame of the plan is guided */
    int batch; /* frames per call; halved on out of memory */
    int shown; /* output frames shown so far */
    int interrupted;
    double t0; /* when the current phase began: loading, then the loop */
    double last_report; /* when the last progress line was written */
    batch_flight flight, next; /* the batch landing, and the one queued behind it */
    const sdm_batch_source *source; /* a scheduler's (render_hooks.h), or NULL */
    int todo_first, todo_end; /* renders to do before asking for more */
    int own_engine; /* opened here (not lent by p->engine): freed here */
    char fingerprint[32]; /* the bundle's */
    char comment[1024]; /* stored in every output: version, recipe, model */
} render_state;

/* The bytes of the loaded TorchScript UNet that a render whose batches the
 * AOTInductor UNet takes lets go before its warm-up (render_prepare); about
 * its file's size. */
static double ts_unet_to_free(const render_state *S)
{
    if (!sdm_denoiser_graphs(S->denoiser) || !sdm_engine_unet_loaded(S->engine))
        return 0;
    return sdm_bundle_file_bytes(sdm_engine_bundle(S->engine)->unet);
}

/* Automatic batch: several frames per UNet call where memory allows; of
 * those, the most that the bundle's AOTInductor UNet was compiled for,
 * counting the TorchScript UNet's memory free for those. */
static int auto_batch(const render_state *S)
{
    sdm_device dev = sdm_engine_device(S->engine);
    size_t free_b = 0, total_b = 0;
    int xl = sdm_bundle_is_xl(sdm_engine_bundle(S->engine)), b, b_aoti;

    if (dev.type == SDM_DEVICE_CPU)
        return 4;
    if (sdm_cuda_mem_info(dev, &free_b, &total_b))
        return 1;
    b = sdm_batch_for_memory((double)free_b, xl, S->width, S->height);
    b_aoti = sdm_batch_for_memory((double)free_b + ts_unet_to_free(S), xl, S->width, S->height);
    for (int n = b_aoti; n >= 1; n--) {
        if (sdm_engine_uses_aoti(S->engine, S->guided ? 2 * n : n, S->latent_h, S->latent_w,
                                 sdm_conditioner_tokens(S->cond)))
            return n;
    }
    return b;
}

/* On a terminal, one line rewritten after every batch; in a log, a line
 * every progress_every seconds and one at the end. */
static void progress_line(render_state *S, int done)
{
    int rendered = S->stats->frames_rendered, n_renders = S->plan.n_renders;
    double t = now_s(), el = t - S->t0, per = rendered ? el / rendered : 0, eta = per * (n_renders - rendered);

    if (S->p->progress == SDM_PROGRESS_TERMINAL) {
        fprintf(stderr, "\rsdmorph: frame %d/%d (rendered %d/%d) %.2f s/frame, ETA %d:%02d%s", S->shown,
                S->plan.n_sequence, rendered, n_renders, per, (int)eta / 60, (int)eta % 60, done ? "\n" : "  ");
    } else {
        if (!done && t - S->last_report < S->p->progress_every)
            return;
        fprintf(stderr, "sdmorph: frame %d/%d (rendered %d/%d), %.2f frames/s, ETA %d:%02d\n", S->shown,
                S->plan.n_sequence, rendered, n_renders, el > 0 ? rendered / el : 0.0, (int)eta / 60, (int)eta % 60);
    }
    S->last_report = t;
    fflush(stderr);
}

/* Out of memory at one frame per call: a smaller batch cannot help, so
 * the advice becomes the frame size, and where the model decodes in
 * float32 beside float16 weights (SDXL's VAE), an fp16-fixed VAE, which
 * needs about half the decode's memory. */
static void one_frame_advice(const render_state *S, sdm_error *err)
{
    const sdm_bundle *b = sdm_engine_bundle(S->engine);
    int vae32 = sdm_engine_dtype(S->engine) == SDM_F16 && !strcmp(b->vae_dtype, "float32");

    sdm_torch_oom_advice(err, vae32 ? "even 1 frame per call does not fit: lower width/height (or export the model "
                                      "with an fp16-fixed VAE: its decode in float32 takes about twice the memory; "
                                      "export_sd.py --vae FILE --vae-dtype float16) and try again"
                                    : "even 1 frame per call does not fit: lower width/height and try again");
}

/* Out of device memory: half as many frames per call, down to one, said
 * once; the batch that fits is kept. 0 if the caller may try again. */
static int halve_batch(render_state *S, sdm_error *err)
{
    if (err->out_of_memory && S->batch == 1 && S->engine)
        one_frame_advice(S, err);
    if (!err->out_of_memory || S->batch == 1)
        return -1;
    if (!S->stats->batch_halved)
        sdm_warn("out of device memory at %d frames per call; continuing with fewer (%s)", S->batch, err->msg);
    S->stats->batch_halved++;
    memset(err, 0, sizeof *err);
    S->batch /= 2;
    return 0;
}

/* ---- prepare: refuse what can be refused, load, warm up ------------------ */

/* Everything that can be refused is refused before the model loads
 * (preflight.h), and the outputs' temporary files are made. */
static int refuse_early(render_state *S, sdm_error *err)
{
    if (sdm_preflight_run(S->r, S->p, &S->pf, err))
        return -1;
    S->plan = S->pf.plan;
    memset(&S->pf.plan, 0, sizeof S->pf.plan);
    S->width = S->pf.width;
    S->height = S->pf.height;
    if (S->p->write_outputs && sdm_outputs_open(&S->pf.outs, &S->files, err))
        return -1;
    return 0;
}

/* The recipe's sampler at `steps` steps. */
static sdm_sampler_params sampler_params(const sdm_recipe *r, int steps)
{
    sdm_sampler_params sp = sdm_sampler_default_params();

    sp.kind = r->sampler;
    sp.steps = steps;
    sp.eta = r->eta;
    sp.karras = r->karras;
    sp.spacing = (sdm_spacing)r->timestep_spacing;
    return sp;
}

/* The model, the render's denoiser on its UNet, the frame size (the
 * bundle's unless the recipe says), the schedules (the render's, and the
 * retiming probe's where it is to run) and the conditioner. */
static int load_model(render_state *S, const sdm_render_hooks *hooks, sdm_error *err)
{
    const sdm_recipe *r = S->r;
    const sdm_render_params *p = S->p;
    const sdm_bundle *b;
    sdm_denoiser_params dp;
    sdm_sampler_params sp = sampler_params(r, r->steps);

    sdm_torch_set_cudnn_benchmark(p->cudnn_benchmark);
    S->engine = p->engine;
    S->own_engine = !p->engine;
    if (S->own_engine && sdm_engine_open(p->model_dir, p->device, &S->engine, err))
        return -1;
    if (S->own_engine)
        sdm_engine_set_aoti(S->engine, p->aoti);
    if (S->own_engine && p->timings)
        S->stats->loading = sdm_engine_loading_split(S->engine);
    dp.dev = sdm_engine_device(S->engine);
    dp.dtype = sdm_engine_dtype(S->engine);
    dp.unet = sdm_engine_unet_call;
    dp.unet_user = S->engine;
    dp.guidance_rescale = r->guidance_rescale;
    dp.pooled_size = sdm_engine_bundle(S->engine)->text2.pooled_size;
    if (hooks && hooks->wrap_unet)
        hooks->wrap_unet(hooks->user, &dp.unet, &dp.unet_user);
    if (sdm_denoiser_new(&dp, &S->denoiser, err))
        return -1;
    sdm_denoiser_set_graphs(S->denoiser, p->cuda_graphs);
    b = sdm_engine_bundle(S->engine);
    S->latent_w = S->width / b->vae_scale;
    S->latent_h = S->height / b->vae_scale;
    if (sdm_schedule_set_make(b, &sp, &S->sched, err))
        return -1;
    if (sdm_retime_missing(&S->pf.retime)) {
        sp = sampler_params(r, sdm_retime_probe_steps(r->steps));
        if (sdm_schedule_set_make(b, &sp, &S->probe_sched, err))
            return -1;
        S->probing = 1;
    }
    if (sdm_conditioner_new(S->engine, r, S->latent_h, S->latent_w, &S->cond, err))
        return -1;
    sdm_engine_release_text(S->engine); /* the texts are encoded: room for batches */
    return 0;
}

/* A render of fewer frames than the batch (--frames, a short recipe) keeps
 * the batch where the captured loop runs the AOTInductor UNet: the
 * denoiser fills part of the batch (denoiser.c, loop_matches), which costs
 * a full call, far less than TorchScript's first calls at a new shape. */
static int pads_small_renders(const render_state *S)
{
    int n = S->guided ? 2 * S->batch : S->batch;

    return sdm_denoiser_graphs(S->denoiser) &&
           sdm_engine_uses_aoti(S->engine, n, S->latent_h, S->latent_w, sdm_conditioner_tokens(S->cond));
}

/* What the loop keeps per render of S->plan. */
static int keep_frames(render_state *S, size_t budget, sdm_error *err)
{
    const sdm_plan *pl = &S->plan;

    if (sdm_frame_cache_new(pl->sequence, pl->n_sequence, pl->n_renders, S->frame_bytes, budget, &S->cache, err))
        return -1;
    S->rendered = calloc(pl->n_renders > 0 ? pl->n_renders : 1, sizeof *S->rendered);
    if (!S->rendered)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    return 0;
}

/* Frames per call, and what the loop keeps per render. */
static int plan_batches(render_state *S, sdm_error *err)
{
    const sdm_render_params *p = S->p;
    const sdm_plan *pl = &S->plan;
    size_t budget = (size_t)(p->keep_rgb_mb > 0 ? p->keep_rgb_mb : 0) << 20;

    for (int i = 0; i < pl->n_renders; i++)
        S->guided |= sdm_guided(pl->renders[i].guidance);
    S->batch = p->batch > 0 ? p->batch : S->r->batch > 0 ? S->r->batch : auto_batch(S);
    /* a probe (retime.h) renders more frames than a short plan: it may batch them */
    if (S->batch > pl->n_renders && !pads_small_renders(S) && !sdm_retime_missing(&S->pf.retime))
        S->batch = pl->n_renders;
    S->frame_bytes = (size_t)S->width * S->height * 3;
    return keep_frames(S, budget, err);
}

/* The outputs, which record the sdmorph version, the recipe and the model;
 * a sink for the videos and the sheet; the stills' writers. */
static int open_sink(render_state *S, sdm_error *err)
{
    const sdm_recipe *r = S->r;
    const sdm_render_params *p = S->p;
    sdm_sink_params kp;
    char hash[32];

    sdm_bundle_fingerprint(sdm_engine_bundle(S->engine), S->fingerprint, sizeof S->fingerprint);
    if (!p->write_outputs)
        return 0;
    sdm_file_fingerprint(r->path, hash, sizeof hash);
    sdm_outputs_comment(S->comment, sizeof S->comment, r->path, hash, p->model_dir, S->fingerprint);
    if (sdm_stills_open(&S->pf.outs, S->files, S->width, S->height, S->comment, &S->stills, err))
        return -1;
    if (!S->pf.outs.n_videos && !S->pf.outs.sheet)
        return 0;
    kp = sdm_preflight_sink_params(r, &S->pf);
    kp.total_frames = S->plan.n_sequence; /* the plan is the render's now, not preflight's */
    kp.comment = S->comment;
    kp.files = S->files;
    /* room for two batches: a batch is handed over while the encoder
     * still works on the last one, so the GPU does not wait on it */
    kp.queue_frames = 2 * S->batch > kp.queue_frames ? (2 * S->batch > 1024 ? 1024 : 2 * S->batch) : kp.queue_frames;
    return sdm_sink_open(S->pf.outs.videos, S->pf.outs.n_videos, S->pf.outs.sheet, &kp, &S->sink, err);
}

/* The step render i starts at: -1 from noise, else its image start's. */
static int render_start(const render_state *S, const sdm_schedule_set *set, int i)
{
    return sdm_conditioner_start(S->cond, &S->plan.renders[i], set->params.steps);
}

/* Graphs on: the sampling loop captured at the batch shape, from the
 * step the first frame starts at (an image start's), on the schedule the
 * next batches run: the probe's while it is to run (its batches, the last
 * of each round too, then replay the capture as the render's do), then the
 * render's. */
static int capture_loop(render_state *S, sdm_error *err)
{
    const sdm_bundle *b = sdm_engine_bundle(S->engine);
    int64_t ls[4] = { S->batch, b->latent_channels, S->latent_h, S->latent_w };
    int64_t ts[3] = { S->batch, sdm_conditioner_tokens(S->cond), sdm_bundle_context_size(b) };
    sdm_schedule_set *set = S->probing ? &S->probe_sched : &S->sched;
    const sdm_schedule *s;

    if (!sdm_denoiser_graphs(S->denoiser))
        return 0;
    s = sdm_schedule_set_get(set, S->plan.n_renders ? render_start(S, set, 0) : -1, err);
    if (!s)
        return -1;
    return s->n_steps ? sdm_denoiser_capture(S->denoiser, s, ls, ts, S->guided, err) : 0;
}

/* The engine's warm-up at the batch shape, then (graphs on) the capture of
 * the sampling loop at it, which must record the warmed-up UNet. */
static int warm_up_once(render_state *S, sdm_error *err)
{
    /* a loop captured at a larger batch holds memory this one needs */
    sdm_denoiser_release(S->denoiser);
    if (sdm_engine_warmup(S->engine, S->batch, S->latent_h, S->latent_w, S->guided, sdm_conditioner_tokens(S->cond),
                          err))
        return -1;
    return capture_loop(S, err);
}

/* The warm-up runs the batch shape: where it does not fit, halve it. */
static int warm_up(render_state *S, sdm_error *err)
{
    int n;

    while (!(S->p->stop && *S->p->stop) && warm_up_once(S, err))
        if (halve_batch(S, err))
            return -1;
    n = S->guided ? 2 * S->batch : S->batch; /* UNet inputs per call */
    if (sdm_engine_has_aoti(S->engine) &&
        !sdm_engine_uses_aoti(S->engine, n, S->latent_h, S->latent_w, sdm_conditioner_tokens(S->cond)))
        sdm_info("%d frames per call at %dx%d%s%s: not a shape the AOTInductor UNet takes; it runs on TorchScript",
                 S->batch, S->width, S->height, S->guided ? " (guided: twice as many UNet inputs)" : "",
                 sdm_conditioner_tokens(S->cond) > sdm_engine_bundle(S->engine)->token_length
                     ? " with prompts of several chunks"
                     : "");
    return 0;
}

static int render_retime(render_state *S, sdm_error *err);

static int render_prepare(render_state *S, const sdm_render_hooks *hooks, sdm_error *err)
{
    double t;

    if (refuse_early(S, err) || load_model(S, hooks, err) || plan_batches(S, err) || open_sink(S, err))
        return -1;
    if (pads_small_renders(S)) /* every batch runs the package: room for batches */
        sdm_engine_release_unet(S->engine);
    t = now_s();
    if (warm_up(S, err))
        return -1;
    S->stats->warmup_seconds = now_s() - t;
    S->stats->load_seconds = now_s() - S->t0;
    int rc = render_retime(S, err);
    if (!rc && S->source &&
        S->source->planned(S->source->user, &S->plan, S->cond ? sdm_conditioner_texts_json(S->cond) : NULL, err))
        rc = -1;
    return rc;
}

/* ---- the loop: batches launched, landed and shown in display order -------- */

/* The pace of a full render, measured frame by frame as shown (pace.h). */
static int pace_frame(render_state *S, const uint8_t *rgb, sdm_error *err)
{
    const sdm_plan_frame *f = &S->plan.shown[S->shown];
    double t0 = now_s();
    int rc;

    if (S->p->frames || (!S->pace && !(S->pace = sdm_pace_new(S->width, S->height))))
        return 0; /* --frames, or frames too small for SSIM: no pace */
    rc = sdm_pace_push(S->pace, rgb, f->walk_k >= 0 ? -1 : f->key_a, f->walk_k >= 0 ? -1 : f->key_b);
    S->stats->pace_seconds += now_s() - t0;
    return rc ? sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory") : 0;
}

/* Output frame S->shown is rgb: to the sink, the stills and the callback. */
static int show_frame(render_state *S, const uint8_t *rgb, sdm_error *err)
{
    const sdm_render_params *p = S->p;
    int r = S->plan.sequence[S->shown];

    if (S->sink && sdm_sink_push(S->sink, rgb, err))
        return -1;
    if (pace_frame(S, rgb, err) || sdm_stills_put(S->stills, S->shown, rgb, err))
        return -1;
    if (p->on_frame && p->on_frame(p->user, S->shown, rgb, S->width, S->height))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "frame callback failed");
    S->shown++;
    sdm_frame_cache_shown(S->cache, r);
    return 0;
}

/* Shows the run of output frames from S->shown whose renders are kept as
 * latents (up to the VAE's chunk), decoding them together. */
static int show_latent_run(render_state *S, sdm_error *err)
{
    const sdm_plan *pl = &S->plan;
    sdm_tensor *parts[SDM_DECODE_CHUNK], *lat = NULL, *rgb = NULL;
    sdm_download *dl = NULL;
    const void *data = NULL;
    size_t bytes = 0;
    sdm_torch_status st;
    int n = 0, rc = -1;

    while (n < SDM_DECODE_CHUNK && S->shown + n < pl->n_sequence) {
        int r = pl->sequence[S->shown + n];
        if (!S->rendered[r] || sdm_frame_cache_rgb(S->cache, r) || !sdm_frame_cache_latent(S->cache, r))
            break;
        parts[n++] = sdm_frame_cache_latent(S->cache, r);
    }
    st = sdm_tensor_cat(parts, n, &lat);
    if (st) {
        sdm_torch_error(err, st, "decoding a kept frame");
        goto end;
    }
    if (sdm_engine_decode(S->engine, lat, &rgb, err))
        goto end;
    st = sdm_download_start(rgb, SDM_U8, &dl);
    if (!st)
        st = sdm_download_wait(dl, &data, &bytes);
    if (st || bytes != S->frame_bytes * n) {
        sdm_torch_error(err, st ? st : SDM_TORCH_ERROR, "decoding a kept frame");
        goto end;
    }
    for (int i = 0; i < n; i++)
        if (show_frame(S, (const uint8_t *)data + (size_t)i * S->frame_bytes, err))
            goto end;
    rc = 0;
end:
    sdm_download_free(&dl);
    sdm_tensor_free(&lat);
    sdm_tensor_free(&rgb);
    return rc;
}

/* Shows every frame whose render is done, in display order, then keeps
 * what batch f made (its frames batch_rgb) and is still to be shown. */
static int emit_ready(render_state *S, const batch_flight *f, const uint8_t *batch_rgb, sdm_error *err)
{
    const sdm_plan *pl = &S->plan;

    while (S->shown < pl->n_sequence && S->rendered[pl->sequence[S->shown]]) {
        int r = pl->sequence[S->shown], in_batch = r >= f->first && r < f->first + f->nb;
        const uint8_t *kept = sdm_frame_cache_rgb(S->cache, r);
        const sdm_tensor *lat = sdm_frame_cache_latent(S->cache, r);
        int rc;

        if (in_batch && !kept && !lat)
            rc = show_frame(S, batch_rgb + (size_t)(r - f->first) * S->frame_bytes, err);
        else if (kept)
            rc = show_frame(S, kept, err);
        else if (lat)
            rc = show_latent_run(S, err);
        else
            rc = sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: frame %d lost", r);
        if (rc)
            return -1;
    }
    for (int j = 0; j < f->nb; j++)
        if (sdm_frame_cache_keep(S->cache, f->first + j, batch_rgb + (size_t)j * S->frame_bytes, f->latents, j, err))
            return -1;
    return 0;
}

/* One batch's inputs, joined from its frames' conditioning; the user of
 * its per-step noise. */
typedef struct {
    sdm_conditioner *cond;
    int nb;
    sdm_frame_cond *fc; /* per frame */
    double *guidance; /* per frame, as planned */
    sdm_tensor *noise; /* [nb,C,h,w] initial noise */
    sdm_tensor *text; /* [nb,L,H] */
    sdm_tensor *negative; /* [nb,L,H], NULL where no frame is guided */
    sdm_tensor *pooled, *negative_pooled, *time_ids; /* SDXL: [nb,P], [nb,P], [nb,6]; else NULL */
    sdm_tensor *images; /* [nb,C,h,w] the pictures' latents of frames that start from them; else NULL */
} batch_inputs;

static void batch_inputs_clear(batch_inputs *bi)
{
    for (int j = 0; bi->fc && j < bi->nb; j++)
        sdm_frame_cond_clear(&bi->fc[j]);
    free(bi->fc);
    free(bi->guidance);
    sdm_tensor_free(&bi->noise);
    sdm_tensor_free(&bi->text);
    sdm_tensor_free(&bi->negative);
    sdm_tensor_free(&bi->pooled);
    sdm_tensor_free(&bi->negative_pooled);
    sdm_tensor_free(&bi->time_ids);
    sdm_tensor_free(&bi->images);
    memset(bi, 0, sizeof *bi);
}

/* One field of the batch's frames' conditioning, joined on the batch axis
 * (field: the byte offset of a tensor in sdm_frame_cond); NULL stays NULL. */
static sdm_torch_status join_field(const batch_inputs *bi, size_t field, sdm_tensor **parts, sdm_tensor **out)
{
    for (int j = 0; j < bi->nb; j++) {
        parts[j] = *(sdm_tensor **)((char *)&bi->fc[j] + field);
        if (!parts[j])
            return SDM_TORCH_OK;
    }
    return sdm_tensor_cat(parts, bi->nb, out);
}

/* Conditions renders [first, first+nb) and joins them into one batch. */
static int batch_inputs_make(render_state *S, int first, int nb, batch_inputs *bi, sdm_error *err)
{
    sdm_tensor **parts = calloc(nb, sizeof *parts);
    sdm_torch_status st;
    int guided = 0, rc = -1;

    memset(bi, 0, sizeof *bi);
    bi->cond = S->cond;
    bi->nb = nb;
    bi->fc = calloc(nb, sizeof *bi->fc);
    bi->guidance = calloc(nb, sizeof *bi->guidance);
    if (!parts || !bi->fc || !bi->guidance) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int j = 0; j < nb; j++) {
        if (sdm_conditioner_frame(S->cond, &S->plan.renders[first + j], &bi->fc[j], err))
            goto end;
        bi->guidance[j] = bi->fc[j].guidance;
        guided |= sdm_guided(bi->guidance[j]);
    }
    st = join_field(bi, offsetof(sdm_frame_cond, noise), parts, &bi->noise);
    if (!st)
        st = join_field(bi, offsetof(sdm_frame_cond, cond), parts, &bi->text);
    if (!st)
        st = join_field(bi, offsetof(sdm_frame_cond, pooled), parts, &bi->pooled);
    if (!st)
        st = join_field(bi, offsetof(sdm_frame_cond, time_ids), parts, &bi->time_ids);
    if (!st && guided)
        st = join_field(bi, offsetof(sdm_frame_cond, uncond), parts, &bi->negative);
    if (!st && guided)
        st = join_field(bi, offsetof(sdm_frame_cond, uncond_pooled), parts, &bi->negative_pooled);
    if (!st) /* a batch starts at one step (batch_span): all from pictures, or none */
        st = join_field(bi, offsetof(sdm_frame_cond, image), parts, &bi->images);
    if (st) {
        sdm_torch_error(err, st, "batching");
        goto end;
    }
    rc = 0;
end:
    free(parts);
    return rc;
}

/* Per-step noise of a batch: each frame's own stream, joined. */
static int batch_step_noise(void *user, int step, sdm_tensor **out, sdm_error *err)
{
    batch_inputs *bi = user;
    sdm_tensor **parts = calloc(bi->nb, sizeof *parts);
    sdm_torch_status st = SDM_TORCH_OK;
    int rc = -1;

    if (!parts)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int j = 0; j < bi->nb; j++)
        if (sdm_conditioner_step_noise(bi->cond, &bi->fc[j], step, &parts[j], err))
            goto end;
    st = sdm_tensor_cat(parts, bi->nb, out);
    if (st) {
        sdm_torch_error(err, st, "sampling noise");
        goto end;
    }
    rc = 0;
end:
    for (int j = 0; j < bi->nb; j++)
        sdm_tensor_free(&parts[j]);
    free(parts);
    return rc;
}

/* Frames that start from pictures start from the scheduler's add_noise of
 * their latents at the start (all of a batch at the same step); where no
 * step runs (strength under 1/steps), the pictures' latents are final. */
static int start_latents(const sdm_schedule *sched, batch_inputs *bi, sdm_tensor **out, sdm_error *err)
{
    sdm_torch_status st;

    if (!bi->images)
        return 0;
    st = sdm_tensor_axpby(sched->start_x, bi->images, sched->n_steps ? sched->start_noise : 0, bi->noise, out);
    return st ? sdm_torch_error(err, st, "starting from pictures") : 0;
}

/* How many renders from `first` (at most max) start at the same step: a batch. */
static int batch_span(const render_state *S, const sdm_schedule_set *set, int first, int max)
{
    int start = render_start(S, set, first), n = 1;

    while (n < max && first + n < S->plan.n_renders && render_start(S, set, first + n) == start)
        n++;
    return n;
}

/* Conditions and samples renders [first, first+nb) of S->plan through the
 * schedule of their start in set: their final latents, and the UNet
 * evaluations that took (n_steps, may be NULL). 1: stopped. */
static int batch_sample(render_state *S, sdm_schedule_set *set, int first, int nb, sdm_tensor **lat, int *n_steps,
                        sdm_error *err)
{
    const sdm_schedule *sched = sdm_schedule_set_get(set, render_start(S, set, first), err);
    sdm_tensor *x = NULL;
    batch_inputs bi;
    sdm_batch b;
    int rc = -1;

    memset(&b, 0, sizeof b);
    memset(&bi, 0, sizeof bi);
    if (!sched || batch_inputs_make(S, first, nb, &bi, err) || start_latents(sched, &bi, &x, err))
        goto end;
    if (x && !sched->n_steps) {
        *lat = x;
        x = NULL;
        rc = 0;
        goto end;
    }
    b.latents = x ? x : bi.noise;
    b.cond.cond = bi.text;
    b.cond.uncond = bi.negative;
    b.cond.pooled = bi.pooled;
    b.cond.uncond_pooled = bi.negative_pooled;
    b.cond.time_ids = bi.time_ids;
    b.guidance = bi.guidance;
    b.noise = batch_step_noise;
    b.noise_user = &bi;
    b.first_step = 0;
    b.stop = S->p->stop;
    rc = sdm_denoiser_run(S->denoiser, sched, &b, lat, err);
    if (!rc && n_steps)
        *n_steps = sched->n_steps;
end:
    sdm_tensor_free(&x);
    batch_inputs_clear(&bi);
    return rc;
}

/* With p->timings: waits for the device, then adds the seconds since *t to
 * *part (where not NULL) and sets *t to now. */
static int timing_mark(render_state *S, double *t, double *part, sdm_error *err)
{
    sdm_torch_status st;
    double now;

    if (!S->p->timings)
        return 0;
    st = sdm_device_sync(sdm_engine_device(S->engine));
    if (st)
        return sdm_torch_error(err, st, "waiting for the device (--timings)");
    now = now_s();
    if (part)
        *part += now - *t;
    *t = now;
    return 0;
}

/* With p->timings on CUDA: keeps the most device memory seen in use. */
static void timing_memory(render_state *S)
{
    size_t free_b = 0, total_b = 0;

    if (!S->p->timings || sdm_engine_device(S->engine).type != SDM_DEVICE_CUDA ||
        sdm_cuda_mem_info(sdm_engine_device(S->engine), &free_b, &total_b))
        return;
    if (total_b - free_b > S->stats->device_used_bytes)
        S->stats->device_used_bytes = total_b - free_b;
    S->stats->device_total_bytes = total_b;
}

/* Conditions, samples and decodes renders [first, first+nb) into S->next
 * and starts copying the frames to the host; on the GPU all of it is only
 * queued (with p->timings, waited for part by part). 1: stopped. */
static int batch_launch(render_state *S, int first, int nb, sdm_error *err)
{
    sdm_tensor *lat = NULL, *rgb = NULL;
    sdm_torch_status st;
    double t = 0;
    int rc = -1, steps = 0;

    if (timing_mark(S, &t, NULL, err))
        goto end;
    rc = batch_sample(S, &S->sched, first, nb, &lat, &steps, err);
    if (rc)
        goto end; /* 1: stopped */
    rc = -1;
    if (timing_mark(S, &t, &S->stats->sample_seconds, err) || sdm_engine_decode(S->engine, lat, &rgb, err) ||
        timing_mark(S, &t, &S->stats->decode_seconds, err))
        goto end;
    timing_memory(S);
    if (S->p->timings) {
        S->stats->sample_steps += steps;
        S->stats->sample_batches++;
        S->stats->decoded_frames += nb;
    }
    st = sdm_download_start(rgb, SDM_U8, &S->next.frames);
    if (st) {
        sdm_torch_error(err, st, "copying frames to the host");
        goto end;
    }
    S->next.first = first;
    S->next.nb = nb;
    S->next.latents = lat;
    lat = NULL;
    rc = 0;
end:
    sdm_tensor_free(&lat);
    sdm_tensor_free(&rgb);
    return rc;
}

/* Waits for the batch in flight and shows every frame that is now ready. */
static int batch_land(render_state *S, sdm_error *err)
{
    batch_flight *f = &S->flight;
    const void *data = NULL;
    size_t bytes = 0;
    sdm_torch_status st;
    double t0 = now_s();
    int rc = -1;

    st = sdm_download_wait(f->frames, &data, &bytes);
    S->stats->device_wait_seconds += now_s() - t0;
    if (st) {
        sdm_torch_error(err, st, "rendering");
        goto end;
    }
    if (bytes != S->frame_bytes * f->nb) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: %zu bytes of frames, expected %zu", bytes,
                      S->frame_bytes * f->nb);
        goto end;
    }
    for (int j = 0; j < f->nb; j++)
        S->rendered[f->first + j] = 1;
    S->stats->frames_rendered += f->nb;
    t0 = now_s();
    if (S->source ? S->source->done(S->source->user, f->first, f->nb, data, err) : emit_ready(S, f, data, err))
        goto end;
    S->stats->frames_out_seconds += now_s() - t0;
    rc = 0;
end:
    sdm_download_free(&f->frames);
    sdm_tensor_free(&f->latents);
    return rc;
}

/* Renders left to do in S->todo_first..todo_end; else the next ones: all
 * of the plan, or as many as a batch from the scheduler. 1: none left. */
static int next_renders(render_state *S)
{
    int first, n;

    if (S->todo_first < S->todo_end)
        return 0;
    if (!S->source) {
        if (S->todo_end == S->plan.n_renders)
            return 1;
        S->todo_first = 0;
        S->todo_end = S->plan.n_renders;
        return 0;
    }
    if (S->source->next(S->source->user, S->batch, &first, &n))
        return 1;
    S->todo_first = first;
    S->todo_end = first + n;
    return 0;
}

/* Batch i+1 is queued before batch i's frames are waited for, so the GPU
 * goes on while the host shows and encodes them. */
static int render_loop(render_state *S, sdm_error *err)
{
    const sdm_render_params *p = S->p;

    S->t0 = now_s();
    for (;;) {
        int first, nb, d;
        double t;
        if (next_renders(S)) {
            /* none for now: a scheduler may have more (given back by a device
             * that failed) once the batch in flight has landed */
            if (!S->source || !S->flight.frames)
                break;
            if (batch_land(S, err))
                return -1;
            continue;
        }
        first = S->todo_first;
        nb = batch_span(S, &S->sched, first, S->todo_end - first < S->batch ? S->todo_end - first : S->batch);
        if (p->stop && *p->stop) {
            S->interrupted = 1;
            break;
        }
        t = now_s();
        d = batch_launch(S, first, nb, err);
        S->stats->launch_seconds += now_s() - t;
        if (d == 1) {
            S->interrupted = 1;
            break;
        }
        if (d < 0 && halve_batch(S, err))
            return -1;
        if (d < 0)
            continue; /* the same frames again, fewer at a time */
        S->todo_first += nb;
        if (S->flight.frames && batch_land(S, err))
            return -1;
        S->flight = S->next;
        memset(&S->next, 0, sizeof S->next);
        if (p->progress)
            progress_line(S, 0);
    }
    /* the last batch (or, when interrupted, the one already on its way) */
    if (S->flight.frames && batch_land(S, err))
        return -1;
    if (p->progress)
        progress_line(S, 1);
    return 0;
}

/* ---- retime: the probe's rounds (retime.h) through the loop above -------- */

/* One round of the probe: its frames sampled in batches as the render's
 * are (batch_sample; halved on out of memory), their final latents to the
 * probe. No decode: the probe measures latents (retime.h). 1: stopped. */
static int probe_round(render_state *S, sdm_retime_probe *pr, int round, sdm_schedule_set *sched, size_t latent_n,
                       sdm_error *err)
{
    sdm_plan saved = S->plan;
    sdm_tensor *lat = NULL;
    sdm_torch_status st;
    float *host = NULL;
    int rc = -1;

    if (sdm_retime_probe_plan(pr, round, &S->plan, err))
        goto end;
    host = malloc((size_t)(S->batch > 0 ? S->batch : 1) * latent_n * sizeof *host);
    if (!host) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int first = 0, nb; first < S->plan.n_renders; first += nb) {
        nb = batch_span(S, sched, first, S->batch);
        rc = batch_sample(S, sched, first, nb, &lat, NULL, err);
        if (rc < 0 && !halve_batch(S, err)) {
            nb = 0; /* the same frames again, fewer at a time */
            continue;
        }
        if (rc)
            goto end; /* 1: stopped, or -1 */
        rc = -1;
        st = sdm_tensor_to_host(lat, SDM_F32, host, (size_t)nb * latent_n * sizeof *host);
        if (st) {
            sdm_torch_error(err, st, "probing");
            goto end;
        }
        sdm_tensor_free(&lat);
        if (sdm_retime_probe_latents(pr, first, nb, host, err))
            goto end;
    }
    rc = sdm_retime_probe_end_round(pr, round, err);
end:
    sdm_tensor_free(&lat);
    free(host);
    sdm_plan_free(&S->plan);
    S->plan = saved;
    return rc;
}

/* Transitions with `retime: even` and no curve yet: probed on the probe's
 * schedule (the loop was captured for it at the warm-up), their frames
 * placed, the plan made again (its frame keeping with it), the loop
 * captured again for the render's own schedule. */
static int render_retime(render_state *S, sdm_error *err)
{
    const sdm_recipe *r = S->r;
    sdm_retime_probe *pr = NULL;
    size_t latent_n = (size_t)sdm_engine_bundle(S->engine)->latent_channels * S->latent_h * S->latent_w;
    double t0 = now_s();
    int rc = -1;

    if (!S->probing)
        return 0;
    if (S->source && S->source->curves) {
        const char *shared = NULL;
        if (S->source->curves(S->source->user, &shared, err))
            goto end;
        if (shared)
            sdm_retime_take(&S->pf.retime, shared);
    }
    while (sdm_retime_missing(&S->pf.retime)) {
        if (sdm_retime_probe_new(&S->pf.retime, r, latent_n, &pr, err))
            goto end;
        for (int round = 0; round < 2; round++)
            if ((rc = probe_round(S, pr, round, &S->probe_sched, latent_n, err)) != 0)
                goto end;
        rc = -1;
        S->stats->probe_renders += sdm_retime_probe_renders(pr);
        sdm_retime_probe_free(&pr);
    }
    if (S->stats->probe_renders) {
        S->stats->probe_steps = S->probe_sched.params.steps;
        S->stats->probe_seconds = now_s() - t0;
    }
    sdm_schedule_set_free(&S->probe_sched);
    S->probing = 0;
    if (sdm_preflight_replan(r, S->p, &S->pf, err))
        goto end;
    sdm_plan_free(&S->plan);
    S->plan = S->pf.plan;
    memset(&S->pf.plan, 0, sizeof S->pf.plan);
    sdm_frame_cache_free(&S->cache);
    free(S->rendered);
    S->rendered = NULL;
    if (keep_frames(S, (size_t)(S->p->keep_rgb_mb > 0 ? S->p->keep_rgb_mb : 0) << 20, err))
        goto end;
    /* a render of fewer frames than the probe's batch: warmed up again at its own */
    if (S->batch > S->plan.n_renders && !pads_small_renders(S)) {
        S->batch = S->plan.n_renders;
        if (warm_up(S, err))
            goto end;
    } else if (capture_loop(S, err)) {
        goto end;
    }
    rc = 0;
end:
    sdm_retime_probe_free(&pr);
    return rc;
}

/* ---- finish: close the outputs, commit them with their sidecars, fill the stats */

/* Closes the outputs and commits them with their sidecars, which record
 * what was used; an interrupted render's stills not reached are left out. */
static int commit_outputs(render_state *S, sdm_error *err)
{
    const sdm_outputs *o = &S->pf.outs;
    const sdm_bundle *b = sdm_engine_bundle(S->engine);
    char device[32];
    sdm_sidecar_facts facts;
    sdm_sidecar_used used;

    if (S->sink && sdm_sink_finish(S->sink, S->interrupted, err))
        return -1;
    for (int i = o->first_still; i < o->first_still + o->n_stills; i++)
        if (o->files[i].frame >= S->shown)
            sdm_fileset_skip(S->files, sdm_fileset_find(S->files, o->files[i].path));
    sdm_device_name(sdm_engine_device(S->engine), device, sizeof device);
    memset(&used, 0, sizeof used);
    used.model_dir = S->p->model_dir;
    used.fingerprint = S->fingerprint;
    used.device = device;
    used.dtype = b->dtype;
    used.width = S->width;
    used.height = S->height;
    used.batch = S->batch;
    used.load_seconds = S->stats->load_seconds;
    used.seconds = S->stats->seconds;
    used.texts = S->cond ? sdm_conditioner_texts_json(S->cond) : NULL;
    sdm_sidecar_model_facts(&used, &facts, S->r, b, S->width, S->height);
    if (sdm_outputs_commit(o, S->files, S->r, &S->plan, &used, S->interrupted, err))
        return -1;
    for (int i = 0; S->p->on_written && i < sdm_fileset_count(S->files); i++)
        if (sdm_fileset_written(S->files, i))
            S->p->on_written(S->p->user, sdm_fileset_written(S->files, i));
    return 0;
}

static int render_finish(render_state *S, sdm_error *err)
{
    sdm_render_stats *stats = S->stats;
    double t = now_s();
    int rc;

    sdm_sink_close(S->sink); /* the encoders finish while the pace is reported */
    if (S->pace && !S->interrupted) {
        if (sdm_pace_report_make(S->pace, &stats->pace) || !(S->plan.pace_json = sdm_pace_json(&stats->pace)))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    stats->pace_seconds += now_s() - t;
    stats->outputs_blocked_seconds = sdm_sink_blocked_seconds(S->sink);
    stats->frames_shown = S->shown;
    stats->interrupted = S->interrupted;
    stats->width = S->width;
    stats->height = S->height;
    stats->batch = S->batch;
    stats->seconds = now_s() - S->t0;
    stats->seconds_per_render = stats->frames_rendered ? stats->seconds / stats->frames_rendered : 0;
    if (sdm_stills_finish(S->stills, err))
        return -1;
    /* interrupted before the first frame: nothing to keep, nothing written */
    t = now_s();
    rc = S->files && !(S->interrupted && S->shown == 0) ? commit_outputs(S, err) : 0;
    stats->finish_seconds = now_s() - t;
    return rc ? -1 : S->interrupted;
}

static void render_state_clear(render_state *S)
{
    sdm_download_free(&S->flight.frames);
    sdm_download_free(&S->next.frames);
    sdm_tensor_free(&S->flight.latents);
    sdm_tensor_free(&S->next.latents);
    sdm_sink_free(&S->sink);
    sdm_stills_free(&S->stills); /* before the file set: its workers write in it */
    sdm_fileset_free(&S->files);
    sdm_frame_cache_free(&S->cache);
    free(S->rendered);
    sdm_pace_free(&S->pace);
    sdm_conditioner_free(&S->cond);
    sdm_schedule_set_free(&S->sched);
    if (S->probing)
        sdm_schedule_set_free(&S->probe_sched);
    sdm_plan_free(&S->plan);
    /* a captured loop holds the engine's UNet buffers: it goes first */
    sdm_denoiser_free(&S->denoiser);
    if (S->own_engine)
        sdm_engine_free(&S->engine);
    S->engine = NULL;
    sdm_preflight_free(&S->pf);
}

int sdm_render_hooked(const sdm_recipe *r, const sdm_render_params *p, const sdm_render_hooks *hooks,
                      sdm_render_stats *stats, sdm_error *err)
{
    render_state S;
    sdm_render_stats unused;
    int rc;

    memset(&S, 0, sizeof S);
    S.r = r;
    S.p = p;
    S.stats = stats ? stats : &unused;
    memset(S.stats, 0, sizeof *S.stats);
    S.t0 = now_s();
    S.last_report = S.t0;
    S.source = hooks ? hooks->source : NULL;

    rc = render_prepare(&S, hooks, err);
    if (!rc)
        rc = render_loop(&S, err);
    if (!rc)
        rc = render_finish(&S, err);
    render_state_clear(&S);
    return rc;
}

int sdm_render(const sdm_recipe *r, const sdm_render_params *p, sdm_render_stats *stats, sdm_error *err)
{
    return sdm_render_hooked(r, p, NULL, stats, err);
}
