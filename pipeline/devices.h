/* One render on several devices of one host (--devices cpu,cpu or 0,1):
 * one engine per device, each on its own thread, takes a batch of the
 * plan's renders from a shared queue whenever it is free, so a slower
 * device renders fewer of them. Finished frames go to a scratch file of
 * the render (one frame per render, unlinked as soon as it is made: memory
 * does not grow with the frames) and are written in display order, as soon
 * as they are, to one set of outputs (join.h's writer), so the files equal
 * those of a render on one device.
 *
 * A device out of memory halves its batch (render.c); at one frame per call
 * it drops out, as does a device that fails otherwise: a warning names it,
 * the renders it held go back to the queue, and the others finish the
 * render. It fails only when every device has. With `retime: even`, each
 * engine runs the probe and they must agree on the plan. */
#ifndef SDM_DEVICES_H
#define SDM_DEVICES_H

#include "recipe.h"
#include "render.h"
#include "render_hooks.h"

#define SDM_MAX_DEVICES 64

/* As sdm_render, with p->device replaced by each of devs[0..n). 1:
 * interrupted (the frames shown so far kept in .partial files). */
int sdm_render_devices(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs, int n,
                       sdm_render_stats *stats, sdm_error *err);

/* For tests: hooks[i] (NULL: none) wraps device i's UNet (render_hooks.h). */
int sdm_render_devices_hooked(const sdm_recipe *r, const sdm_render_params *p, const sdm_device *devs,
                              const sdm_render_hooks *const *hooks, int n, sdm_render_stats *stats, sdm_error *err);

#endif
