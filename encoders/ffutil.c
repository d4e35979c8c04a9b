#include "ffutil.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/log.h>

static void log_bridge(void *avcl, int level, const char *fmt, va_list ap)
{
    char line[1024];
    int print_prefix = 1;
    size_t n;

    if (level > AV_LOG_VERBOSE)
        return;
    av_log_format_line2(avcl, level, fmt, ap, line, sizeof line, &print_prefix);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0)
        return;
    /* palettegen warns when two of its colour boxes average to the same
     * colour: harmless (one palette entry wasted), and per-frame palettes
     * would print it for many frames. */
    if (level == AV_LOG_WARNING && strstr(line, "Duped color"))
        level = AV_LOG_VERBOSE;
    if (level <= AV_LOG_ERROR)
        sdm_log(SDM_LOG_ERROR, "%s", line);
    else if (level <= AV_LOG_WARNING)
        sdm_log(SDM_LOG_WARN, "%s", line);
    else
        sdm_log(SDM_LOG_DEBUG, "%s", line);
}

static void log_init_once(void)
{
    av_log_set_callback(log_bridge);
}

void sdm_ff_log_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, log_init_once);
}

int sdm_ff_error(sdm_error *err, int averr, const char *fmt, ...)
{
    char what[1024], why[AV_ERROR_MAX_STRING_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    av_strerror(averr, why, sizeof why);
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: %s", what, why);
}
