/* The render loop: plan → conditioning → sampling in batches → decode →
 * frames in display order to the sink. Frames shown again later (pingpong's
 * way back, repeated keyframes) are never rendered twice: kept as images up
 * to a memory budget, beyond it as latents that are only decoded again. */
#ifndef SDM_RENDER_H
#define SDM_RENDER_H

#include "pace.h"
#include "plan.h"
#include "recipe.h"
#include "render_params.h"

typedef struct {
    int frames_shown, frames_rendered, interrupted;
    double load_seconds; /* model load and warm-up */
    double seconds, seconds_per_render; /* the render loop itself */
    int width, height, batch; /* batch: frames per call at the end */
    int batch_halved; /* times out of memory halved the batch */
    int probe_renders, probe_steps; /* the retiming's probe (retime.h): frames and their steps */
    double probe_seconds; /* its time, between loading and the loop */
    sdm_pace_report pace; /* of the frames shown (all of them: not with --frames) */
} sdm_render_stats;

/* 0: done; 1: interrupted (a partial file was written); -1: err is set. */
int sdm_render(const sdm_recipe *r, const sdm_render_params *p, sdm_render_stats *stats, sdm_error *err);

#endif
