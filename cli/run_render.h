/* What `render` and `bridge` share: the device option, Ctrl-C, SIGTERM and
 * SIGHUP kept as a clean stop, a render run, its outcome and report printed. */
#ifndef SDM_RUN_RENDER_H
#define SDM_RUN_RENDER_H

#include <signal.h>

#include "recipe.h"
#include "render.h"

/* --device DEV (NULL: cuda where there is one, else cpu) into *out; an
 * exit status, its message printed as `sdmorph CMD: ...`. */
int sdm_run_device(const char *cmd, const char *device, sdm_device *out);
/* From now until sdm_run_release_signals, Ctrl-C, SIGTERM and SIGHUP set
 * the flag sdm_run_stop_flag points to (a render stops cleanly) instead of
 * ending the process; calls nest. */
void sdm_run_catch_signals(void);
void sdm_run_release_signals(void);
volatile sig_atomic_t *sdm_run_stop_flag(void);
/* The summary of a finished render on stderr (and its pace unless quiet). */
void sdm_run_print_report(const sdm_render_stats *stats, int quiet);
/* Renders r with p (p->stop is set here), on
 * the n_devs devices devs where there are several (--devices), else on
 * p->device, into *stats; 0 done, 1 interrupted, -1 failed (err). */
int sdm_run_render_stats(const sdm_recipe *r, sdm_render_params *p, const sdm_device *devs, int n_devs,
                         sdm_render_stats *stats, sdm_error *err);
/* The same with p->progress from quiet, its outcome printed; the exit status. */
int sdm_run_render(const sdm_recipe *r, sdm_render_params *p, const sdm_device *devs, int n_devs, int quiet);

#endif
