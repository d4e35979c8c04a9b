/* Retiming (`retime: even`): a transition keeps its frame count, but its
 * weights move so that the picture changes by about as much between any
 * two adjacent frames. Embedding morphs are not even by themselves: the
 * picture may hold still for most of a transition and then change within
 * a few frames.
 *
 * A probe renders the transition at more weights than it has frames, at
 * fewer sampler steps (sdm_retime_probe_steps), in two rounds: round 0 at
 * evenly spaced weights, round 1 where round 0 saw the picture change most
 * (placed as the frames will be, by its coarse curve). The distance between
 * adjacent probe frames is the RMS distance of their final latents
 * (sdm_latent_distance, frame_distance.h: SSIM on 8-bit frames is not
 * additive at small steps, recipes/README.md says why); their running sum
 * D(t) is how far the picture has come by weight t, piecewise linear
 * between probe weights, and frame j of N is placed at
 * t_j = D^-1(ease(j/N) D(1)): even pace with ease linear, an ease in and
 * out that the eye sees with smoothstep. Keyframes stay at 0 and 1.
 *
 * The curves (probe weights and distances) go into the sidecar, each keyed
 * by everything the pictures of its transition depend on (model, size,
 * sampler, steps, both keyframes), so `check` prints the retimed weights
 * and a later render, or --frames K, uses them without probing again. */
#ifndef SDM_RETIME_H
#define SDM_RETIME_H

#include <stdint.h>

#include "plan.h"
#include "recipe.h"

/* Probe points of one transition at most; each point's final latent is
 * kept until the transition's curve is made. */
#define SDM_RETIME_MAX_POINTS 65

typedef struct {
    int from, to; /* keyframes */
    uint64_t key; /* what its pictures depend on (sdm_retime_init) */
    int n; /* probe points; 0: not probed */
    double *t, *d; /* weights 0 = t[0] < ... < t[n-1] = 1; d[k]: distance run up to t[k], d[0] = 0 */
} sdm_retime_curve;

typedef struct {
    int n_keyframes;
    sdm_retime_curve *curves; /* per keyframe: the transition from it (wanted where key != 0) */
    double **weights; /* per keyframe: its transition's frame weights where placed, else NULL */
    int probe_steps;
} sdm_retime;

/* Transitions of the recipe that ask for `retime: even` (a walk: none). */
int sdm_retime_wanted(const sdm_recipe *r);
/* The sampler steps a probe renders at: a quarter of the render's (rounded
 * up), at least min(steps, 4). The path the picture takes along the weight
 * is set in the first steps; the last ones add detail. A quarter, not a
 * third: a probe renders about as many frames as the transition, and on an
 * H100 the same 25 frames at a third of 30 steps took 41% of the render's
 * time (decode included), over the 35% a probe may take. */
int sdm_retime_probe_steps(int steps);

/* Curves for every wanted transition, none probed. model: the bundle's
 * fingerprint (NULL where unknown: then no curve is ever loaded). */
int sdm_retime_init(sdm_retime *rt, const sdm_recipe *r, const char *model, int width, int height, sdm_error *err);
/* Wanted transitions without a curve. */
int sdm_retime_missing(const sdm_retime *rt);
/* Reads the curves of a sidecar whose keys match; a missing or unreadable
 * file is no curve (0). Returns the number of curves taken. */
int sdm_retime_load(sdm_retime *rt, const char *sidecar);
/* The same from a "retime" value as sdm_retime_json makes it (another
 * engine's probe, devices.c). */
int sdm_retime_take(sdm_retime *rt, const char *retime_json);
/* Places the frames of every transition with a curve (rt->weights). */
int sdm_retime_place(sdm_retime *rt, const sdm_recipe *r, sdm_error *err);
/* The curves as the value of the sidecar's "retime" member (malloc'd), or
 * NULL out of memory. */
char *sdm_retime_json(const sdm_retime *rt);
void sdm_retime_free(sdm_retime *rt);

/* Frame weights of a transition of `frames` frames from curve c: w[0] = 0,
 * w[j] = D^-1(ease(j/frames) D(1)); where nothing changes (D(1) = 0) the
 * eased weights. */
void sdm_retime_weights_of(const sdm_retime_curve *c, sdm_ease ease, int frames, double *w);

/* The probe of missing curves: of as many transitions as keep their
 * probe latents within SDM_RETIME_PROBE_BYTES (at least one); probe again
 * while sdm_retime_missing says so. */
typedef struct sdm_retime_probe sdm_retime_probe;
#define SDM_RETIME_PROBE_BYTES ((size_t)64 << 20)

/* latent_n: floats in one frame's final latent. */
int sdm_retime_probe_new(sdm_retime *rt, const sdm_recipe *r, size_t latent_n, sdm_retime_probe **out, sdm_error *err);
/* The frames of round `round` (0 or 1) as a plan (output frame i is render
 * i); n_renders 0: nothing to render. */
int sdm_retime_probe_plan(sdm_retime_probe *pr, int round, sdm_plan *out, sdm_error *err);
/* Final latents of the round plan's renders [first, first+nb), on the host. */
int sdm_retime_probe_latents(sdm_retime_probe *pr, int first, int nb, const float *lat, sdm_error *err);
/* After a round: its distances measured, the curves made (round 1: into rt). */
int sdm_retime_probe_end_round(sdm_retime_probe *pr, int round, sdm_error *err);
/* Frames the probe rendered so far. */
int sdm_retime_probe_renders(const sdm_retime_probe *pr);
void sdm_retime_probe_free(sdm_retime_probe **pr);

#endif
