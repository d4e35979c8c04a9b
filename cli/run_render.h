/* What `render` and `bridge` share: the device option, and a render run
 * with Ctrl-C, SIGTERM and SIGHUP kept as a clean stop, its outcome and
 * report printed. */
#ifndef SDM_RUN_RENDER_H
#define SDM_RUN_RENDER_H

#include "recipe.h"
#include "render.h"

/* --device DEV (NULL: cuda where there is one, else cpu) into *out; an
 * exit status, its message printed as `sdmorph CMD: ...`. */
int sdm_run_device(const char *cmd, const char *device, sdm_device *out);
/* Renders r with p (p->stop and p->progress are set here), on the n_devs
 * devices devs where there are several (--devices), else on p->device;
 * the exit status. */
int sdm_run_render(const sdm_recipe *r, sdm_render_params *p, const sdm_device *devs, int n_devs, int quiet);

#endif
