/* A recipe: one YAML file describing a scene. Loaded with libyaml by
 * table-driven handlers; every error names file:line:col and what was
 * expected. The reference of every key is recipes/README.md. */
#ifndef SDM_RECIPE_H
#define SDM_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gif_options.h"
#include "image_fit.h"

typedef enum { SDM_INTERP_LERP, SDM_INTERP_SLERP, SDM_INTERP_COUNT } sdm_interp;
typedef enum { SDM_EASE_LINEAR, SDM_EASE_SMOOTHSTEP, SDM_EASE_COSINE, SDM_EASE_COUNT } sdm_ease;
typedef enum { SDM_LOOP_NONE, SDM_LOOP_PINGPONG, SDM_LOOP_CYCLE, SDM_LOOP_COUNT } sdm_loop;
/* How prompts are read: A1111's (word:1.3) syntax and BREAK, or as they are. */
typedef enum { SDM_WEIGHTING_A1111, SDM_WEIGHTING_NONE, SDM_WEIGHTING_COUNT } sdm_weighting;
typedef enum { SDM_RETIME_NONE, SDM_RETIME_EVEN, SDM_RETIME_COUNT } sdm_retime_mode;
typedef enum {
    SDM_SAMPLER_DDIM,
    SDM_SAMPLER_EULER,
    SDM_SAMPLER_EULER_A,
    SDM_SAMPLER_DPMPP_2M,
    SDM_SAMPLER_DPMPP_2M_SDE,
    SDM_SAMPLER_PNDM,
    SDM_SAMPLER_LMS,
    SDM_SAMPLER_HEUN,
    SDM_SAMPLER_UNIPC,
    SDM_SAMPLER_LCM,
    SDM_SAMPLER_AUTO,
    SDM_SAMPLER_COUNT
} sdm_sampler;

const char *sdm_interp_name(sdm_interp v);
int sdm_interp_from_str(const char *s, sdm_interp *out); /* 0 on success */
const char *sdm_ease_name(sdm_ease v);
int sdm_ease_from_str(const char *s, sdm_ease *out);
const char *sdm_loop_name(sdm_loop v);
int sdm_loop_from_str(const char *s, sdm_loop *out);
const char *sdm_weighting_name(sdm_weighting v);
int sdm_weighting_from_str(const char *s, sdm_weighting *out);
const char *sdm_sampler_name(sdm_sampler v);
/* A sampler's name or any alias (case does not matter): "Euler a",
 * euler_ancestral, "DPM++ 2M Karras", uni_pc, diffusers' class names...
 * *karras (may be NULL) is set where the name asks for Karras sigmas. */
int sdm_sampler_parse(const char *s, sdm_sampler *out, bool *karras);
int sdm_sampler_from_str(const char *s, sdm_sampler *out);
/* Whether a sampler takes Karras sigmas (auto: maybe; the model decides). */
bool sdm_sampler_has_karras(sdm_sampler s);
/* Entry i of the alias table (0..), for `sdmorph samplers`: NULL past the end. */
const char *sdm_sampler_alias(int i, sdm_sampler *kind, bool *karras);
const char *sdm_retime_mode_name(sdm_retime_mode v);
int sdm_retime_mode_from_str(const char *s, sdm_retime_mode *out);

/* A picture's strength where the recipe gives none: the schedule's last
 * 60% runs, so the composition holds and the details change. */
#define SDM_DEFAULT_STRENGTH 0.6

typedef struct {
    int line, col; /* of the keyframe's mapping, 1-based */
} sdm_mark;

typedef struct {
    char *prompt;
    char *negative; /* NULL: the recipe's negative ("" if none) */
    uint64_t seed;
    double guidance;
    int clip_skip; /* 1: the text encoder's last layer; 2: the one before (A1111's) */
    int hold; /* extra frames this keyframe stays (not re-rendered) */
    /* the transition from this keyframe to the next */
    int frames; /* frames of the transition, its start included (with bpm: from beats) */
    double beats; /* with the recipe's bpm: beats from this keyframe to the next, its
                               hold included; 0 without bpm */
    sdm_interp interp;
    sdm_ease ease;
    sdm_retime_mode retime; /* even: weights moved so the picture changes evenly (retime.h) */
    /* image-to-image: the picture the keyframe starts from (a relative path
     * in the file made relative to the recipe's folder), NULL: none */
    char *image;
    double strength; /* 0..1: how much of the schedule runs (diffusers' strength) */
    sdm_image_fit fit; /* how the picture is brought to the frame size */
    sdm_mark mark;
} sdm_keyframe;

typedef struct {
    char *prompt;
    char *negative;
    uint64_t seed; /* initial noise, fixed along the walk */
    double guidance;
    int clip_skip;
    int frames;
    double sigma; /* std of each step's embedding noise (0.02) */
    double anchor; /* pull back toward y[0] (0.5) */
    uint64_t noise_seed; /* keys the per-frame noise stream */
    bool closed; /* returns to its start seamlessly */
    char *image; /* the picture the walk stays around (as sdm_keyframe's), NULL: none */
    double strength;
    sdm_image_fit fit;
    sdm_mark mark;
} sdm_walk;

typedef struct {
    char *path; /* the recipe file, for messages */
    char *model; /* bundle directory; NULL: the CLI decides */
    int width, height; /* 0: the bundle's default */
    int steps;
    double guidance;
    char *negative;
    uint64_t seed;
    sdm_weighting weighting;
    char *embeddings; /* textual-inversion folder as written; NULL: the bundle's */
    char *embeddings_where; /* where it is given: "file:line:col", or the option that set it */
    double fps;
    double bpm; /* beats per minute (1..1000); 0: transitions in frames, not beats */
    sdm_sampler sampler;
    double eta; /* DDIM's eta (0: deterministic) */
    bool karras; /* Karras sigmas for sigma-based samplers (the key, or the sampler's name) */
    int timestep_spacing; /* sdm_spacing (bundle.h); 0: the model's */
    double guidance_rescale; /* diffusers' guidance_rescale: 0 (none) .. 1 */
    /* SDXL's size conditioning, [height, width] each (diffusers' order):
     * 0 sizes are the frame's; the crop corner defaults to [0, 0] */
    int original_size[2], crops_coords_top_left[2], target_size[2];
    bool size_conditioning; /* one of the three was given */
    char *size_where; /* where the first of them is given (as embeddings_where) */
    int batch; /* frames per UNet call; 0: automatic */
    char **outputs; /* output files; format by extension */
    int n_outputs;
    char *contact_sheet; /* PNG grid of frames, NULL if none */
    sdm_gif_palette gif_palette; /* a GIF's colours: one palette or one per frame */
    sdm_gif_dither gif_dither;
    sdm_loop loop;
    sdm_keyframe *keyframes; /* for a walk: one, made from the walk's prompt,
                                   negative, seed and guidance (plan frames
                                   point at it as key 0) */
    int n_keyframes;
    sdm_walk *walk; /* NULL unless the recipe is a variation walk */
    char **overrides; /* the command line's changes, "key=value" each, in order */
    int n_overrides;
} sdm_recipe;

/* A change to a top-level key made on the command line (--steps 8, --set
 * key=value): `value` is YAML, read and checked as the recipe's own value
 * would be; errors name `option`, as the user wrote it. */
typedef struct {
    const char *option; /* "--steps 8" */
    const char *key; /* "steps" */
    const char *value; /* "8" */
} sdm_recipe_override;

/* Whether key is a top-level recipe key. */
int sdm_recipe_is_key(const char *key);

/* Parses a recipe file. Errors (code SDM_EXIT_USAGE) read
 * "FILE:LINE:COL: what was wrong; what was expected". */
int sdm_recipe_load(const char *path, sdm_recipe **out, sdm_error *err);
/* Same, from memory (name is used in messages). */
int sdm_recipe_load_string(const char *name, const char *text, size_t len, sdm_recipe **out, sdm_error *err);
/* sdm_recipe_load with the command line's changes: each replaces (or adds)
 * its key before the recipe is checked, so what is refused is refused as
 * it would be in the file. Relative `output`, `contact_sheet` and `model`
 * paths in the file are made relative to the recipe's folder; those of an
 * override stay relative to the working directory. */
int sdm_recipe_load_with(const char *path, const sdm_recipe_override *ov, int n_ov, sdm_recipe **out, sdm_error *err);
int sdm_recipe_load_string_with(const char *name, const char *text, size_t len, const sdm_recipe_override *ov, int n_ov,
                                sdm_recipe **out, sdm_error *err);
void sdm_recipe_free(sdm_recipe **r);

/* Output frames the recipe shows (holds and loops included); the planner's
 * n_sequence is exactly this. At most SDM_MAX_SHOWN_FRAMES: the loader
 * refuses more, the planner plans no more. */
int64_t sdm_recipe_shown_frames(const sdm_recipe *r);
#define SDM_MAX_SHOWN_FRAMES 1000000

/* The recipe's embeddings folder: as written where that exists or is
 * absolute, else beside the recipe; NULL where the recipe names none.
 * 0, or -1 if it does not fit len. */
int sdm_recipe_embeddings_dir(const sdm_recipe *r, char *buf, size_t len);

/* Whether some keyframe (or the walk) starts from a picture. */
bool sdm_recipe_has_images(const sdm_recipe *r);
/* A keyframe's strength as frames mix it: its own with a picture, 1 (the
 * whole schedule, from noise) without one. */
double sdm_keyframe_strength(const sdm_keyframe *kf);

/* The negative prompt a keyframe or the walk reads: its own, else the
 * recipe's, else "". */
const char *sdm_recipe_negative(const sdm_recipe *r, const char *own);

#endif
