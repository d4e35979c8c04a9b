/* What a render is asked to do: the model, device, outputs and switches.
 * A header of its own because preflight (run before the render, and by
 * `check` alone) reads the same parameters the render does. */
#ifndef SDM_RENDER_PARAMS_H
#define SDM_RENDER_PARAMS_H

#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "shard.h"
#include "torch_api.h"

/* Called with every shown frame, in display order (tests capture frames). */
typedef int (*sdm_frame_fn)(void *user, int index, const uint8_t *rgb, int width, int height);

typedef struct {
    const char *model_dir;          /* bundle directory */
    sdm_device device;
    int batch;                      /* frames per UNet call; 0: automatic */
    const char *frames;             /* --frames LIST, NULL for all */
    sdm_shard shard;                /* --shard I/N: only its renders, into a segment (segment.h);
                                       outputs[0], if given, names the segment's .rgb */
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
} sdm_render_params;

/* Host memory for frames shown again later (pingpong's way back): 256 MiB
 * is 340 frames at 512x512; past it a frame costs its latent, 64 KiB. */
#define SDM_KEEP_RGB_MB 256

static inline sdm_render_params sdm_render_default_params(void)
{
    sdm_render_params p;

    memset(&p, 0, sizeof p);
    p.write_outputs = 1;
    p.cuda_graphs = 1;
    p.keep_rgb_mb = SDM_KEEP_RGB_MB;
    p.aoti = 1;
    return p;
}

#endif
