/* A failed libtorch call as an sdm_error: torch_api's status and message
 * (which state what happened) plus, on out-of-memory, the one piece of
 * advice the user reads. A leaf beside torch_api: every pipeline module
 * that calls libtorch reports through it, and it includes nothing of theirs. */
#ifndef SDM_TORCH_ERROR_H
#define SDM_TORCH_ERROR_H

#include "error.h"
#include "torch_api.h"

/* Sets err from status st of a call made while doing `what` ("UNet",
 * "VAE decode"): SDM_EXIT_RUNTIME with sdm_torch_last_error(); on
 * SDM_TORCH_OOM also err->out_of_memory, so a caller may retry smaller.
 * Returns -1. */
int sdm_torch_error(sdm_error *err, sdm_torch_status st, const char *what);
/* An out-of-memory err from sdm_torch_error with its advice ("lower
 * --batch (or width/height) and try again") replaced by `advice`, for a
 * caller that knows better (at one frame per call the batch cannot help).
 * Other errors are left as they are. */
void sdm_torch_oom_advice(sdm_error *err, const char *advice);

#endif
