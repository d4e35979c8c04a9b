/* Encoder throughput at 512x512: frames per second through the sink (queue,
 * encoder thread, file finished and renamed) for MP4, GIF and the contact
 * sheet alone and all together, against the rate the renderer is to
 * produce frames on the GPU: one frame per 0.15 s = 6.67 frames/s. A ratio
 * above 1 means encoding keeps up and the renderer never waits on it. Then
 * a paced run pushes at that rate and reports how long push() blocked.
 *
 *   make build/bench/bench_encoders && build/bench/bench_encoders [frames [only]]
 * where `only` runs just the cases whose name contains it ("gif", "sheet"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sink.h"

#define W 512
#define H 512
#define TARGET_FPS (1.0 / 0.15)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Smooth moving colour fields plus fine grain, roughly what a diffusion
 * render gives an encoder to chew on. */
static void make_frame(int k, uint8_t *rgb)
{
    unsigned x = 2463534242u + 977u * k;
    double t = k * 0.05;

    for (int y = 0; y < H; y++)
        for (int i = 0; i < W; i++) {
            double u = (double)i / W, v = (double)y / H;
            double blob = exp(-((u - 0.5 - 0.3 * cos(t)) * (u - 0.5 - 0.3 * cos(t)) +
                                (v - 0.5 - 0.3 * sin(t)) * (v - 0.5 - 0.3 * sin(t))) / 0.03);
            double rip = sin(40 * u + 25 * v + 3 * t) * sin(31 * v - 2 * t);
            uint8_t *p = rgb + 3 * ((size_t)y * W + i);
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p[0] = (uint8_t)fmin(255, fmax(0, 50 + 140 * u + 50 * blob + 12 * rip + (int)(x & 7) - 4));
            p[1] = (uint8_t)fmin(255, fmax(0, 40 + 110 * v + 80 * blob + 10 * rip + (int)(x >> 3 & 7) - 4));
            p[2] = (uint8_t)fmin(255, fmax(0, 120 + 80 * (1 - u) + 30 * blob + 14 * rip + (int)(x >> 6 & 7) - 4));
        }
}

/* Pushes n frames (paced at `pace` frames/s if > 0) and finishes; returns
 * the wall time from open to the renamed files, or -1. */
static double run(const char *const *outs, int n_outs, const char *sheet, sdm_gif_palette pal,
                  uint8_t *const *frames, int n_frames, int n, double pace, double *max_push, double *finish)
{
    sdm_sink_params p = sdm_sink_default_params();
    sdm_sink *s = NULL;
    sdm_error err = { 0 };
    double t0 = now_s(), t = -1;

    p.width = W;
    p.height = H;
    p.fps = 24;
    p.total_frames = n;
    p.gif_palette = pal;
    p.comment = "sdmorph encoder benchmark";
    *max_push = 0;
    if (sdm_sink_open(outs, n_outs, sheet, &p, &s, &err) < 0)
        goto end;
    for (int k = 0; k < n; k++) {
        double a = now_s(), b;
        if (sdm_sink_push(s, frames[k % n_frames], &err) < 0)
            goto end;
        b = now_s();
        if (b - a > *max_push)
            *max_push = b - a;
        if (pace > 0) {
            double next = t0 + (k + 1) / pace;
            while (now_s() < next)
                usleep(1000);
        }
    }
    *finish = now_s();
    if (sdm_sink_finish(s, 0, &err) < 0)
        goto end;
    t = now_s() - t0;
    *finish = now_s() - *finish;
end:
    if (t < 0)
        fprintf(stderr, "bench_encoders: %s\n", err.msg);
    sdm_sink_free(&s);
    return t;
}

static void cpu_name(char *buf, size_t size)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];

    snprintf(buf, size, "unknown CPU");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(buf, size, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
}

int main(int argc, char **argv)
{
    enum { N_FRAMES = 24 };
    int n = argc > 1 ? atoi(argv[1]) : 96;
    const char *only = argc > 2 ? argv[2] : NULL;
    char dir[] = "/tmp/sdm-bench-enc-XXXXXX", cpu[128], mp4[64], gif[64], png[64];
    uint8_t *frames[N_FRAMES];
    double max_push, finish, t;
    struct rusage ru;
    long rss0;
    struct {
        const char *name;
        const char *outs[2];
        int n_outs;
        const char *sheet;
        sdm_gif_palette pal;
    } cases[] = {
        { "mp4 (x264 medium, crf 18)", { mp4 }, 1, NULL, SDM_GIF_PALETTE_FRAME },
        { "gif (palette per frame, bayer)", { gif }, 1, NULL, SDM_GIF_PALETTE_FRAME },
        { "gif (palette per stream, bayer)", { gif }, 1, NULL, SDM_GIF_PALETTE_STREAM },
        { "png contact sheet", { NULL }, 0, png, SDM_GIF_PALETTE_FRAME },
        { "mp4 + gif + sheet, one pass", { mp4, gif }, 2, png, SDM_GIF_PALETTE_FRAME },
    };

    if (n < 1 || !mkdtemp(dir)) {
        fprintf(stderr, "usage: bench_encoders [frames >= 1]\n");
        return 1;
    }
    snprintf(mp4, sizeof mp4, "%s/b.mp4", dir);
    snprintf(gif, sizeof gif, "%s/b.gif", dir);
    snprintf(png, sizeof png, "%s/b.png", dir);
    for (int k = 0; k < N_FRAMES; k++) {
        frames[k] = malloc(W * H * 3);
        make_frame(k, frames[k]);
    }
    getrusage(RUSAGE_SELF, &ru);
    rss0 = ru.ru_maxrss;
    cpu_name(cpu, sizeof cpu);
    printf("encoders, %dx%d, %d frames, on %s (%ld cores); GPU target rate %.2f frames/s\n",
           W, H, n, cpu, sysconf(_SC_NPROCESSORS_ONLN), TARGET_FPS);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && !strstr(cases[i].name, only))
            continue;
        t = run(cases[i].outs, cases[i].n_outs, cases[i].sheet, cases[i].pal, frames, N_FRAMES, n, 0,
                &max_push, &finish);
        if (t < 0)
            return 1;
        printf("  %-34s %7.1f frames/s = %5.2fx the GPU target rate  (finish %.2f s of %.2f s)\n",
               cases[i].name, n / t, n / t / TARGET_FPS, finish, t);
    }
    /* The render loop's view: frames arrive at the target rate; how long
     * did push() hold the renderer? */
    if (!only) {
        int paced = 20;
        const char *outs[] = { mp4, gif };
        t = run(outs, 2, png, SDM_GIF_PALETTE_FRAME, frames, N_FRAMES, paced, TARGET_FPS, &max_push, &finish);
        if (t < 0)
            return 1;
        printf("  paced at %.2f frames/s, mp4 + gif + sheet: longest push %.2f ms, finish %.2f s\n",
               TARGET_FPS, max_push * 1e3, finish);
    }
    getrusage(RUSAGE_SELF, &ru);
    printf("  peak memory %ld MiB, %ld MiB before the first sink (the benchmark's own frames, libraries)\n",
           ru.ru_maxrss / 1024, rss0 / 1024);
    for (int k = 0; k < N_FRAMES; k++)
        free(frames[k]);
    unlink(mp4);
    unlink(gif);
    unlink(png);
    rmdir(dir);
    return 0;
}
