/* The render loop: plan → conditioning → sampling in batches → decode →
 * frames in display order to the sink. Frames shown again later (pingpong's
 * way back, repeated keyframes) are never rendered twice: kept as images up
 * to a memory budget, beyond it as latents that are only decoded again. */
#ifndef SDM_RENDER_H
#define SDM_RENDER_H

#include <signal.h>
#include <stdint.h>

#include "plan.h"
#include "recipe.h"
#include "torch_api.h"

/* Called with every shown frame, in display order (tests capture frames). */
typedef int (*sdm_frame_fn)(void *user, int index, const uint8_t *rgb, int width, int height);

typedef struct {
    const char *model_dir;          /* bundle directory */
    sdm_device device;
    int batch;                      /* frames per UNet call; 0: automatic */
    const char *frames;             /* --frames LIST, NULL for all */
    const char *const *outputs;     /* replaces the recipe's outputs when n_outputs > 0 */
    int n_outputs;
    int write_outputs;              /* 0: no files (tests with on_frame) */
    int progress;                   /* progress line on stderr */
    int cuda_graphs;                /* replay the sampling loop as a CUDA graph where the build has them (default) */
    int cudnn_benchmark;            /* fastest convolutions by timing; not bit-reproducible */
    int aoti;                       /* the bundle's AOTInductor UNet where it fits (default 1) */
    volatile sig_atomic_t *stop;    /* set from a signal handler: finish a partial file */
    sdm_frame_fn on_frame;
    void *user;
    int keep_rgb_mb;                /* frames shown again later are kept as images up to this
                                       many MiB, beyond it as latents (decoded again) */
    int simulate_oom_above;         /* tests: batches larger than this fail as out of memory */
} sdm_render_params;

/* Host memory for frames shown again later (pingpong's way back): 256 MiB
 * is 340 frames at 512x512; past it a frame costs its latent, 64 KiB. */
#define SDM_KEEP_RGB_MB 256

sdm_render_params sdm_render_default_params(void);

typedef struct {
    int frames_shown, frames_rendered, interrupted;
    double load_seconds;            /* model load and warm-up */
    double seconds, seconds_per_render;     /* the render loop itself */
    int width, height, batch;       /* batch: frames per call at the end */
    int batch_halved;               /* times out of memory halved the batch */
} sdm_render_stats;

/* 0: done; 1: interrupted (a partial file was written); -1: err is set. */
int sdm_render(const sdm_recipe *r, const sdm_render_params *p, sdm_render_stats *stats,
               sdm_error *err);

#endif
