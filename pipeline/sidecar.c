#include "sidecar.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sdm_sidecar_write(const char *path, const char *target, const sdm_recipe *r, const sdm_plan *p,
                      const char *texts, sdm_error *err)
{
    FILE *f = fopen(path, "w");
    int bad, e;

    if (!f)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target, strerror(errno));
    errno = 0;
    bad = sdm_plan_write_json_texts(p, r, texts, f) != 0;
    e = errno;
    bad |= fclose(f) != 0;
    if (bad)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target,
                             strerror(e ? e : errno ? errno : EIO));
    return 0;
}
