#include "sidecar.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - path) : strlen(path);

    snprintf(buf, len, "%.*s.%s", (int)stem, path, ext);
}

int sdm_sidecar_write(const char *path, const sdm_recipe *r, const sdm_plan *p, sdm_error *err)
{
    char tmp[4200];
    FILE *f;
    int bad;

    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (!f)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(errno));
    bad = sdm_plan_write_json(p, r, f) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}
