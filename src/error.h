/* Errors travel up as an sdm_error: an exit code and a message for humans.
 * Recipe errors say file:line:col; runtime errors name the cause. */
#ifndef SDM_ERROR_H
#define SDM_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum {
    SDM_EXIT_OK = 0,
    SDM_EXIT_RUNTIME = 1, /* model, device, disk: the run failed */
    SDM_EXIT_USAGE = 2, /* bad command line or bad recipe */
};

typedef struct sdm_error {
    int code; /* SDM_EXIT_*; 0 while nothing went wrong */
    int out_of_memory; /* the device ran out of memory: a smaller batch may fit */
    char msg[2048];
} sdm_error;

/* Sets the error (the first one wins: later calls do not overwrite it).
 * Returns -1 so callers can write `return sdm_error_set(...)`. */
int sdm_error_set(sdm_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int sdm_error_setv(sdm_error *err, int code, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Log lines go to stderr unless a callback is installed (tests capture them). */
typedef enum { SDM_LOG_DEBUG, SDM_LOG_INFO, SDM_LOG_WARN, SDM_LOG_ERROR, SDM_LOG_COUNT } sdm_log_level;
typedef void (*sdm_log_fn)(sdm_log_level level, const char *msg, void *user);
void sdm_log_set_callback(sdm_log_fn fn, void *user);
void sdm_log_set_level(sdm_log_level min_level);
void sdm_log(sdm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define sdm_warn(...) sdm_log(SDM_LOG_WARN, __VA_ARGS__)
#define sdm_info(...) sdm_log(SDM_LOG_INFO, __VA_ARGS__)

#endif
