/* Encoders at 512x512, three parts:
 *
 * 1. Throughput: frames per second through the sink (queue, encoder
 *    threads, file finished and renamed) for raw .rgb, MP4, GIF and the
 *    contact sheet alone and MP4 + GIF + sheet together, against the rate
 *    the renderer produces frames on the GPU (0.12 s per rendered frame; a
 *    pingpong shows about two frames per rendered one, so the encoders must
 *    take 2 / 0.12 = 16.7 frames/s). The GIF at 1 worker thread and at the
 *    default (one per CPU, at most 8) shows what the worker pool gives.
 * 2. Paced: frames pushed at that rate; how long push() held the renderer.
 * 3. GIF size and quality: a palette per frame against one palette for the
 *    loop (unchanged pixels transparent), on a textured pingpong morph of
 *    three scenes: bytes, and PSNR of every decoded frame against its source.
 *
 *   make build/bench/bench_encoders && build/bench/bench_encoders [frames [only]]
 * where `only` runs just the cases whose name contains it ("gif", "size"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"
#include "sink.h"
#include "workpool.h"

#define W 512
#define H 512
#define TARGET_FPS (2 / 0.12)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- test pictures --------------------------------------------------------- */

/* Value noise on an integer lattice, smoothly interpolated; fbm sums octaves. */
static double lattice(int x, int y, unsigned seed)
{
    unsigned h = (unsigned)x * 374761393u + (unsigned)y * 668265263u + seed * 2246822519u;
    h = (h ^ (h >> 13)) * 1274126177u;
    return ((h ^ (h >> 16)) & 0xffff) / 65535.0;
}

static double noise(double x, double y, unsigned seed)
{
    int xi = (int)floor(x), yi = (int)floor(y);
    double fx = x - xi, fy = y - yi, a, b;

    fx = fx * fx * (3 - 2 * fx);
    fy = fy * fy * (3 - 2 * fy);
    a = lattice(xi, yi, seed) + fx * (lattice(xi + 1, yi, seed) - lattice(xi, yi, seed));
    b = lattice(xi, yi + 1, seed) + fx * (lattice(xi + 1, yi + 1, seed) - lattice(xi, yi + 1, seed));
    return a + fy * (b - a);
}

static double fbm(double x, double y, unsigned seed)
{
    double sum = 0, amp = 0.5;

    for (int o = 0; o < 5; o++, amp *= 0.5, x *= 2.03, y *= 2.03)
        sum += amp * noise(x, y, seed + o);
    return sum;
}

/* Three scenes of a morph, as a diffusion model paints them: textured all
 * over at several scales. A city at night (dark blue, neon spots), a forest
 * (greens and browns), a desert at sunset (oranges to purple). */
static void make_scene(int s, uint8_t *rgb)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double u = (double)x / W, v = (double)y / H, n = fbm(u * 6, v * 6, 11 + 7 * s);
            double m = fbm(u * 24, v * 24, 101 + 7 * s), r, g, b;
            uint8_t *p = rgb + 3 * ((size_t)y * W + x);
            if (s == 0) {
                double neon = pow(fmax(0, m - 0.55) * 2.2, 2);
                r = 20 + 60 * n + 230 * neon * (u > 0.5);
                g = 25 + 50 * n * v + 120 * neon * (u <= 0.5);
                b = 60 + 110 * n + 200 * neon;
            } else if (s == 1) {
                r = 30 + 90 * m * (1 - v) + 40 * n;
                g = 60 + 130 * n + 40 * m;
                b = 20 + 40 * m * v;
            } else {
                r = 150 + 100 * (1 - v) * n + 30 * m;
                g = 60 + 110 * (1 - v) * m + 20 * n;
                b = 50 + 120 * v * n;
            }
            p[0] = (uint8_t)fmin(255, fmax(0, r));
            p[1] = (uint8_t)fmin(255, fmax(0, g));
            p[2] = (uint8_t)fmin(255, fmax(0, b));
        }
}

typedef struct {
    uint8_t *scene[3];
    float *detail; /* fine texture, 2W x H, slid across as the morph goes */
    int shown; /* frames of the pingpong */
} morph;

static int morph_init(morph *m, int shown)
{
    m->shown = shown;
    m->detail = malloc(sizeof(float) * 2 * W * H);
    for (int s = 0; s < 3; s++) {
        m->scene[s] = malloc(W * H * 3);
        if (!m->scene[s])
            return -1;
        make_scene(s, m->scene[s]);
    }
    if (!m->detail)
        return -1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < 2 * W; x++)
            m->detail[(size_t)y * 2 * W + x] = (float)(24 * (fbm(x / 9.0, y / 9.0, 555) - 0.5));
    return 0;
}

static void morph_free(morph *m)
{
    for (int s = 0; s < 3; s++)
        free(m->scene[s]);
    free(m->detail);
}

/* Frame k of the pingpong A -> B -> C -> B -> A: rendered frames cross-fade
 * between neighbouring scenes (smoothstep), and the fine detail moves with
 * the morph, so, as in a diffusion morph, every pixel changes a little from
 * one frame to the next. */
static void morph_frame(const morph *m, int k, uint8_t *rgb)
{
    int half = m->shown / 2 + 1; /* rendered frames: 120 shown -> 61 */
    double pos = k < half ? k : m->shown - k, u = 2.0 * pos / (half - 1), t;
    int s = u >= 1 ? 1 : 0, shift = (int)(u * 40);

    t = u - s;
    t = t * t * (3 - 2 * t);
    for (int y = 0; y < H; y++) {
        const float *d = m->detail + (size_t)y * 2 * W + shift;
        for (int x = 0; x < W; x++) {
            size_t i = 3 * ((size_t)y * W + x);
            for (int c = 0; c < 3; c++) {
                double a = m->scene[s][i + c], b = m->scene[s + 1][i + c];
                rgb[i + c] = (uint8_t)fmin(255, fmax(0, a + t * (b - a) + d[x] + 0.5));
            }
        }
    }
}

/* ---- throughput ------------------------------------------------------------ */

/* Pushes n frames (paced at `pace` frames/s if > 0) and finishes; returns
 * the wall time from open to the renamed files, or -1. */
static double run(const char *const *outs, int n_outs, const char *sheet, sdm_gif_palette pal, int threads,
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
    p.threads = threads;
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

typedef struct {
    const char *name;
    const char *outs[2];
    int n_outs;
    const char *sheet;
    sdm_gif_palette pal;
    int threads;
} bench_case;

static int throughput(const char *dir, uint8_t *const *frames, int n_frames, int n, const char *only)
{
    char raw[256], mp4[256], gif[256], png[256], name[96];
    int auto_threads = sdm_workpool_threads(0);
    double max_push, finish, t, raw_fps = 0;
    bench_case cases[] = {
        { ".rgb alone (raw frames)", { raw }, 1, NULL, SDM_GIF_PALETTE_FRAME, 0 },
        { "mp4 (x264 medium, crf 18)", { mp4 }, 1, NULL, SDM_GIF_PALETTE_FRAME, 0 },
        { "gif, palette per frame", { gif }, 1, NULL, SDM_GIF_PALETTE_FRAME, 1 },
        { "gif, palette per frame", { gif }, 1, NULL, SDM_GIF_PALETTE_FRAME, 0 },
        { "gif, palette per stream", { gif }, 1, NULL, SDM_GIF_PALETTE_STREAM, 1 },
        { "gif, palette per stream", { gif }, 1, NULL, SDM_GIF_PALETTE_STREAM, 0 },
        { "png contact sheet", { NULL }, 0, png, SDM_GIF_PALETTE_FRAME, 0 },
        { "mp4 + gif + sheet", { mp4, gif }, 2, png, SDM_GIF_PALETTE_FRAME, 1 },
        { "mp4 + gif + sheet", { mp4, gif }, 2, png, SDM_GIF_PALETTE_FRAME, 0 },
        { "mp4 + gif (per stream) + sheet", { mp4, gif }, 2, png, SDM_GIF_PALETTE_STREAM, 0 },
    };

    snprintf(raw, sizeof raw, "%s/b.rgb", dir);
    snprintf(mp4, sizeof mp4, "%s/b.mp4", dir);
    snprintf(gif, sizeof gif, "%s/b.gif", dir);
    snprintf(png, sizeof png, "%s/b.png", dir);
    printf(
        "throughput: frames/s through the sink, bayer dither; GIF worker threads 1 or the default %d; "
        "x264 picks its own threads\n",
        auto_threads);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bench_case *c = &cases[i];
        int threads = c->threads ? c->threads : auto_threads;
        if (strstr(c->name, "gif"))
            snprintf(name, sizeof name, "%s, %d thread%s", c->name, threads, threads > 1 ? "s" : "");
        else
            snprintf(name, sizeof name, "%s", c->name);
        if (only && !strstr(name, only))
            continue;
        t = run(c->outs, c->n_outs, c->sheet, c->pal, c->threads, frames, n_frames, n, 0, &max_push, &finish);
        if (t < 0)
            return -1;
        if (i == 0)
            raw_fps = n / t;
        printf("  %-46s %7.1f frames/s = %5.2fx the GPU's rate = %5.3fx .rgb's  (finish %.2f of %.2f s)\n", name, n / t,
               n / t / TARGET_FPS, raw_fps > 0 ? n / t / raw_fps : 0.0, finish, t);
    }
    /* The render loop's view: frames arrive at the GPU's rate; how long did push() hold the renderer? */
    if (!only || strstr("paced", only)) {
        const char *outs[] = { mp4, gif };
        int paced = 48;
        t = run(outs, 2, png, SDM_GIF_PALETTE_FRAME, 0, frames, n_frames, paced, TARGET_FPS, &max_push, &finish);
        if (t < 0)
            return -1;
        printf("  paced at %.2f frames/s, mp4 + gif + sheet, %d GIF threads: longest push %.2f ms, finish %.2f s\n",
               TARGET_FPS, auto_threads, max_push * 1e3, finish);
    }
    unlink(raw);
    unlink(mp4);
    unlink(gif);
    unlink(png);
    return 0;
}

/* ---- GIF size and quality -------------------------------------------------- */

typedef struct {
    const morph *m;
    uint8_t *ref;
    double sum, min;
    int n;
} psnr_acc;

static int psnr_frame(void *user, int index, const uint8_t *rgb, int w, int h)
{
    psnr_acc *a = user;
    double q;

    morph_frame(a->m, index, a->ref);
    q = sdm_probe_psnr(a->ref, rgb, (size_t)w * h * 3);
    a->sum += q;
    a->min = a->n == 0 || q < a->min ? q : a->min;
    a->n++;
    return 0;
}

static int gif_size(const char *dir, const morph *m, sdm_gif_palette pal, sdm_gif_dither dither)
{
    char path[256];
    const char *outs[1] = { path };
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_sink *s = NULL;
    sdm_error err = { 0 };
    psnr_acc a = { m, malloc(W * H * 3), 0, 0, 0 };
    uint8_t *rgb = malloc(W * H * 3);
    FILE *f;
    long size = -1;
    double t0 = now_s(), t;
    int ret = -1;

    snprintf(path, sizeof path, "%s/size.gif", dir);
    p.width = W;
    p.height = H;
    p.fps = 24;
    p.gif_palette = pal;
    p.gif_dither = dither;
    if (!a.ref || !rgb || sdm_sink_open(outs, 1, NULL, &p, &s, &err) < 0)
        goto end;
    for (int k = 0; k < m->shown; k++) {
        morph_frame(m, k, rgb);
        if (sdm_sink_push(s, rgb, &err) < 0)
            goto end;
    }
    if (sdm_sink_finish(s, 0, &err) < 0)
        goto end;
    t = now_s() - t0;
    if ((f = fopen(path, "rb"))) {
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
    }
    if (sdm_probe_file(path, psnr_frame, &a, 0, &info, &err) < 0)
        goto end;
    printf("  %-7s %-16s %6.2f MB (%4.0f KB/frame), PSNR mean %5.2f dB, min %5.2f dB; %d frames, %.1f s\n",
           sdm_gif_palette_name(pal), sdm_gif_dither_name(dither), size / 1e6, size / 1e3 / m->shown, a.sum / a.n,
           a.min, a.n, t);
    ret = 0;
end:
    if (ret < 0)
        fprintf(stderr, "bench_encoders: %s\n", err.msg);
    sdm_sink_free(&s);
    unlink(path);
    free(a.ref);
    free(rgb);
    return ret;
}

int main(int argc, char **argv)
{
    enum { N_FRAMES = 24 };
    int n = argc > 1 ? atoi(argv[1]) : 120;
    const char *only = argc > 2 ? argv[2] : NULL;
    char dir[] = "/tmp/sdm-bench-enc-XXXXXX", cpu[128];
    uint8_t *frames[N_FRAMES] = { NULL };
    morph m = { 0 };
    struct rusage ru;
    long rss0;
    int rc = 1;

    if (n < 2 || !mkdtemp(dir)) {
        fprintf(stderr, "usage: bench_encoders [frames >= 2 [only]]\n");
        return 1;
    }
    if (morph_init(&m, n) < 0)
        goto end;
    for (int k = 0; k < N_FRAMES; k++) {
        if (!(frames[k] = malloc(W * H * 3)))
            goto end;
        morph_frame(&m, k * n / N_FRAMES, frames[k]);
    }
    getrusage(RUSAGE_SELF, &ru);
    rss0 = ru.ru_maxrss;
    cpu_name(cpu, sizeof cpu);
    printf(
        "encoders, %dx%d, %d frames, on %s (%ld cores); the GPU's rate: %.2f frames/s (a pingpong's two "
        "shown frames per rendered one at 0.12 s)\n",
        W, H, n, cpu, sysconf(_SC_NPROCESSORS_ONLN), TARGET_FPS);
    if (throughput(dir, frames, N_FRAMES, n, only) < 0)
        goto end;
    if (!only || strstr("size", only)) {
        printf("gif size and quality: a %d-frame pingpong morph of 3 textured scenes, every pixel changing\n", n);
        for (int pal = 0; pal < SDM_GIF_PALETTE_COUNT; pal++)
            for (int d = 0; d < 2; d++)
                if (gif_size(dir, &m, (sdm_gif_palette)pal, d ? SDM_GIF_DITHER_SIERRA2_4A : SDM_GIF_DITHER_BAYER) < 0)
                    goto end;
    }
    getrusage(RUSAGE_SELF, &ru);
    printf("  peak memory %ld MiB, %ld MiB before the first sink (the benchmark's own frames, libraries)\n",
           ru.ru_maxrss / 1024, rss0 / 1024);
    rc = 0;
end:
    for (int k = 0; k < N_FRAMES; k++)
        free(frames[k]);
    morph_free(&m);
    rmdir(dir);
    return rc;
}
