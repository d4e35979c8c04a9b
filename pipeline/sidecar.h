/* The sidecar: the plan as JSON beside an output (sdm_plan_write_json),
 * every shown frame's parameters, so a user can find the frame they liked
 * and re-render it alone (`--frames K`) at more steps; and what the render
 * actually used (model and its fingerprint, size, steps, sampler, batch,
 * device, time, the command line's overrides), never null for a value in
 * effect. Where sidecars go and how they are committed with the outputs:
 * outputs.h. */
#ifndef SDM_SIDECAR_H
#define SDM_SIDECAR_H

#include <stddef.h>

#include "bundle.h"
#include "plan.h"
#include "recipe.h"

/* What the render used, beyond the recipe (its overrides applied). */
typedef struct {
    const char *model_dir;
    const char *fingerprint; /* sdm_bundle_fingerprint */
    const char *device; /* "cpu", "cuda:0" */
    const char *dtype; /* what the modules compute in */
    int width, height, batch; /* batch: frames per call at the end */
    double load_seconds, seconds;
    const char *texts; /* the prompts' chunks and weights as JSON (texts_json.h), or NULL */
    const float *time_ids; /* SDXL's six size and crop numbers the UNet got; NULL: not SDXL */
    const char *vae_dtype; /* what the VAE decoder computed in; NULL: dtype */
    const char *sampler_auto; /* what the recipe's `sampler: auto` ran ("pndm", "euler karras"); NULL: not auto */
} sdm_sidecar_used;

/* Storage for what sdm_sidecar_model_facts points at. */
typedef struct {
    char sampler[48];
    float time_ids[6];
} sdm_sidecar_facts;

/* Into u, what the recipe on bundle b at width x height used that the
 * recipe does not say: the sampler `auto` ran, SDXL's time ids and VAE
 * dtype; f holds them (as long as u is used). One engine or several, the
 * same record. */
void sdm_sidecar_model_facts(sdm_sidecar_used *u, sdm_sidecar_facts *f, const sdm_recipe *r, const sdm_bundle *b,
                             int width, int height);

/* Writes the sidecar into path (a temporary file of the render's file
 * set); messages name target, where it goes. u may be NULL (the plan alone). */
int sdm_sidecar_write(const char *path, const char *target, const sdm_recipe *r, const sdm_plan *p,
                      const sdm_sidecar_used *u, sdm_error *err);

#endif
