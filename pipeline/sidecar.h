/* The sidecar: the plan as JSON beside an output (sdm_plan_write_json),
 * every shown frame's parameters, so a user can find the frame they liked
 * and re-render it alone (`--frames K`) at more steps. Where sidecars go
 * and how they are committed with the outputs: outputs.h. */
#ifndef SDM_SIDECAR_H
#define SDM_SIDECAR_H

#include "plan.h"
#include "recipe.h"

/* Writes the sidecar into path (a temporary file of the render's file
 * set); messages name target, where it goes. texts: the prompts' chunks
 * and weights as JSON (NULL: none). */
int sdm_sidecar_write(const char *path, const char *target, const sdm_recipe *r, const sdm_plan *p,
                      const char *texts, sdm_error *err);

#endif
