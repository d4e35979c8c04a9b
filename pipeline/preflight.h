/* Everything a render refuses, decided before any model loads: the plan
 * (and --frames), every file it would write (outputs.h), the limits of the
 * output formats (sdm_sink_check), and those of the model read from its
 * model.yaml alone, no module loaded: the image size against its VAE scale,
 * the steps and sampler against its training schedule. `sdmorph check`
 * runs exactly this; `sdmorph render` runs it first, so the two agree on
 * every limit. With --shard, the plan is the shard's renders and the one
 * output its segment (segment.h). */
#ifndef SDM_PREFLIGHT_H
#define SDM_PREFLIGHT_H

#include "bundle.h"
#include "outputs.h"
#include "plan.h"
#include "render_params.h"
#include "retime.h"
#include "sink.h"

typedef struct {
    sdm_plan plan; /* with --frames applied */
    sdm_outputs outs; /* what the render writes (when p->write_outputs) */
    sdm_bundle bundle; /* model.yaml of p->model_dir */
    int has_bundle; /* 0 without p->model_dir: the model's limits were not checked */
    int width, height; /* of the frames; without a bundle the recipe's, else 512 */
    char model_yaml[1100]; /* the bundle's model.yaml, an input */
    sdm_retime retime; /* transitions to retime, and the curves their full render's sidecar kept */
    char *retime_sidecar; /* that sidecar (NULL: none), where the render writes the curves */
    char segment[SDM_SEGMENT_PATH_MAX]; /* --shard: the segment's frames (.rgb) */
} sdm_preflight;

int sdm_preflight_run(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *out, sdm_error *err);
void sdm_preflight_free(sdm_preflight *pf);
/* pf->plan made again with the frames of every transition that has a curve
 * in pf->retime placed by it (and --frames applied): after a probe. */
int sdm_preflight_replan(const sdm_recipe *r, const sdm_render_params *p, sdm_preflight *pf, sdm_error *err);

/* The sink settings the render opens its outputs with, and checks them by. */
sdm_sink_params sdm_preflight_sink_params(const sdm_recipe *r, const sdm_preflight *pf);

#endif
