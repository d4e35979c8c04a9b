/* sdmorph measure VIDEO: the pace (pace.h) of any MP4 or GIF, decoded by
 * libavformat/libavcodec (probe.h), or of raw RGB24 frames, so that our
 * renders and anyone else's are measured alike. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "options.h"
#include "pace.h"
#include "probe.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph measure VIDEO... [--raw WxH] [--each] [--json]\n"
            "\n"
            "Prints the pace of each video (MP4, GIF, or anything FFmpeg decodes): the\n"
            "distance sqrt(1 - SSIM) on BT.601 luma between each two adjacent frames,\n"
            "its largest and median value over the whole video, and at the seam where\n"
            "it meets itself on repeat (the last pair, last to first, the first pair).\n"
            "Pairs of identical frames (holds) are skipped, as a render's report does.\n"
            "\n"
            "  --raw WxH   VIDEO is raw RGB24 frames of that size (a render's .rgb output)\n"
            "  --each      also print every pair's distance\n"
            "  --json      print the report as JSON (the sidecar's \"pace\" member)\n"
            "\n"
            "Exit status: 0 measured, 1 a file cannot be read or decoded, 2 bad usage.\n");
}

typedef struct {
    sdm_pace *pace;
    int each, width, height;
    uint8_t *prev; /* --each: the frame before */
    sdm_ssim *ssim;
} measure;

static int on_frame(void *user, int index, const uint8_t *rgb, int width, int height)
{
    measure *m = user;
    size_t bytes = (size_t)width * height * 3;

    if (!m->pace) {
        m->width = width;
        m->height = height;
        m->pace = sdm_pace_new(width, height);
        if (!m->pace)
            return -1;
        if (m->each && (!(m->prev = malloc(bytes)) || !(m->ssim = sdm_ssim_new(width, height))))
            return -1;
    }
    if (width != m->width || height != m->height)
        return -1;
    if (m->each && index > 0)
        printf("  %d-%d %.6f\n", index - 1, index, sdm_ssim_distance(sdm_ssim_rgb(m->ssim, m->prev, rgb)));
    if (m->each)
        memcpy(m->prev, rgb, bytes);
    return sdm_pace_push(m->pace, rgb, -1, -1);
}

static int read_raw(const char *path, int w, int h, measure *m, sdm_error *err)
{
    size_t bytes = (size_t)w * h * 3;
    uint8_t *buf = malloc(bytes);
    FILE *f = fopen(path, "rb");
    int n = 0, rc = -1;

    if (!buf || !f) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot read %s: %s", path, buf ? strerror(errno) : "out of memory");
        goto end;
    }
    for (size_t got; (got = fread(buf, 1, bytes, f)) > 0; n++) {
        if (got != bytes) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: %zu bytes left over: not %dx%d RGB24 frames", path, got, w, h);
            goto end;
        }
        if (on_frame(m, n, buf, w, h)) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory (or frames under %d pixels)", path,
                          SDM_SSIM_WINDOW);
            goto end;
        }
    }
    rc = 0;
end:
    if (f)
        fclose(f);
    free(buf);
    return rc;
}

/* One video: decoded, measured, its report printed. */
static int measure_one(const char *path, int raw_w, int raw_h, int each, int json)
{
    measure m = { NULL, each, 0, 0, NULL, NULL };
    sdm_pace_report rep;
    sdm_probe_info info;
    sdm_error err = { 0 };
    char *js = NULL;
    int rc = SDM_EXIT_RUNTIME;

    memset(&rep, 0, sizeof rep);
    if (!json)
        printf("%s:\n", path);
    if (raw_w ? read_raw(path, raw_w, raw_h, &m, &err) : sdm_probe_file(path, on_frame, &m, 0, &info, &err)) {
        fprintf(stderr, "sdmorph measure: %s\n", err.msg[0] ? err.msg : "frames under 11 pixels or out of memory");
        goto end;
    }
    if (!m.pace) {
        fprintf(stderr, "sdmorph measure: %s: no frames\n", path);
        goto end;
    }
    if (sdm_pace_report_make(m.pace, &rep) || (json && !(js = sdm_pace_json(&rep)))) {
        fprintf(stderr, "sdmorph measure: out of memory\n");
        goto end;
    }
    if (json)
        printf("%s\n", js);
    else
        sdm_pace_print(&rep, stdout);
    rc = SDM_EXIT_OK;
end:
    free(js);
    sdm_pace_free(&m.pace);
    sdm_ssim_free(&m.ssim);
    free(m.prev);
    return rc;
}

int sdm_cmd_measure(int argc, char **argv)
{
    const char *raw = NULL, *v;
    int each = 0, json = 0, w = 0, h = 0, n = 0, rc = SDM_EXIT_OK;

    for (int i = 1; i < argc; i++) {
        int got = sdm_option_value(argc, argv, &i, "--raw", &v);
        if (got < 0) {
            fprintf(stderr, "sdmorph measure: --raw needs a size, e.g. 512x512\n");
            return SDM_EXIT_USAGE;
        }
        if (got) {
            raw = v;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return SDM_EXIT_OK;
        } else if (!strcmp(argv[i], "--each")) {
            each = 1;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sdmorph measure: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return SDM_EXIT_USAGE;
        } else {
            n++;
        }
    }
    if (raw &&
        (sscanf(raw, "%dx%d", &w, &h) != 2 || w < SDM_SSIM_WINDOW || h < SDM_SSIM_WINDOW || w > 16384 || h > 16384)) {
        fprintf(stderr, "sdmorph measure: --raw wants WIDTHxHEIGHT, each %d..16384, not '%s'\n", SDM_SSIM_WINDOW, raw);
        return SDM_EXIT_USAGE;
    }
    if (!n) {
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--raw"))
            i++;
        else if (argv[i][0] != '-' || !argv[i][1])
            rc |= measure_one(argv[i], w, h, each && !json, json);
    }
    return rc ? SDM_EXIT_RUNTIME : SDM_EXIT_OK;
}
