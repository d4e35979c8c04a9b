#include "error.h"

#include <stdio.h>

int sdm_error_setv(sdm_error *err, int code, const char *fmt, va_list ap)
{
    if (!err || err->code)
        return -1;
    err->code = code ? code : SDM_EXIT_RUNTIME;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return -1;
}

int sdm_error_set(sdm_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sdm_error_setv(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

static sdm_log_fn log_fn;
static void *log_user;
static sdm_log_level log_min = SDM_LOG_INFO;

void sdm_log_set_callback(sdm_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void sdm_log_set_level(sdm_log_level min_level)
{
    log_min = min_level;
}

void sdm_log(sdm_log_level level, const char *fmt, ...)
{
    static const char *prefix[SDM_LOG_COUNT] = { "debug: ", "", "warning: ", "error: " };
    char msg[2048];
    va_list ap;

    if (level < log_min && !log_fn)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(level, msg, log_user);
    else
        fprintf(stderr, "sdmorph: %s%s\n", prefix[level], msg);
}
