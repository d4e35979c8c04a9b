/* Where the commands find a model bundle when none is named. */
#ifndef SDM_MODEL_DIR_H
#define SDM_MODEL_DIR_H

#include <stddef.h>

/* $SDMORPH_MODEL, else the built-in analytic bundle: build/models/analytic
 * beside the executable, else in the working directory (the first that is
 * a directory; beside the executable when neither is). */
void sdm_default_model(char *buf, size_t len);
int sdm_is_dir(const char *path);

#endif
