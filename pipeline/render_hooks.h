/* Seams into a render, for tests and for devices.c; not part of the API
 * (render.h). A test wraps the UNet call the
 * render's denoiser makes, to fail it (out of memory above a batch size)
 * while the rest of the render runs for real. */
#ifndef SDM_RENDER_HOOKS_H
#define SDM_RENDER_HOOKS_H

#include <stdint.h>

#include "denoiser.h"
#include "render.h"

/* A scheduler in place of the loop's own order (devices.h): which renders
 * to do next and where their frames go. With one, the render shows no
 * frame and writes no file itself. */
typedef struct {
    /* The plan the render follows (retimed where the recipe asks) and the
     * prompts' texts JSON for the sidecar: once, before the first batch. */
    int (*planned)(void *user, const sdm_plan *plan, const char *texts, sdm_error *err);
    /* Before a retiming probe (NULL: probe): the curves another engine
     * probed for this render, as sdm_retime_json gives them, waiting while
     * it probes; *json NULL: probe here. -1: the render failed (err). */
    int (*curves)(void *user, const char **json, sdm_error *err);
    /* At most `most` renders to do next: [*first, *first + *n). 1: none left. */
    int (*next)(void *user, int most, int *first, int *n);
    /* Renders [first, first+n) are done: their frames, n * width*height*3 bytes of RGB. */
    int (*done)(void *user, int first, int n, const uint8_t *rgb, sdm_error *err);
    void *user;
} sdm_batch_source;

typedef struct {
    /* Called once the render has its engine: *fn, *fn_user are the
     * engine's UNet call (sdm_engine_unet_call, the engine); the hook may
     * replace them with a call of its own that wraps them. */
    void (*wrap_unet)(void *user, sdm_unet_fn *fn, void **fn_user);
    void *user;
    const sdm_batch_source *source; /* NULL: the plan's renders in order, shown here */
} sdm_render_hooks;

/* sdm_render with hooks (NULL: none, sdm_render itself). */
int sdm_render_hooked(const sdm_recipe *r, const sdm_render_params *p, const sdm_render_hooks *hooks,
                      sdm_render_stats *stats, sdm_error *err);

#endif
