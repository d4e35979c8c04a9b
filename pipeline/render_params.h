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
/* Called with each file a render put in place (outputs, sidecars, .partial files). */
typedef void (*sdm_written_fn)(void *user, const char *path);

struct sdm_engine;

/* The progress report on stderr: none, one line rewritten in place (a
 * terminal), or a line every progress_every seconds (a log). */
typedef enum { SDM_PROGRESS_NONE, SDM_PROGRESS_TERMINAL, SDM_PROGRESS_LOG } sdm_progress;

typedef struct {
    const char *model_dir; /* bundle directory */
    struct sdm_engine *engine; /* already open on model_dir and device (and its AOTInductor
                                       builds set as `aoti` says), lent for this render: several
                                       recipes, one model load; NULL: the render opens its own */
    sdm_device device;
    int batch; /* frames per UNet call; 0: automatic */
    const char *frames; /* --frames LIST, NULL for all */
    sdm_shard shard; /* --shard I/N: only its renders, into a segment (segment.h);
                                       outputs[0], if given, names the segment's .rgb */
    const char *const *outputs; /* replaces the recipe's outputs when n_outputs > 0 */
    int n_outputs;
    int write_outputs; /* 0: no files (tests with on_frame) */
    sdm_progress progress; /* progress on stderr */
    double progress_every; /* seconds between SDM_PROGRESS_LOG lines */
    int cuda_graphs; /* replay the sampling loop as a CUDA graph where the build has them (default) */
    int cudnn_benchmark; /* fastest convolutions by timing; not bit-reproducible */
    int aoti; /* the bundle's AOTInductor UNet where it fits (default 1) */
    int timings; /* wait for the device after each batch's sampling and its decode, to time
                                       each (the stats' sample/decode seconds); the loop then
                                       overlaps less */
    volatile sig_atomic_t *stop; /* set from a signal handler: finish a partial file */
    sdm_frame_fn on_frame;
    sdm_written_fn on_written;
    void *user; /* of on_frame and on_written */
    int keep_rgb_mb; /* frames shown again later are kept as images up to this
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
    p.progress_every = 5;
    return p;
}

#endif
