/* Encoders: every output is written through the sink, then read back in
 * process (encoders/probe.h) and checked against the frames given: count,
 * rate, duration, pixel format, PSNR, the MP4's moov-before-mdat, the GIF's
 * loop flag; and the safety promises: partial renders, failures that leave
 * no temporary file and never replace an earlier good file. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "png.h"
#include "probe.h"
#include "sink.h"
#include "test.h"

static char dir[64];

static const char *in_dir(const char *name)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

/* A smooth, moving test picture with some detail, like a morph frame: a
 * drifting colour gradient, a soft blob and mid-frequency ripples. */
static void make_frame(int k, int w, int h, uint8_t *rgb)
{
    double t = k * 0.08;
    double bx = w * (0.5 + 0.3 * cos(t)), by = h * (0.5 + 0.3 * sin(1.3 * t));
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double u = (double)x / w, v = (double)y / h;
            double d2 = ((x - bx) * (x - bx) + (y - by) * (y - by)) / (0.04 * w * h);
            double blob = exp(-d2);
            double rip = 0.5 + 0.5 * sin(0.15 * x + 0.11 * y + 2 * t);
            double r = 40 + 150 * u + 60 * blob + 20 * rip;
            double g = 30 + 120 * v + 90 * blob * (0.5 + 0.5 * sin(t)) + 15 * rip;
            double b = 90 + 100 * (1 - u) * (0.5 + 0.5 * cos(t)) + 40 * blob;
            uint8_t *p = rgb + 3 * ((size_t)y * w + x);
            p[0] = (uint8_t)fmin(255, fmax(0, r));
            p[1] = (uint8_t)fmin(255, fmax(0, g));
            p[2] = (uint8_t)fmin(255, fmax(0, b));
        }
    }
}

static int write_frames(const char *const *outs, int n_outs, const char *sheet, const sdm_sink_params *p, int n,
                        int partial, sdm_error *err)
{
    sdm_sink *s = NULL;
    uint8_t *rgb = malloc((size_t)p->width * p->height * 3);
    int ret = -1;

    if (!rgb || sdm_sink_open(outs, n_outs, sheet, p, &s, err) < 0)
        goto end;
    for (int k = 0; k < n; k++) {
        make_frame(k, p->width, p->height, rgb);
        if (sdm_sink_push(s, rgb, err) < 0)
            goto end;
    }
    if (sdm_sink_finish(s, partial, err) < 0)
        goto end;
    ret = 0;
end:
    sdm_sink_free(&s);
    free(rgb);
    return ret;
}

/* PSNR of every decoded frame against the frame that was given. */
typedef struct {
    uint8_t *ref;
    double min_psnr, sum_psnr;
    int n, mismatched_size;
} psnr_acc;

static int psnr_frame(void *user, int index, const uint8_t *rgb, int w, int h)
{
    psnr_acc *a = user;
    double q;

    make_frame(index, w, h, a->ref);
    q = sdm_probe_psnr(a->ref, rgb, (size_t)w * h * 3);
    if (a->n == 0 || q < a->min_psnr)
        a->min_psnr = q;
    a->sum_psnr += q;
    a->n++;
    return 0;
}

static int probe_psnr(const char *path, sdm_probe_info *info, psnr_acc *a, int colors)
{
    sdm_error err = { 0 };
    int ret;

    memset(a, 0, sizeof *a);
    a->ref = malloc(4096 * 4096 * 3);
    ret = sdm_probe_file(path, psnr_frame, a, colors, info, &err);
    if (ret < 0)
        fprintf(stderr, "probe %s: %s\n", path, err.msg);
    free(a->ref);
    return ret;
}

/* Files in the test directory whose name holds `what` (".tmp-", ".spool"). */
static int count_files(const char *what)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, what))
            n++;
    closedir(d);
    return n;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static uint8_t *slurp(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;

    *size = file_size(path);
    if (f && *size >= 0 && (buf = malloc(*size + 1)) && fread(buf, 1, *size, f) != (size_t)*size) {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

static void test_check_path(void)
{
    sdm_error err = { 0 };

    CHECK_INT(sdm_output_check("out/a.mp4", 0, &err), 0);
    CHECK_INT(sdm_output_check("out/a.GIF", 0, &err), 0);
    CHECK_INT(sdm_output_check("sheet.png", 1, &err), 0);
    CHECK_INT(err.code, 0);

    CHECK_INT(sdm_output_check("out/a.avi", 0, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "'.avi'");
    CHECK_CONTAINS(err.msg, "out/a.avi");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_output_check("out/a", 0, &err), -1);
    CHECK_CONTAINS(err.msg, "no extension");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_output_check("out/a.png", 0, &err), 0); /* a still */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_output_check("out/sheet.mp4", 1, &err), -1);
    CHECK_CONTAINS(err.msg, "use .png");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_output_check("out/.mp4", 0, &err), -1);
    /* the messages list the table's extensions */
    memset(&err, 0, sizeof err);
    sdm_output_check("out/a.avi", 0, &err);
    CHECK_STR(err.msg,
              "output 'out/a.avi': unknown extension '.avi', use .mp4, .gif, .rgb (raw frames) or .png "
              "(stills)");
    memset(&err, 0, sizeof err);
    sdm_output_check("s", 1, &err);
    CHECK_STR(err.msg, "contact sheet 's': no extension, use .png");

    /* one kind per extension, whatever its case; the sheet's only as a sheet */
    CHECK_INT(sdm_output_kind_of("a/b.MP4", 0), SDM_OUTPUT_MP4);
    CHECK_INT(sdm_output_kind_of("b.gif", 0), SDM_OUTPUT_GIF);
    CHECK_INT(sdm_output_kind_of("b.x.rgb", 0), SDM_OUTPUT_RAW);
    CHECK_INT(sdm_output_kind_of("b.png", 1), SDM_OUTPUT_SHEET);
    CHECK_INT(sdm_output_kind_of("b.png", 0), SDM_OUTPUT_STILL);
    CHECK_INT(sdm_output_kind_of("b.mp4", 1), -1);
    CHECK_INT(sdm_output_kind_of("a.mp4/b", 0), -1);
    CHECK_INT(sdm_output_kind_of(NULL, 0), -1);
    CHECK_STR(sdm_output_base_name("a/b/c.mp4"), "c.mp4");
    CHECK_STR(sdm_output_base_name("a/"), "");
    CHECK(sdm_output_extension(".gif") == NULL);
    CHECK_STR(sdm_output_extension("a.b/c.d.mp4"), ".mp4");

    /* Rejected by open too, before any file is made. */
    {
        const char *outs[] = { in_dir("a.mp4"), in_dir("b.webm") };
        sdm_sink_params p = sdm_sink_default_params();
        sdm_sink *s = NULL;
        memset(&err, 0, sizeof err);
        p.width = 64;
        p.height = 64;
        CHECK_INT(sdm_sink_open(outs, 2, NULL, &p, &s, &err), -1);
        CHECK(s == NULL);
        CHECK_CONTAINS(err.msg, "'.webm'");
        CHECK_INT(count_files(".tmp-"), 0);
    }
}

static void test_names(void)
{
    sdm_gif_dither d;
    sdm_gif_palette pal;

    for (int i = 0; i < SDM_GIF_DITHER_COUNT; i++) {
        CHECK_INT(sdm_gif_dither_from_str(sdm_gif_dither_name(i), &d), 0);
        CHECK_INT(d, i);
    }
    for (int i = 0; i < SDM_GIF_PALETTE_COUNT; i++) {
        CHECK_INT(sdm_gif_palette_from_str(sdm_gif_palette_name(i), &pal), 0);
        CHECK_INT(pal, i);
    }
    CHECK_INT(sdm_gif_dither_from_str("bayer2", &d), -1);
    CHECK_INT(sdm_gif_palette_from_str(NULL, &pal), -1);
}

static void test_mp4(void)
{
    const char *out = in_dir("clip.mp4");
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_error err = { 0 };
    psnr_acc a;

    p.width = 256;
    p.height = 192;
    p.fps = 24;
    p.comment = "sdmorph test; recipe hash 0123abcd";
    CHECK_INT(write_frames(&out, 1, NULL, &p, 48, 0, &err), 0);
    if (err.code)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_INT(probe_psnr(out, &info, &a, 0), 0);
    CHECK_STR(info.codec, "h264");
    CHECK_STR(info.pix_fmt, "yuv420p");
    CHECK_STR(info.color_space, "bt709");
    CHECK_INT(info.width, 256);
    CHECK_INT(info.height, 192);
    CHECK_INT(info.frames, 48);
    CHECK_NEAR(info.stream_fps, 24.0, 1e-6);
    CHECK_NEAR(info.fps, 24.0, 1e-6);
    CHECK_NEAR(info.duration, 2.0, 1e-6);
    CHECK_NEAR(info.start_time, 0.0, 1e-9);
    CHECK_INT(info.moov_before_mdat, 1);
    CHECK_STR(info.comment, p.comment);
    CHECK_INT(a.n, 48);
    CHECK(a.min_psnr >= 35.0);
    printf("mp4 256x192 crf %d: min PSNR %.2f dB, mean %.2f dB, %ld bytes\n", p.crf, a.min_psnr, a.sum_psnr / a.n,
           file_size(out));
    CHECK_INT(count_files(".tmp-"), 0);

    /* A fractional rate keeps its exact value: 30000/1001. */
    memset(&err, 0, sizeof err);
    p.fps = 30000.0 / 1001.0;
    p.preset = "ultrafast";
    out = in_dir("ntsc.mp4");
    CHECK_INT(write_frames(&out, 1, NULL, &p, 30, 0, &err), 0);
    CHECK_INT(probe_psnr(out, &info, &a, 0), 0);
    CHECK_INT(info.frames, 30);
    CHECK_NEAR(info.stream_fps, 30000.0 / 1001.0, 1e-6);
    CHECK_NEAR(info.duration, 30 * 1001.0 / 30000.0, 1e-4);
}

/* One GIF with the given settings; checks it and returns its mean PSNR. */
static double check_gif_size(const char *name, sdm_gif_palette pal, sdm_gif_dither dither, double fps, int n, int w,
                             int h)
{
    const char *out = in_dir(name);
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_error err = { 0 };
    psnr_acc a;

    p.width = w;
    p.height = h;
    p.fps = fps;
    p.gif_palette = pal;
    p.gif_dither = dither;
    CHECK_INT(write_frames(&out, 1, NULL, &p, n, 0, &err), 0);
    if (err.code)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_INT(probe_psnr(out, &info, &a, 1), 0);
    CHECK_STR(info.codec, "gif");
    CHECK_INT(info.width, w);
    CHECK_INT(info.height, h);
    CHECK_INT(info.frames, n);
    CHECK_INT(a.n, n);
    /* Delays are whole 1/100 s; the total is n/fps to the nearest 1/100 s. */
    CHECK_NEAR(info.duration, round(n * 100.0 / fps) / 100.0, 1e-6);
    CHECK_NEAR(info.fps, fps, fps * 0.01);
    CHECK_INT(info.gif_loop, 0);
    CHECK(info.max_colors > 16);
    CHECK(info.max_colors <= 256);
    CHECK(a.min_psnr >= 25.0);
    CHECK_INT(info.moov_before_mdat, -1);
    printf("gif %dx%d %s palette, %s dither: min PSNR %.2f dB, mean %.2f dB, %d colours max, %ld bytes\n", w, h,
           sdm_gif_palette_name(pal), sdm_gif_dither_name(dither), a.min_psnr, a.n ? a.sum_psnr / a.n : 0,
           info.max_colors, file_size(out));
    CHECK_INT(count_files(".tmp-"), 0);
    return a.n ? a.sum_psnr / a.n : 0;
}

static double check_gif(const char *name, sdm_gif_palette pal, sdm_gif_dither dither, double fps, int n)
{
    return check_gif_size(name, pal, dither, fps, n, 160, 120);
}

static void test_gif(void)
{
    double frame_bayer, frame_none, stream_sierra;

    frame_bayer = check_gif("frame-bayer.gif", SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_BAYER, 24, 30);
    check_gif("frame-sierra.gif", SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_SIERRA2_4A, 25, 20);
    frame_none = check_gif("frame-none.gif", SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_NONE, 12, 12);
    check_gif("stream-bayer.gif", SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_BAYER, 24, 30);
    stream_sierra = check_gif("stream-sierra.gif", SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_SIERRA2_4A, 10, 15);
    check_gif("stream-fs.gif", SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_FLOYD_STEINBERG, 30, 9);
    CHECK(frame_bayer > 25 && frame_none > 25 && stream_sierra > 25);
    /* Large enough that palettegen looks at a downscaled copy. */
    check_gif_size("large-frame.gif", SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_BAYER, 24, 6, 512, 384);
    check_gif_size("large-stream.gif", SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_BAYER, 24, 6, 512, 384);
    CHECK_INT(count_files(".spool"), 0);

    /* Faster than browsers play GIFs: refused at open. */
    {
        const char *out = in_dir("fast.gif");
        sdm_sink_params p = sdm_sink_default_params();
        sdm_sink *s = NULL;
        sdm_error err = { 0 };
        p.fps = 60;
        CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), -1);
        CHECK_CONTAINS(err.msg, "50 fps");
    }
}

/* This process's resident memory, in KiB (-1 where /proc is not there). */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* One palette for the stream counts the colours of each frame as it comes
 * (palettegen keeps a histogram: it grows with the distinct colours, so
 * the frames here repeat eight pictures) and spools the frame to disk:
 * memory does not grow with the frames pushed. 250 frames of 256x256 held
 * anywhere would be 48 MiB. */
static void test_gif_stream_memory(void)
{
    const char *out = in_dir("stream-memory.gif");
    sdm_sink_params p = sdm_sink_default_params();
    sdm_sink *s = NULL;
    sdm_error err = { 0 };
    uint8_t *rgb;
    long at50 = -1, grown = -1;

    p.width = p.height = 256;
    p.gif_palette = SDM_GIF_PALETTE_STREAM;
    rgb = malloc((size_t)p.width * p.height * 3);
    if (!rgb || rss_kib() < 0) {
        SKIP("no /proc/self/status");
        free(rgb);
        return;
    }
    CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), 0);
    for (int k = 0; s && k < 300; k++) {
        make_frame(k % 8, p.width, p.height, rgb);
        CHECK_INT(sdm_sink_push(s, rgb, &err), 0);
        if (k == 50)
            at50 = rss_kib();
    }
    grown = rss_kib() - at50;
    CHECK(grown < 16 * 1024);
    if (grown >= 16 * 1024)
        fprintf(stderr, "  memory grew by %ld KiB over 250 frames\n", grown);
    CHECK_INT(s ? sdm_sink_finish(s, 0, &err) : -1, 0);
    sdm_sink_free(&s);
    free(rgb);
    CHECK_INT(count_files(".spool"), 0);
}

/* close() lets the encoders finish while the caller works on: a push after
 * it fails, finish() then completes the files with every frame pushed. */
static void test_close_early(void)
{
    const char *outs[2] = { in_dir("closed.mp4"), in_dir("closed.gif") };
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_sink *s = NULL;
    sdm_error err = { 0 };
    uint8_t *rgb;

    p.width = 96;
    p.height = 64;
    rgb = malloc((size_t)p.width * p.height * 3);
    CHECK_INT(sdm_sink_open(outs, 2, NULL, &p, &s, &err), 0);
    for (int k = 0; s && rgb && k < 12; k++) {
        make_frame(k, p.width, p.height, rgb);
        CHECK_INT(sdm_sink_push(s, rgb, &err), 0);
    }
    sdm_sink_close(s);
    CHECK_INT(s && rgb ? sdm_sink_push(s, rgb, &err) : 0, -1);
    CHECK_CONTAINS(err.msg, "already finished");
    memset(&err, 0, sizeof err);
    CHECK_INT(s ? sdm_sink_finish(s, 0, &err) : -1, 0);
    sdm_sink_free(&s);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(sdm_probe_file(outs[i], NULL, NULL, 0, &info, &err), 0);
        CHECK_INT(info.frames, 12);
    }
    sdm_sink_close(NULL); /* NULL-safe */
    free(rgb);
}

/* Spreading the GIF's frames over workers changes no byte: one thread (all
 * on the GIF's own), three, and more workers than frames, for a palette per
 * frame and per stream, ordered dither and error diffusion. */
static void test_gif_threads(void)
{
    static const struct {
        sdm_gif_palette pal;
        sdm_gif_dither dither;
        int frames;
    } cases[] = {
        { SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_BAYER, 23 },
        { SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_SIERRA2_4A, 9 },
        { SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_BAYER, 23 },
        { SDM_GIF_PALETTE_STREAM, SDM_GIF_DITHER_FLOYD_STEINBERG, 9 },
        { SDM_GIF_PALETTE_FRAME, SDM_GIF_DITHER_NONE, 3 },
    };
    static const int threads[] = { 1, 3, 8 };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t *first = NULL;
        long first_size = 0;
        for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
            const char *out = in_dir("threads.gif");
            sdm_sink_params p = sdm_sink_default_params();
            sdm_error err = { 0 };
            uint8_t *bytes;
            long size;

            p.width = 200;
            p.height = 150;
            p.gif_palette = cases[c].pal;
            p.gif_dither = cases[c].dither;
            p.threads = threads[t];
            CHECK_INT(write_frames(&out, 1, NULL, &p, cases[c].frames, 0, &err), 0);
            bytes = slurp(out, &size);
            CHECK(bytes != NULL && size > 1000);
            if (!first) {
                first = bytes;
                first_size = size;
                continue;
            }
            CHECK(bytes && size == first_size && memcmp(bytes, first, (size_t)size) == 0);
            if (!bytes || size != first_size || memcmp(bytes, first, (size_t)size) != 0)
                fprintf(stderr, "  %s palette, %s dither: %d threads wrote other bytes than 1\n",
                        sdm_gif_palette_name(cases[c].pal), sdm_gif_dither_name(cases[c].dither), threads[t]);
            free(bytes);
        }
        free(first);
    }
    CHECK_INT(count_files(".tmp-"), 0);
    CHECK_INT(count_files(".spool"), 0);
}

/* Flat frames whose colour encodes their index: (k & 255, k >> 8 * 16 + 7, 77). */
static void flat_frame(int k, int w, int h, uint8_t *rgb)
{
    for (int i = 0; i < w * h; i++) {
        rgb[3 * i] = (uint8_t)(k & 255);
        rgb[3 * i + 1] = (uint8_t)((k >> 8) * 16 + 7);
        rgb[3 * i + 2] = 77;
    }
}

static int write_flat(const char *sheet, const sdm_sink_params *p, int n, sdm_error *err)
{
    sdm_sink *s = NULL;
    uint8_t *rgb = malloc((size_t)p->width * p->height * 3);
    int ret = -1;

    if (!rgb || sdm_sink_open(NULL, 0, sheet, p, &s, err) < 0)
        goto end;
    for (int k = 0; k < n; k++) {
        flat_frame(k, p->width, p->height, rgb);
        if (sdm_sink_push(s, rgb, err) < 0)
            goto end;
    }
    ret = sdm_sink_finish(s, 0, err);
end:
    sdm_sink_free(&s);
    free(rgb);
    return ret;
}

/* The decoded sheet, kept for the checks. */
typedef struct {
    uint8_t *rgb;
    int w, h;
} image;

static int keep_image(void *user, int index, const uint8_t *rgb, int w, int h)
{
    image *im = user;

    (void)index;
    free(im->rgb);
    im->rgb = malloc((size_t)w * h * 3);
    memcpy(im->rgb, rgb, (size_t)w * h * 3);
    im->w = w;
    im->h = h;
    return 0;
}

static const uint8_t *pixel(const image *im, int x, int y)
{
    return im->rgb + 3 * ((size_t)y * im->w + x);
}

/* The 3x5 glyphs as drawn: '#' is a white dot on the black label box. */
static const char *const glyph_rows[10][5] = {
    { "###", "#.#", "#.#", "#.#", "###" }, { ".#.", "##.", ".#.", ".#.", "###" }, { "###", "..#", "###", "#..", "###" },
    { "###", "..#", ".##", "..#", "###" }, { "#.#", "#.#", "###", "..#", "..#" }, { "###", "#..", "###", "..#", "###" },
    { "###", "#..", "###", "#.#", "###" }, { "###", "..#", ".#.", ".#.", ".#." }, { "###", "#.#", "###", "#.#", "###" },
    { "###", "#.#", "###", "..#", "###" },
};

/* Checks that the label at (x0, y0), one pixel a dot, reads `number`. */
static int label_reads(const image *im, int x0, int y0, int number)
{
    char digits[16];
    int n = snprintf(digits, sizeof digits, "%d", number);

    for (int i = 0; i < n; i++)
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 3; c++) {
                int on = glyph_rows[digits[i] - '0'][r][c] == '#';
                const uint8_t *px = pixel(im, x0 + 1 + 4 * i + c, y0 + 1 + r);
                if (px[0] != (on ? 255 : 0) || px[1] != px[0] || px[2] != px[0])
                    return 0;
            }
    return 1;
}

/* A still: the exact pixels (PNG is lossless) and the comment; a path
 * that cannot be made fails with its name. */
static void test_still(void)
{
    const char *out = in_dir("still.png");
    uint8_t rgb[40 * 24 * 3];
    sdm_probe_info info;
    sdm_error err = { 0 };
    image im = { 0 };

    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7 + i / 120);
    CHECK_INT(sdm_png_write(out, rgb, 40, 24, "sdmorph test still", "pick.png", &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK_STR(info.codec, "png");
    CHECK_INT(info.width, 40);
    CHECK_INT(info.height, 24);
    CHECK_STR(info.comment, "sdmorph test still");
    CHECK(im.rgb && !memcmp(im.rgb, rgb, sizeof rgb));
    free(im.rgb);
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_png_write(in_dir("no/such/folder/x.png"), rgb, 40, 24, NULL, "x.png", &err), -1);
    CHECK_CONTAINS(err.msg, "cannot create x.png");
}

static void test_sheet(void)
{
    const char *out = in_dir("walk.png");
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_error err = { 0 };
    image im = { 0 };
    uint8_t *ref;
    double worst = 99;

    /* 10 frames of 64x48: 4 columns, 3 rows of 64x48 cells with 2 px gaps. */
    p.width = 64;
    p.height = 48;
    p.total_frames = 10;
    p.comment = "sdmorph test sheet";
    CHECK_INT(write_frames(NULL, 0, out, &p, 10, 0, &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK_STR(info.codec, "png");
    CHECK_STR(info.pix_fmt, "rgb24");
    CHECK_INT(info.frames, 1);
    CHECK_INT(info.width, 4 * 66 + 2);
    CHECK_INT(info.height, 3 * 50 + 2);
    CHECK_STR(info.comment, p.comment);
    ref = malloc(64 * 48 * 3);
    for (int k = 0; k < 10 && im.rgb; k++) {
        int x0 = 2 + (k % 4) * 66, y0 = 2 + (k / 4) * 50;
        double sse = 0;
        int n = 0;
        make_frame(k, 64, 48, ref);
        /* The picture, outside the label box (1 digit: 5x7 px). */
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 64; x++) {
                if (x < 5 && y < 7)
                    continue;
                for (int c = 0; c < 3; c++) {
                    double d = (double)pixel(&im, x0 + x, y0 + y)[c] - ref[3 * (y * 64 + x) + c];
                    sse += d * d;
                    n++;
                }
            }
        worst = fmin(worst, sse ? 10 * log10(255.0 * 255 * n / sse) : 99);
        CHECK(label_reads(&im, x0, y0, k));
    }
    CHECK(worst >= 45);
    CHECK(!label_reads(&im, 2 + 66, 2, 7)); /* the check can fail */
    free(ref);

    /* 100 frames of 512x384: thumbnails shrink so the sheet stays <= 4096 px. */
    out = in_dir("big.png");
    p.width = 512;
    p.height = 384;
    p.total_frames = 100;
    memset(&err, 0, sizeof err);
    CHECK_INT(write_flat(out, &p, 100, &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK(info.width <= 4096 && info.width > 4000);
    CHECK(info.height <= 4096);
    if (im.rgb && info.width > 4000) {
        int tw = (info.width - 2) / 10 - 2, th = (info.height - 2) / 10 - 2;
        CHECK_NEAR((double)tw / th, 512.0 / 384, 0.01);
        for (int k = 0; k < 100; k += 33) {
            const uint8_t *px = pixel(&im, 2 + (k % 10) * (tw + 2) + tw / 2, 2 + (k / 10) * (th + 2) + th / 2);
            CHECK_INT(px[0], k);
            CHECK_INT(px[2], 77);
        }
        /* Digits 6 px a dot on 400 px cells. */
        CHECK_INT(pixel(&im, 2 + 6 + 3, 2 + 6 + 3)[0], 255);
    }

    /* Frame count unknown: 128 px thumbnails, laid out at the end. */
    out = in_dir("unknown.png");
    p.width = 300;
    p.height = 200;
    p.total_frames = 0;
    memset(&err, 0, sizeof err);
    CHECK_INT(write_flat(out, &p, 30, &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK_INT(info.width, 6 * 130 + 2);
    CHECK_INT(info.height, 5 * 87 + 2);

    /* More frames than cells (1024): every 4th of 2100 kept, still labelled true. */
    out = in_dir("many.png");
    p.width = 16;
    p.height = 16;
    memset(&err, 0, sizeof err);
    CHECK_INT(write_flat(out, &p, 2100, &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK_INT(info.width, 23 * 18 + 2);
    if (im.rgb && info.width == 23 * 18 + 2) {
        int bad = 0;
        for (int j = 0; j < 525; j++) {
            const uint8_t *px = pixel(&im, 2 + (j % 23) * 18 + 12, 2 + (j / 23) * 18 + 12);
            bad += px[0] != ((4 * j) & 255) || px[1] != ((4 * j) >> 8) * 16 + 7;
        }
        CHECK_INT(bad, 0);
        CHECK(label_reads(&im, 2 + 1 * 18, 2, 4));
    }

    /* More frames than total_frames said: still bounded, frames 0, 4, 8 kept. */
    out = in_dir("more.png");
    p.total_frames = 3;
    memset(&err, 0, sizeof err);
    CHECK_INT(write_flat(out, &p, 10, &err), 0);
    CHECK_INT(sdm_probe_file(out, keep_image, &im, 0, &info, &err), 0);
    CHECK_INT(info.width, 2 * 18 + 2);
    CHECK_INT(info.height, 2 * 18 + 2);
    for (int j = 0; im.rgb && info.width == 38 && j < 3; j++)
        CHECK_INT(pixel(&im, 2 + (j % 2) * 18 + 12, 2 + (j / 2) * 18 + 12)[0], 4 * j);
    p.total_frames = 1;
    memset(&err, 0, sizeof err);
    CHECK_INT(write_flat(out, &p, 5, &err), 0);
    free(im.rgb);
    CHECK_INT(count_files(".tmp-"), 0);
}

/* [a.mp4, a.gif] and a contact sheet from the same frames, in one pass. */
static void test_several_outputs(void)
{
    const char *outs[] = { in_dir("a.mp4"), in_dir("a.gif") };
    const char *sheet = in_dir("a.png");
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_error err = { 0 };
    sdm_sink *s = NULL;
    uint8_t *rgb;
    psnr_acc a;

    p.width = 128;
    p.height = 96;
    p.fps = 20;
    p.total_frames = 24;
    rgb = malloc(128 * 96 * 3);
    CHECK_INT(sdm_sink_open(outs, 2, sheet, &p, &s, &err), 0);
    /* the three files, and the GIF's frame spool (one palette for the stream: the default) */
    CHECK_INT(count_files(".tmp-"), 4);
    CHECK_INT(count_files(".spool"), 1);
    for (int k = 0; s && k < 24; k++) {
        make_frame(k, 128, 96, rgb);
        CHECK_INT(sdm_sink_push(s, rgb, &err), 0);
    }
    CHECK_INT(sdm_sink_finish(s, 0, &err), 0);
    CHECK_INT(sdm_sink_n_outputs(s), 3);
    CHECK_STR(sdm_sink_output_path(s, 0), outs[0]);
    CHECK_STR(sdm_sink_output_path(s, 2), sheet);
    CHECK(sdm_sink_output_path(s, 3) == NULL);
    sdm_sink_free(&s);
    free(rgb);

    CHECK_INT(probe_psnr(outs[0], &info, &a, 0), 0);
    CHECK_INT(info.frames, 24);
    CHECK_NEAR(info.duration, 1.2, 1e-6);
    CHECK(a.min_psnr >= 35);
    CHECK_INT(probe_psnr(outs[1], &info, &a, 0), 0);
    CHECK_INT(info.frames, 24);
    CHECK_NEAR(info.duration, 1.2, 1e-6);
    CHECK(a.min_psnr >= 25);
    CHECK_INT(sdm_probe_file(sheet, NULL, NULL, 0, &info, &err), 0);
    CHECK_INT(info.width, 5 * 130 + 2);
    CHECK_INT(count_files(".tmp-"), 0);
}

/* An interrupted render: finish(partial) writes x.partial.mp4/.gif, playable,
 * with the frames done so far, and leaves the earlier good x.mp4/x.gif as
 * they were. An abandoned one (free without finish) leaves nothing. */
static void test_partial(void)
{
    const char *outs[] = { in_dir("x.mp4"), in_dir("x.gif") };
    const char *partial[] = { in_dir("x.partial.mp4"), in_dir("x.partial.gif") };
    sdm_sink_params p = sdm_sink_default_params();
    sdm_probe_info info;
    sdm_error err = { 0 };
    sdm_sink *s = NULL;
    uint8_t *good[2], *rgb;
    long good_size[2], size;
    psnr_acc a;

    p.width = 96;
    p.height = 64;
    p.fps = 25;
    CHECK_INT(write_frames(outs, 2, NULL, &p, 40, 0, &err), 0);
    for (int i = 0; i < 2; i++)
        good[i] = slurp(outs[i], &good_size[i]);
    CHECK(good[0] && good[1]);

    rgb = malloc(96 * 64 * 3);
    CHECK_INT(sdm_sink_open(outs, 2, NULL, &p, &s, &err), 0);
    for (int k = 0; s && k < 10; k++) {
        make_frame(k, 96, 64, rgb);
        CHECK_INT(sdm_sink_push(s, rgb, &err), 0);
    }
    CHECK_INT(sdm_sink_finish(s, 1, &err), 0);
    CHECK_STR(sdm_sink_output_path(s, 0), partial[0]);
    CHECK_STR(sdm_sink_output_path(s, 1), partial[1]);
    sdm_sink_free(&s);

    for (int i = 0; i < 2; i++) {
        uint8_t *now = slurp(outs[i], &size);
        CHECK_INT(size, good_size[i]);
        CHECK(now && good[i] && memcmp(now, good[i], size) == 0);
        free(now);
        CHECK_INT(probe_psnr(partial[i], &info, &a, 0), 0);
        CHECK_INT(info.frames, 10);
        CHECK_INT(a.n, 10);
        CHECK_NEAR(info.duration, 0.4, 1e-6);
        CHECK(a.min_psnr >= (i == 0 ? 35 : 25));
    }
    CHECK_INT(probe_psnr(outs[0], &info, &a, 0), 0);
    CHECK_INT(info.frames, 40);
    CHECK_INT(info.moov_before_mdat, 1);

    /* Abandoned: no temporary file, no partial file, the good ones intact. */
    unlink(partial[0]);
    unlink(partial[1]);
    memset(&err, 0, sizeof err);
    p.gif_palette = SDM_GIF_PALETTE_STREAM;
    CHECK_INT(sdm_sink_open(outs, 2, in_dir("x.png"), &p, &s, &err), 0);
    for (int k = 0; s && k < 5; k++) {
        make_frame(k, 96, 64, rgb);
        CHECK_INT(sdm_sink_push(s, rgb, &err), 0);
    }
    CHECK_INT(count_files(".spool"), 1);
    sdm_sink_free(&s);
    CHECK_INT(count_files(".tmp-"), 0);
    CHECK(file_size(partial[0]) < 0 && file_size(partial[1]) < 0 && file_size(in_dir("x.png")) < 0);
    for (int i = 0; i < 2; i++) {
        uint8_t *now = slurp(outs[i], &size);
        CHECK(now && size == good_size[i] && memcmp(now, good[i], size) == 0);
        free(now);
        free(good[i]);
    }
    free(rgb);
}

/* Unwritable locations fail at open, before rendering, naming the path. */
static void test_unwritable(void)
{
    const char *under_file[] = { in_dir("plain/x.mp4") };
    const char *no_dir[] = { in_dir("nodir/x.gif") };
    sdm_sink_params p = sdm_sink_default_params();
    sdm_error err = { 0 };
    sdm_sink *s = NULL;
    FILE *f = fopen(in_dir("plain"), "w");

    CHECK(f != NULL);
    if (f)
        fclose(f);
    p.width = 64;
    p.height = 64;
    CHECK_INT(sdm_sink_open(under_file, 1, NULL, &p, &s, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_RUNTIME);
    CHECK_CONTAINS(err.msg, under_file[0]);
    CHECK_CONTAINS(err.msg, "Not a directory");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_sink_open(no_dir, 1, NULL, &p, &s, &err), -1);
    CHECK_CONTAINS(err.msg, no_dir[0]);
    CHECK_CONTAINS(err.msg, "No such file or directory");
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_sink_open(NULL, 0, in_dir("plain/sheet.png"), &p, &s, &err), -1);
    CHECK_CONTAINS(err.msg, "Not a directory");
    /* A good output beside a bad one: nothing is left of the good one either. */
    {
        const char *mixed[] = { in_dir("ok.mp4"), in_dir("plain/x.gif") };
        memset(&err, 0, sizeof err);
        CHECK_INT(sdm_sink_open(mixed, 2, NULL, &p, &s, &err), -1);
        CHECK_CONTAINS(err.msg, "plain/x.gif");
    }
    CHECK(s == NULL);
    CHECK_INT(count_files(".tmp-"), 0);
    unlink(in_dir("plain"));
}

/* A full disk, simulated in a child with RLIMIT_FSIZE (writes past it fail
 * with EFBIG once SIGXFSZ is ignored): the render fails with a clear
 * message, no temporary or spool file is left, the earlier file survives. */
static void full_disk(sdm_gif_palette palette, const char *const *outs, int n_outs)
{
    sdm_sink_params p = sdm_sink_default_params();
    char msg[2048] = "";
    uint8_t *before;
    long before_size, after_size;
    int fds[2], status = -1;
    pid_t pid;

    p.width = 256;
    p.height = 256;
    p.preset = "ultrafast";
    p.gif_palette = palette;
    {
        sdm_error err = { 0 };
        CHECK_INT(write_frames(outs, n_outs, NULL, &p, 4, 0, &err), 0);
    }
    before = slurp(outs[0], &before_size);
    if (pipe(fds) < 0) {
        CHECK(0);
        return;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        struct rlimit rl = { 200 * 1024, 200 * 1024 };
        sdm_error err = { 0 };
        sdm_sink *s = NULL;
        uint8_t *rgb = malloc(256 * 256 * 3);
        unsigned x = 12345;
        int rc = 3;

        close(fds[0]);
        alarm(120); /* a hang fails the test instead of blocking it */
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        if (sdm_sink_open(outs, n_outs, NULL, &p, &s, &err) == 0) {
            int failed = 0;
            for (int k = 0; k < 40 && !failed; k++) {
                for (int i = 0; i < 256 * 256 * 3; i++) {
                    x = x * 1664525u + 1013904223u;
                    rgb[i] = (uint8_t)(x >> 24); /* noise: incompressible */
                }
                failed = sdm_sink_push(s, rgb, &err) < 0;
            }
            if (!failed)
                failed = sdm_sink_finish(s, 0, &err) < 0;
            rc = failed ? 0 : 4;
            sdm_sink_free(&s);
        }
        if (write(fds[1], err.msg, strlen(err.msg)) < 0)
            rc = 5;
        _exit(rc);
    }
    close(fds[1]);
    if (pid > 0) {
        ssize_t n = read(fds[0], msg, sizeof msg - 1);
        msg[n > 0 ? n : 0] = '\0';
        waitpid(pid, &status, 0);
    }
    close(fds[0]);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
    CHECK_CONTAINS(msg, "write failed");
    CHECK_CONTAINS(msg, "File too large");
    CHECK_CONTAINS(msg, dir);
    printf("full disk (%s): \"%s\"\n", outs[n_outs - 1], msg);
    CHECK_INT(count_files(".tmp-"), 0);
    {
        uint8_t *after = slurp(outs[0], &after_size);
        CHECK(before && after && after_size == before_size && memcmp(before, after, before_size) == 0);
        free(after);
    }
    free(before);
}

static void test_full_disk(void)
{
    const char *both[] = { in_dir("full.mp4"), in_dir("full.gif") };
    const char *gif[] = { in_dir("spool.gif") };

    full_disk(SDM_GIF_PALETTE_FRAME, both, 2);
    full_disk(SDM_GIF_PALETTE_STREAM, gif, 1);
    CHECK_INT(count_files(".spool"), 0);
}

/* SigBlk of a thread, from /proc (a hex mask, bit n-1 for signal n). */
static unsigned long long blocked_mask(const char *tid)
{
    char path[128], line[256];
    unsigned long long mask = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "SigBlk:", 7) == 0)
            mask = strtoull(line + 7, NULL, 16);
    if (f)
        fclose(f);
    return mask;
}

/* The ids of this process's threads, as a string " 12 13 ... ". */
static void thread_ids(char *buf, size_t size)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    size_t n = 0;

    buf[0] = '\0';
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n + strlen(e->d_name) + 3 < size)
            n += snprintf(buf + n, size - n, " %s ", e->d_name);
    if (d)
        closedir(d);
}

/* Every thread the sink starts (its own and x264's) blocks SIGINT and
 * SIGTERM, so they reach the render loop's thread; that thread's mask is
 * left as it was. */
static void test_signal_mask(void)
{
    const char *outs[] = { in_dir("sig.mp4"), in_dir("sig.gif") };
    const unsigned long long both = 1ull << (SIGINT - 1) | 1ull << (SIGTERM - 1);
    sdm_sink_params p = sdm_sink_default_params();
    sdm_error err = { 0 };
    sdm_sink *s = NULL;
    char before[4096], after[4096], self[32], *tok, *save = NULL;
    int started = 0, blocking = 0;

    if (access("/proc/self/task", R_OK) != 0) {
        SKIP("no /proc/self/task: cannot read the threads' signal masks");
        return;
    }
    p.width = 64;
    p.height = 64;
    p.preset = "ultrafast";
    snprintf(self, sizeof self, "%ld", (long)getpid());
    thread_ids(before, sizeof before);
    CHECK_INT(sdm_sink_open(outs, 2, NULL, &p, &s, &err), 0);
    thread_ids(after, sizeof after);
    for (tok = strtok_r(after, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char key[40];
        snprintf(key, sizeof key, " %s ", tok);
        if (strstr(before, key))
            continue;
        started++;
        blocking += (blocked_mask(tok) & both) == both;
    }
    CHECK(started >= 2);
    CHECK_INT(blocking, started);
    CHECK_INT(blocked_mask(self) & both, 0);
    sdm_sink_free(&s);
}

static void test_bad_settings(void)
{
    const char *out = in_dir("bad.mp4");
    sdm_sink_params p = sdm_sink_default_params();
    sdm_sink *s = NULL;
    sdm_error err = { 0 };

    p.width = 63;
    p.height = 64;
    CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), -1);
    CHECK_CONTAINS(err.msg, "even width and height");
    memset(&err, 0, sizeof err);
    p.width = 64;
    p.preset = "fastest";
    CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), -1);
    CHECK_CONTAINS(err.msg, "unknown x264 preset 'fastest'");
    memset(&err, 0, sizeof err);
    p.preset = "fast";
    p.fps = 0;
    CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), -1);
    CHECK_CONTAINS(err.msg, "frame rate");
    CHECK_INT(count_files(".tmp-"), 0);
    CHECK(file_size(out) < 0);

    /* Nothing pushed: finish writes nothing and says so. */
    memset(&err, 0, sizeof err);
    p.fps = 24;
    CHECK_INT(sdm_sink_open(&out, 1, NULL, &p, &s, &err), 0);
    CHECK_INT(sdm_sink_finish(s, 0, &err), -1);
    CHECK_CONTAINS(err.msg, "no frame");
    sdm_sink_free(&s);
    CHECK(s == NULL);
    CHECK_INT(count_files(".tmp-"), 0);
    CHECK(file_size(out) < 0);
    sdm_sink_free(&s); /* NULL-safe */
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) < 0)
            rmdir(path);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sdm-test-enc-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    sdm_log_set_level(SDM_LOG_WARN);
    test_check_path();
    test_names();
    test_mp4();
    test_gif();
    test_gif_threads();
    test_gif_stream_memory();
    test_close_early();
    test_sheet();
    test_still();
    test_several_outputs();
    test_partial();
    test_unwritable();
    test_full_disk();
    test_signal_mask();
    test_bad_settings();
    if (!getenv("SDM_KEEP"))
        remove_dir();
    else
        printf("kept %s\n", dir);
    return test_report();
}
