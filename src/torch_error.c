#include "torch_error.h"

int sdm_torch_error(sdm_error *err, sdm_torch_status st, const char *what)
{
    if (st == SDM_TORCH_OOM) {
        if (err && !err->code)
            err->out_of_memory = 1;
        return sdm_error_set(err, SDM_EXIT_RUNTIME,
                             "out of device memory during %s; lower --batch (or width/height) and try again (%s)", what,
                             sdm_torch_last_error());
    }
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s failed: %s", what, sdm_torch_last_error());
}
