#include "render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "condition.h"
#include "engine.h"
#include "outputs.h"
#include "preflight.h"
#include "sampler.h"
#include "sink.h"
#include "version.h"

sdm_render_params sdm_render_default_params(void)
{
    sdm_render_params p;

    memset(&p, 0, sizeof p);
    p.write_outputs = 1;
    p.cuda_graphs = 1;
    p.keep_rgb_mb = SDM_KEEP_RGB_MB;
    p.aoti = 1;
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Automatic batch: several frames per UNet call where memory allows; of
 * those, the most that the bundle's AOTInductor UNet was compiled for. */
static int auto_batch(const sdm_engine *e, int width, int height, int vae_scale, int guided)
{
    size_t free_b = 0, total_b = 0;
    double per_frame;

    if (sdm_engine_device(e).type == SDM_DEVICE_CPU)
        return 4;
    if (sdm_cuda_mem_info(sdm_engine_device(e), &free_b, &total_b))
        return 1;
    /* SD 1.5 at 512² in fp16 takes about 1.2 GB per guided frame at peak
     * (UNet activations and VAE decode); scale with the pixel count. */
    per_frame = 1.2e9 * ((double)width * height) / (512.0 * 512.0);
    int b = (int)((double)free_b * 0.7 / per_frame);
    b = b < 1 ? 1 : b > 16 ? 16 : b;
    for (int n = b; n >= 1; n--) {
        if (sdm_engine_uses_aoti(e, guided ? 2 * n : n, height / vae_scale, width / vae_scale))
            return n;
    }
    return b;
}

static void progress_line(int shown, int total, int rendered, int n_renders, double t0, int done)
{
    double el = now_s() - t0, per = rendered ? el / rendered : 0, eta = per * (n_renders - rendered);
    fprintf(stderr, "\rsdmorph: frame %d/%d (rendered %d/%d) %.2f s/frame, ETA %d:%02d%s", shown, total,
            rendered, n_renders, per, (int)eta / 60, (int)eta % 60, done ? "\n" : "  ");
    fflush(stderr);
}

/* Out of device memory: half as many frames per call, down to one, said
 * once; the batch that fits is kept. 0 if the caller may try again. */
static int halve_batch(int *B, sdm_render_stats *stats, sdm_error *err)
{
    if (!err->out_of_memory || *B == 1)
        return -1;
    if (!stats->batch_halved)
        sdm_warn("out of device memory at %d frames per call; continuing with fewer (%s)", *B, err->msg);
    stats->batch_halved++;
    memset(err, 0, sizeof *err);
    *B /= 2;
    return 0;
}

/* A render shown again later (pingpong's way back, a repeated keyframe):
 * its frame on the host while they fit the budget, else its final latent,
 * a twelfth of the size, decoded again when it is shown. */
typedef struct {
    uint8_t *rgb;
    sdm_tensor *latent;     /* [1,C,h,w] */
} kept_frame;

typedef struct {
    sdm_engine *engine;
    sdm_conditioner *cond;
    sdm_schedule sched;
    sdm_sink *sink;
    sdm_plan plan;
    sdm_preflight pf;       /* the plan (moved to plan), the outputs, model.yaml */
    sdm_fileset *files;     /* the outputs and their sidecars, committed together */
    kept_frame *kept;       /* renders shown again later */
    size_t kept_rgb_bytes, keep_rgb_budget;
    int *remaining;         /* appearances still to show, per render */
    int *rendered;          /* render done */
} render_state;

/* A batch whose work is queued on the device: its frames arrive in host
 * memory while the next batch is being queued behind it. */
typedef struct {
    int first, nb;
    sdm_download *frames;
    sdm_tensor *latents;    /* [nb,C,h,w]: what kept frames are made from */
} batch_flight;

static void kept_clear(render_state *S, int r, size_t frame_bytes)
{
    if (S->kept[r].rgb)
        S->kept_rgb_bytes -= frame_bytes;
    free(S->kept[r].rgb);
    sdm_tensor_free(&S->kept[r].latent);
    memset(&S->kept[r], 0, sizeof S->kept[r]);
}

/* Output frame *shown is rgb: to the sink and the callback. */
static int show_frame(render_state *S, const sdm_render_params *p, const uint8_t *rgb, size_t frame_bytes,
                      int *shown, int width, int height, sdm_error *err)
{
    int r = S->plan.sequence[*shown];

    if (S->sink && sdm_sink_push(S->sink, rgb, err))
        return -1;
    if (p->on_frame && p->on_frame(p->user, *shown, rgb, width, height))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "frame callback failed");
    (*shown)++;
    if (--S->remaining[r] == 0)
        kept_clear(S, r, frame_bytes);
    return 0;
}

/* Shows the run of output frames from *shown whose renders are kept as
 * latents (up to the VAE's chunk), decoding them together. */
static int show_latent_run(render_state *S, const sdm_render_params *p, size_t frame_bytes, int *shown,
                           int width, int height, sdm_error *err)
{
    const sdm_plan *pl = &S->plan;
    sdm_tensor *parts[SDM_DECODE_CHUNK], *lat = NULL, *rgb = NULL;
    sdm_download *dl = NULL;
    const void *data = NULL;
    size_t bytes = 0;
    sdm_torch_status st;
    int n = 0, rc = -1;

    while (n < SDM_DECODE_CHUNK && *shown + n < pl->n_sequence) {
        const kept_frame *k = &S->kept[pl->sequence[*shown + n]];
        if (!S->rendered[pl->sequence[*shown + n]] || k->rgb || !k->latent)
            break;
        parts[n++] = k->latent;
    }
    st = sdm_tensor_cat(parts, n, &lat);
    if (st) {
        sdm_engine_torch_error(err, st, "decoding a kept frame");
        goto end;
    }
    if (sdm_engine_decode(S->engine, lat, &rgb, err))
        goto end;
    st = sdm_download_start(rgb, SDM_U8, &dl);
    if (!st)
        st = sdm_download_wait(dl, &data, &bytes);
    if (st || bytes != frame_bytes * n) {
        sdm_engine_torch_error(err, st ? st : SDM_TORCH_ERROR, "decoding a kept frame");
        goto end;
    }
    for (int i = 0; i < n; i++)
        if (show_frame(S, p, (const uint8_t *)data + (size_t)i * frame_bytes, frame_bytes, shown, width, height, err))
            goto end;
    rc = 0;
end:
    sdm_download_free(&dl);
    sdm_tensor_free(&lat);
    sdm_tensor_free(&rgb);
    return rc;
}

/* Shows every frame whose render is done, in display order, then keeps
 * what this batch made and is still to be shown. */
static int emit_ready(render_state *S, const sdm_render_params *p, const batch_flight *f, const uint8_t *batch_rgb,
                      size_t frame_bytes, int *shown, int width, int height, sdm_error *err)
{
    const sdm_plan *pl = &S->plan;

    while (*shown < pl->n_sequence && S->rendered[pl->sequence[*shown]]) {
        int r = pl->sequence[*shown], in_batch = r >= f->first && r < f->first + f->nb;
        const kept_frame *k = &S->kept[r];
        int rc;

        if (in_batch && !k->rgb && !k->latent)
            rc = show_frame(S, p, batch_rgb + (size_t)(r - f->first) * frame_bytes, frame_bytes, shown,
                            width, height, err);
        else if (k->rgb)
            rc = show_frame(S, p, k->rgb, frame_bytes, shown, width, height, err);
        else if (k->latent)
            rc = show_latent_run(S, p, frame_bytes, shown, width, height, err);
        else
            rc = sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: frame %d lost", r);
        if (rc)
            return -1;
    }
    for (int j = 0; j < f->nb; j++) {
        int r = f->first + j;
        kept_frame *k = &S->kept[r];
        if (S->remaining[r] == 0 || k->rgb || k->latent)
            continue;
        if (S->kept_rgb_bytes + frame_bytes <= S->keep_rgb_budget) {
            k->rgb = malloc(frame_bytes);
            if (!k->rgb)
                return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
            memcpy(k->rgb, batch_rgb + (size_t)j * frame_bytes, frame_bytes);
            S->kept_rgb_bytes += frame_bytes;
        } else {
            sdm_torch_status st = sdm_tensor_narrow(f->latents, j, 1, &k->latent);
            if (st)
                return sdm_engine_torch_error(err, st, "keeping a frame");
        }
    }
    return 0;
}

/* Per-step noise of a batch: each frame's own stream, joined. */
typedef struct {
    sdm_conditioner *cond;
    const sdm_frame_cond *fc;
    int nb;
} batch_noise;

static int batch_step_noise(void *user, int step, sdm_tensor **out, sdm_error *err)
{
    batch_noise *bn = user;
    sdm_tensor **parts = calloc(bn->nb, sizeof *parts);
    sdm_torch_status st = SDM_TORCH_OK;
    int rc = -1;

    if (!parts)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int j = 0; j < bn->nb; j++)
        if (sdm_conditioner_step_noise(bn->cond, &bn->fc[j], step, &parts[j], err))
            goto end;
    st = sdm_tensor_cat(parts, bn->nb, out);
    if (st) {
        sdm_engine_torch_error(err, st, "sampling noise");
        goto end;
    }
    rc = 0;
end:
    for (int j = 0; j < bn->nb; j++)
        sdm_tensor_free(&parts[j]);
    free(parts);
    return rc;
}

/* Conditions, samples and decodes renders [first, first+nb) and starts
 * copying the frames to the host; on the GPU all of it is only queued. */
static int batch_launch(render_state *S, const sdm_render_params *p, int first, int nb, batch_flight *f,
                        sdm_error *err)
{
    sdm_frame_cond *fc = calloc(nb, sizeof *fc);
    sdm_tensor **xs = calloc(nb, sizeof *xs), **cs = calloc(nb, sizeof *cs), **us = calloc(nb, sizeof *us);
    sdm_tensor *x = NULL, *x0 = NULL, *c = NULL, *u = NULL, *lat = NULL, *rgb = NULL;
    double *g = calloc(nb, sizeof *g);
    int guided = 0, rc = -1, d;
    sdm_torch_status st;

    if (!fc || !xs || !cs || !us || !g) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int j = 0; j < nb; j++) {
        if (sdm_conditioner_frame(S->cond, &S->plan.renders[first + j], &fc[j], err))
            goto end;
        xs[j] = fc[j].noise;
        cs[j] = fc[j].cond;
        us[j] = fc[j].uncond;
        g[j] = fc[j].guidance > 1.0 ? fc[j].guidance : 1.0;
        guided |= fc[j].guidance > 1.0;
    }
    st = sdm_tensor_cat(xs, nb, &x0);
    if (!st)
        st = sdm_tensor_axpby(S->sched.init_sigma, x0, 0, NULL, &x);
    if (!st)
        st = sdm_tensor_cat(cs, nb, &c);
    if (!st && guided)
        st = sdm_tensor_cat(us, nb, &u);
    if (st) {
        sdm_engine_torch_error(err, st, "batching");
        goto end;
    }
    if (p->simulate_oom_above > 0 && nb > p->simulate_oom_above) {
        err->out_of_memory = 1;
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of device memory during UNet (simulated above %d frames per call); "
                      "lower --batch (or width/height) and try again", p->simulate_oom_above);
        goto end;
    }
    {
        batch_noise bn = { S->cond, fc, nb };
        d = sdm_engine_denoise(S->engine, &S->sched, x, c, u, g, batch_step_noise, &bn, p->stop, &lat, err);
    }
    if (d) {
        rc = d;
        goto end;
    }
    if (sdm_engine_decode(S->engine, lat, &rgb, err))
        goto end;
    st = sdm_download_start(rgb, SDM_U8, &f->frames);
    if (st) {
        sdm_engine_torch_error(err, st, "copying frames to the host");
        goto end;
    }
    f->first = first;
    f->nb = nb;
    f->latents = lat;
    lat = NULL;
    rc = 0;
end:
    for (int j = 0; fc && j < nb; j++)
        sdm_frame_cond_clear(&fc[j]);
    free(fc);
    free(xs);
    free(cs);
    free(us);
    free(g);
    sdm_tensor_free(&x0);
    sdm_tensor_free(&x);
    sdm_tensor_free(&c);
    sdm_tensor_free(&u);
    sdm_tensor_free(&lat);
    sdm_tensor_free(&rgb);
    return rc;
}

/* Waits for a batch's frames and shows every frame that is now ready. */
static int batch_land(render_state *S, const sdm_render_params *p, batch_flight *f, size_t frame_bytes,
                      int *shown, int width, int height, sdm_render_stats *stats, sdm_error *err)
{
    const void *data = NULL;
    size_t bytes = 0;
    sdm_torch_status st;
    int rc = -1;

    st = sdm_download_wait(f->frames, &data, &bytes);
    if (st) {
        sdm_engine_torch_error(err, st, "rendering");
        goto end;
    }
    if (bytes != frame_bytes * f->nb) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: %zu bytes of frames, expected %zu", bytes,
                      frame_bytes * f->nb);
        goto end;
    }
    for (int j = 0; j < f->nb; j++)
        S->rendered[f->first + j] = 1;
    stats->frames_rendered += f->nb;
    if (emit_ready(S, p, f, data, frame_bytes, shown, width, height, err))
        goto end;
    rc = 0;
end:
    sdm_download_free(&f->frames);
    sdm_tensor_free(&f->latents);
    return rc;
}

int sdm_render(const sdm_recipe *r, const sdm_render_params *p, sdm_render_stats *stats, sdm_error *err)
{
    render_state S;
    batch_flight flight, next;
    sdm_render_stats dummy;
    const sdm_bundle *b;
    sdm_sampler_params sp;
    sdm_sink_params kp;
    char hash[32], bundle_hash[32], comment[1024];
    int width, height, B, guided = 0, shown = 0, rc = -1, interrupted = 0;
    size_t frame_bytes = 0;
    double t0 = now_s();

    memset(&S, 0, sizeof S);
    memset(&flight, 0, sizeof flight);
    memset(&next, 0, sizeof next);
    if (!stats)
        stats = &dummy;
    memset(stats, 0, sizeof *stats);

    /* Everything that can be refused is refused before the model loads
     * (preflight.h), and the outputs' temporary files are made. */
    if (sdm_preflight_run(r, p, &S.pf, err))
        goto end;
    S.plan = S.pf.plan;
    memset(&S.pf.plan, 0, sizeof S.pf.plan);
    if (p->write_outputs && sdm_outputs_open(&S.pf.outs, &S.files, err))
        goto end;

    sdm_torch_set_cudnn_benchmark(p->cudnn_benchmark);
    if (sdm_engine_open(p->model_dir, p->device, &S.engine, err))
        goto end;
    sdm_engine_set_graphs(S.engine, p->cuda_graphs);
    sdm_engine_set_aoti(S.engine, p->aoti);
    b = sdm_engine_bundle(S.engine);
    width = S.pf.width;
    height = S.pf.height;
    sp.kind = r->sampler;
    sp.steps = r->steps;
    sp.eta = r->eta;
    sp.karras = r->karras;
    if (sdm_schedule_make(b, &sp, &S.sched, err))
        goto end;
    if (sdm_conditioner_new(S.engine, r, height / b->vae_scale, width / b->vae_scale, &S.cond, err))
        goto end;

    for (int i = 0; i < S.plan.n_renders; i++)
        guided |= S.plan.renders[i].guidance > 1.0;
    B = p->batch > 0 ? p->batch : r->batch > 0 ? r->batch : auto_batch(S.engine, width, height, b->vae_scale, guided);
    if (B > S.plan.n_renders)
        B = S.plan.n_renders;
    frame_bytes = (size_t)width * height * 3;
    S.kept = calloc(S.plan.n_renders, sizeof *S.kept);
    S.keep_rgb_budget = (size_t)(p->keep_rgb_mb > 0 ? p->keep_rgb_mb : 0) << 20;
    S.remaining = calloc(S.plan.n_renders, sizeof *S.remaining);
    S.rendered = calloc(S.plan.n_renders, sizeof *S.rendered);
    if (!S.kept || !S.remaining || !S.rendered) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    for (int i = 0; i < S.plan.n_sequence; i++)
        S.remaining[S.plan.sequence[i]]++;

    sdm_file_fingerprint(r->path, hash, sizeof hash);
    sdm_bundle_fingerprint(b, bundle_hash, sizeof bundle_hash);
    snprintf(comment, sizeof comment, "sdmorph %s; recipe %s (fnv1a %s); model %s (fingerprint %s)", SDM_VERSION,
             r->path ? r->path : "-", hash, p->model_dir, bundle_hash);
    if (p->write_outputs) {
        kp = sdm_preflight_sink_params(r, &S.pf);
        kp.comment = comment;
        kp.files = S.files;
        /* room for two batches: a batch is handed over while the encoder
         * still works on the last one, so the GPU does not wait on it */
        kp.queue_frames = 2 * B > kp.queue_frames ? (2 * B > 1024 ? 1024 : 2 * B) : kp.queue_frames;
        if (sdm_sink_open(S.pf.outs.videos, S.pf.outs.n_videos, S.pf.outs.sheet, &kp, &S.sink, err))
            goto end;
    }

    /* the warm-up runs the batch shape: where it does not fit, halve it */
    while (!(p->stop && *p->stop) && sdm_engine_warmup(S.engine, &S.sched, B, height / b->vae_scale, width / b->vae_scale, guided, err))
        if (halve_batch(&B, stats, err))
            goto end;
    if (sdm_engine_has_aoti(S.engine) &&
        !sdm_engine_uses_aoti(S.engine, guided ? 2 * B : B, height / b->vae_scale, width / b->vae_scale))
        sdm_info("%d frames per call at %dx%d%s: not a shape the AOTInductor UNet takes; it runs on TorchScript", B,
                 width, height, guided ? " (guided: twice as many UNet inputs)" : "");
    stats->load_seconds = now_s() - t0;
    t0 = now_s();
    /* Batch i+1 is queued before batch i's frames are waited for, so the
     * GPU goes on while the host shows and encodes them. */
    for (int first = 0; first < S.plan.n_renders; first += B) {
        int nb = S.plan.n_renders - first < B ? S.plan.n_renders - first : B;
        int d;
        if (p->stop && *p->stop) {
            interrupted = 1;
            break;
        }
        d = batch_launch(&S, p, first, nb, &next, err);
        if (d == 1) {
            interrupted = 1;
            break;
        }
        if (d < 0 && halve_batch(&B, stats, err))
            goto end;
        if (d < 0) {
            first -= B;     /* cancels the loop's += B: the same frames again */
            continue;
        }
        if (flight.frames && batch_land(&S, p, &flight, frame_bytes, &shown, width, height, stats, err))
            goto end;
        flight = next;
        memset(&next, 0, sizeof next);
        if (p->progress)
            progress_line(shown, S.plan.n_sequence, stats->frames_rendered, S.plan.n_renders, t0, 0);
    }
    /* the last batch (or, when interrupted, the one already on its way) */
    if (flight.frames && batch_land(&S, p, &flight, frame_bytes, &shown, width, height, stats, err))
        goto end;
    if (p->progress)
        progress_line(shown, S.plan.n_sequence, stats->frames_rendered, S.plan.n_renders, t0, 1);

    /* interrupted before the first frame: nothing to keep, nothing written */
    if (S.sink && !(interrupted && shown == 0) &&
        (sdm_sink_finish(S.sink, interrupted, err) ||
         sdm_outputs_commit(&S.pf.outs, S.files, r, &S.plan, interrupted, err)))
        goto end;
    stats->frames_shown = shown;
    stats->interrupted = interrupted;
    stats->width = width;
    stats->height = height;
    stats->batch = B;
    stats->seconds = now_s() - t0;
    stats->seconds_per_render = stats->frames_rendered ? stats->seconds / stats->frames_rendered : 0;
    rc = interrupted;
end:
    sdm_download_free(&flight.frames);
    sdm_download_free(&next.frames);
    sdm_tensor_free(&flight.latents);
    sdm_tensor_free(&next.latents);
    sdm_sink_free(&S.sink);
    sdm_fileset_free(&S.files);
    for (int i = 0; S.kept && i < S.plan.n_renders; i++)
        kept_clear(&S, i, frame_bytes);
    free(S.kept);
    free(S.remaining);
    free(S.rendered);
    sdm_conditioner_free(&S.cond);
    sdm_schedule_free(&S.sched);
    sdm_plan_free(&S.plan);
    sdm_engine_free(&S.engine);
    sdm_preflight_free(&S.pf);
    return rc;
}
