#include "torch_error.h"

#include <stdio.h>
#include <string.h>

static const char OOM_ADVICE[] = "lower --batch (or width/height) and try again";

int sdm_torch_error(sdm_error *err, sdm_torch_status st, const char *what)
{
    if (st == SDM_TORCH_OOM) {
        if (err && !err->code)
            err->out_of_memory = 1;
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of device memory during %s; %s (%s)", what, OOM_ADVICE,
                             sdm_torch_last_error());
    }
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s failed: %s", what, sdm_torch_last_error());
}

void sdm_torch_oom_advice(sdm_error *err, const char *advice)
{
    char old[sizeof err->msg];
    const char *at = err && err->out_of_memory ? strstr(err->msg, OOM_ADVICE) : NULL;

    if (!at)
        return;
    snprintf(old, sizeof old, "%s", err->msg);
    at = old + (at - err->msg);
    snprintf(err->msg, sizeof err->msg, "%.*s%s%s", (int)(at - old), old, advice, at + strlen(OOM_ADVICE));
}
