/* The render loop: plan → conditioning → sampling in batches → decode →
 * frames in display order to the sink. Frames shown again later (pingpong's
 * way back, repeated keyframes) are never rendered twice: kept as images up
 * to a memory budget, beyond it as latents that are only decoded again. */
#ifndef SDM_RENDER_H
#define SDM_RENDER_H

#include "engine.h"
#include "pace.h"
#include "plan.h"
#include "recipe.h"
#include "render_params.h"

typedef struct {
    int frames_shown, frames_rendered, interrupted;
    double load_seconds; /* model load and warm-up */
    double warmup_seconds; /* of those: the warm-up (first calls at the batch shape, the loop's capture) */
    double seconds, seconds_per_render; /* the render loop itself */
    int width, height, batch; /* batch: frames per call at the end */
    int batch_halved; /* times out of memory halved the batch */
    int probe_renders, probe_steps; /* the retiming's probe (retime.h): frames and their steps */
    double probe_seconds; /* its time, between loading and the loop */
    sdm_pace_report pace; /* of the frames shown (all of them: not with --frames) */
    /* Where the loop's seconds went, on the host's clock: */
    double launch_seconds; /* queueing batches: conditioning, sampling, decode (the device runs behind) */
    double device_wait_seconds; /* waiting for a batch's frames: the device still busy */
    double frames_out_seconds; /* frames to the outputs, the pace, stills and the frame cache */
    double outputs_blocked_seconds; /* of those: the outputs' queue full (an encoder behind) */
    double pace_seconds; /* of those: frames to the pace (pace.h), and its report at the end */
    double finish_seconds; /* after the loop: encoders finishing, sidecars, files renamed */
    /* With params.timings, the device's own time (waited for after each part): */
    double sample_seconds; /* conditioning and the sampling loops */
    int sample_steps, sample_batches; /* the steps of every batch, added; the batches */
    double decode_seconds; /* VAE decodes */
    int decoded_frames;
    /* CUDA: the device's memory in use (all of it, as nvidia-smi counts:
     * weights, CUDA graphs' pools, torch's cache) after a decode, at most;
     * torch's cache keeps what it took, so this is the render's peak */
    size_t device_used_bytes, device_total_bytes;
    /* With params.timings, where the loading of a model the render opened
     * went; all zero otherwise */
    sdm_engine_loading loading;
} sdm_render_stats;

/* 0: done; 1: interrupted (a partial file was written); -1: err is set. */
int sdm_render(const sdm_recipe *r, const sdm_render_params *p, sdm_render_stats *stats, sdm_error *err);

#endif
