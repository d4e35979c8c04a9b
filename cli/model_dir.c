#include "model_dir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUILTIN "build/models/analytic"

int sdm_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* DIR/build/models/analytic for the executable's DIR; 0, or -1 if unknown. */
static int beside_executable(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;

    if (n <= 0)
        return -1;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return snprintf(buf, len, "%s/" BUILTIN, exe) < (int)len ? 0 : -1;
}

void sdm_default_model(char *buf, size_t len)
{
    const char *env = getenv("SDMORPH_MODEL");

    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    if (beside_executable(buf, len) == 0 && sdm_is_dir(buf))
        return;
    if (sdm_is_dir(BUILTIN) || beside_executable(buf, len))
        snprintf(buf, len, BUILTIN);
}
