/* The options that change a recipe without editing it, shared by render
 * and check so the two read the same recipe: --steps N, --size WxH,
 * --seed N, --sampler NAME and --set KEY=VALUE (any top-level key). */
#ifndef SDM_OVERRIDES_H
#define SDM_OVERRIDES_H

#include "recipe.h"

typedef struct {
    sdm_recipe_override *items;
    int n;
    char **owned; /* the strings made here */
    int n_owned, cap;
} sdm_overrides;

/* Room for the overrides of argc arguments; 0, or -1 when out of memory. */
int sdm_overrides_init(sdm_overrides *o, int argc);
/* When argv[*i] is one of the options: 1, *i on the last argument read;
 * -1 after a message (prefixed with cmd) when its value is missing or
 * malformed; 0 for any other argument. */
int sdm_overrides_take(sdm_overrides *o, int argc, char **argv, int *i, const char *cmd);
void sdm_overrides_free(sdm_overrides *o);

#endif
