/* Seams into a render, for tests; not part of the API (render.h), and
 * included by render.c and tests only. A test wraps the UNet call the
 * render's denoiser makes, to fail it (out of memory above a batch size)
 * while the rest of the render runs for real. */
#ifndef SDM_RENDER_HOOKS_H
#define SDM_RENDER_HOOKS_H

#include "denoiser.h"
#include "render.h"

typedef struct {
    /* Called once the render has its engine: *fn, *fn_user are the
     * engine's UNet call (sdm_engine_unet_call, the engine); the hook may
     * replace them with a call of its own that wraps them. */
    void (*wrap_unet)(void *user, sdm_unet_fn *fn, void **fn_user);
    void *user;
} sdm_render_hooks;

/* sdm_render with hooks (NULL: none, sdm_render itself). */
int sdm_render_hooked(const sdm_recipe *r, const sdm_render_params *p, const sdm_render_hooks *hooks,
                      sdm_render_stats *stats, sdm_error *err);

#endif
