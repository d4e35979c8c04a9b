/* The frame planner: from a recipe to the list of frames to render and the
 * order they are shown in. Pure C, no model: every loop mode, hold, easing
 * and walk is resolved here and tested on its own. */
#ifndef SDM_PLAN_H
#define SDM_PLAN_H

#include <stdio.h>

#include "plan_frame.h"
#include "recipe.h"

typedef struct {
    sdm_plan_frame *renders; /* distinct frames, in render order: no two
                                   have the same effective inputs */
    int n_renders;
    int *sequence; /* output frame i shows renders[sequence[i]];
                                   renders are in order of first appearance */
    int n_sequence;
    sdm_plan_frame *shown; /* output frame i as the recipe places it; it
                                   may differ from renders[sequence[i]] in
                                   keyframes and weight, never in the picture */
    int *frame_index; /* output frame i is frame frame_index[i] of the
                                   full plan (i until sdm_plan_select) */
    double fps;
    char *retime_json; /* the retiming's curves (retime.h), written as the JSON's
                                   "retime" member; NULL: none */
    char *pace_json; /* the render's pace (pace.h), its "pace" member; NULL: none */
} sdm_plan;

/* Frames whose effective inputs are identical (a keyframe repeated, a
 * transition between keyframes that condition alike, a transition repeated)
 * become one render shown several times. */
int sdm_plan_make(const sdm_recipe *r, sdm_plan *out, sdm_error *err);
/* The same with the weights of some transitions given: weights[i], where
 * not NULL, holds the r->keyframes[i].frames weights of the transition
 * from keyframe i (weights[i][0] = 0), in place of its eased ones
 * (retime.h). weights NULL: sdm_plan_make. */
int sdm_plan_make_retimed(const sdm_recipe *r, const double *const *weights, sdm_plan *out, sdm_error *err);
/* The frame of the transition from keyframe a to b at weight t: its
 * guidance and seed weight follow t as a planned frame's do. */
sdm_plan_frame sdm_plan_transition_at(const sdm_recipe *r, int a, int b, double t);
/* Restricts the plan to the output frames listed in `spec` ("37", "0-9,20"),
 * for re-rendering chosen frames alone. */
int sdm_plan_select(sdm_plan *p, const char *spec, sdm_error *err);
/* Restricts the plan to renders [first, end), each shown once in render
 * order (a shard's segment, shard.h): frame_index[i] and shown[i] are those
 * of the first output frame that shows render first+i. */
int sdm_plan_keep_renders(sdm_plan *p, int first, int end, sdm_error *err);
/* Writes the human-readable plan (`sdmorph check`); a frame that shows an
 * earlier frame's render is marked (hold), (again) or (same as frame N). */
void sdm_plan_print(const sdm_plan *p, const sdm_recipe *r, FILE *f);
/* The same with `sampler` in place of the recipe's sampler name (NULL: the
 * recipe's): `check` names the sampler `auto` resolves to for the model. */
void sdm_plan_print_sampler(const sdm_plan *p, const sdm_recipe *r, const char *sampler, FILE *f);
/* Writes the plan as JSON: the recipe's settings, every keyframe (or the
 * walk) and every output frame's parameters (frame, render, key_a, key_b, t,
 * seed_a, seed_b, seed_t, guidance, interp, walk_k: those of `shown`), one
 * frame per line; frames with the same render show the same picture. The
 * sidecar next to a render and `sdmorph check --json`. 0, or -1 on a write error. */
int sdm_plan_write_json(const sdm_plan *p, const sdm_recipe *r, FILE *f);
/* The same with "texts": texts (a JSON value: the prompts' chunks and
 * weights, texts_json.h) where it is not NULL. */
int sdm_plan_write_json_texts(const sdm_plan *p, const sdm_recipe *r, const char *texts, FILE *f);
/* What a render (or check, with the model read) knows beyond the recipe. */
typedef struct {
    const char *model; /* the bundle used; NULL: the recipe's model */
    int width, height; /* the frame size used; 0: the recipe's */
    const char *render; /* a JSON object written as "render": ..., or NULL */
    const char *texts; /* a JSON value written as "texts": ... (the prompts' chunks and
                               weights, texts_json.h), or NULL */
} sdm_plan_json_extra;
/* sdm_plan_write_json with x's values in place of the recipe's (x may be NULL). */
int sdm_plan_write_json_with(const sdm_plan *p, const sdm_recipe *r, const sdm_plan_json_extra *x, FILE *f);
void sdm_plan_free(sdm_plan *p);

/* Easing curves on [0,1], exact at both ends. */
double sdm_ease_apply(sdm_ease e, double x);

#endif
