/* pace: which pairs count where (holds skipped, the step onto a keyframe
 * with the transition into it, pingpong's way back with its way there),
 * the seam, the JSON; and `sdmorph measure`: on a render's raw frames it
 * gives exactly the numbers the render reported, on its MP4 and GIF (the
 * same frames through two other encoder paths) the numbers as those
 * encoders leave them; and against the ffmpeg command: a lossless video it
 * makes from the raw frames measures as the raw frames, its decode of our
 * MP4 as our MP4, its own H.264 of the frames as ours within the noise two
 * lossy encodes differ by. */
#include <json-c/json.h>
#include <limits.h>

#include "cli_run.h"
#include "pace.h"
#include "sink.h"
#include "test.h"

#define W 16
#define H 16

static char tmp[] = "/tmp/sdm_pace_XXXXXX";

/* A frame: a left-right ramp of `level` (so SSIM sees structure). */
static void frame(uint8_t *rgb, int level)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * W + x) * 3 + c] = (uint8_t)(level + 4 * x);
}

static double pair(int a, int b)
{
    uint8_t fa[W * H * 3], fb[W * H * 3];
    sdm_ssim *s = sdm_ssim_new(W, H);
    double d;

    frame(fa, a);
    frame(fb, b);
    d = sdm_ssim_distance(sdm_ssim_rgb(s, fa, fb));
    sdm_ssim_free(&s);
    return d;
}

static void test_segments(void)
{
    /* keyframe 0 (held once), 0->1 at levels 10, 20, keyframe 1, back 20, 10, keyframe 0 */
    struct {
        int level, from, to;
    } seq[] = { { 0, 0, 0 }, { 0, 0, 0 }, { 10, 0, 1 }, { 20, 0, 1 }, { 40, 1, 1 }, { 20, 0, 1 }, { 10, 0, 1 } };
    sdm_pace *p = sdm_pace_new(W, H);
    sdm_pace_report r;
    uint8_t f[W * H * 3];
    char *js;

    CHECK(p != NULL);
    if (!p)
        return;
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        frame(f, seq[i].level);
        CHECK(sdm_pace_push(p, f, seq[i].from, seq[i].to) == 0);
    }
    CHECK(sdm_pace_report_make(p, &r) == 0);
    CHECK_INT(r.frames, 7);
    CHECK_INT(r.n_segments, 1); /* every moving pair is 0->1's, the hold none */
    CHECK(r.n_segments == 1 && r.segments[0].from == 0 && r.segments[0].to == 1);
    CHECK_INT(r.all.n, 5);
    {
        double want[5] = { pair(0, 10), pair(10, 20), pair(20, 40), pair(40, 20), pair(20, 10) };
        sdm_distance_summary s;
        CHECK(sdm_distance_summarise(want, 5, &s) == 0);
        CHECK_NEAR(r.all.largest, s.largest, 1e-12);
        CHECK_NEAR(r.all.median, s.median, 1e-12);
        CHECK(s.largest == pair(20, 40));
    }
    /* seam: (20 -> 10), (10 -> first 0), (first 0 -> second 0: a hold, 0) */
    CHECK_INT(r.seam.n, 3);
    CHECK_NEAR(r.seam.largest, pair(10, 0) > pair(20, 10) ? pair(10, 0) : pair(20, 10), 1e-12);
    CHECK_NEAR(r.seam.median, pair(10, 0) < pair(20, 10) ? pair(10, 0) : pair(20, 10), 1e-12);
    js = sdm_pace_json(&r);
    CHECK_CONTAINS(js, "\"transitions\": [{\"from\": 0, \"to\": 1, \"pairs\": 5");
    CHECK_CONTAINS(js, "\"seam\": {\"pairs\": 3");
    free(js);
    sdm_pace_free(&p);
    CHECK(sdm_pace_new(SDM_SSIM_WINDOW - 1, 64) == NULL);
}

/* Frame k of a long sequence: levels that move by varying steps, a hold
 * every seventh frame, a keyframe every tenth (transitions 0->1, 1->2, ...). */
static void long_frame(int k, uint8_t *rgb, int *from, int *to)
{
    int level = k % 7 == 6 ? (k - 1) * 3 % 50 : k * 3 % 50;

    frame(rgb, level + (k / 10) % 3);
    *from = k / 10;
    *to = k % 10 == 0 ? k / 10 : k / 10 + 1;
}

static int reports_equal(const sdm_pace_report *a, const sdm_pace_report *b)
{
    int same = a->frames == b->frames && a->n_segments == b->n_segments && a->all.n == b->all.n &&
               a->all.largest == b->all.largest && a->all.median == b->all.median && a->seam.n == b->seam.n &&
               a->seam.largest == b->seam.largest && a->seam.median == b->seam.median;

    for (int i = 0; same && i < a->n_segments; i++)
        same = a->segments[i].from == b->segments[i].from && a->segments[i].to == b->segments[i].to &&
               a->segments[i].s.n == b->segments[i].s.n && a->segments[i].s.largest == b->segments[i].s.largest &&
               a->segments[i].s.median == b->segments[i].s.median;
    return same;
}

/* Measured on 1, 2 and 4 workers, with frames in flight: the same report to
 * the bit, and the largest pair the one measured here directly. A report
 * taken half way waits for the frames pushed so far; more frames may follow. */
static void test_threads(void)
{
    enum { N = 45 };
    static const int threads[] = { 1, 2, 4 };
    sdm_pace_report r[3], half;
    uint8_t f[W * H * 3], g[W * H * 3];
    sdm_ssim *s = sdm_ssim_new(W, H);
    double largest = 0;
    int from, to;

    for (int t = 0; t < 3; t++) {
        sdm_pace *p = sdm_pace_new_threads(W, H, threads[t]);
        CHECK(p != NULL);
        if (!p)
            return;
        for (int k = 0; k < N; k++) {
            long_frame(k, f, &from, &to);
            CHECK(sdm_pace_push(p, f, from, to) == 0);
            if (k == N / 2)
                CHECK(sdm_pace_report_make(p, &half) == 0);
        }
        CHECK_INT(half.frames, N / 2 + 1);
        CHECK(sdm_pace_report_make(p, &r[t]) == 0);
        sdm_pace_free(&p);
    }
    for (int k = 1; k < N; k++) {
        long_frame(k - 1, f, &from, &to);
        long_frame(k, g, &from, &to);
        if (memcmp(f, g, sizeof f)) {
            double d = sdm_ssim_distance(sdm_ssim_rgb(s, f, g));
            largest = d > largest ? d : largest;
        }
    }
    sdm_ssim_free(&s);
    CHECK_INT(r[0].frames, N);
    CHECK_INT(r[0].n_segments, 5);
    CHECK(r[0].all.n > 30 && r[0].all.n < N - 1); /* the holds left out */
    CHECK(r[0].all.largest == largest);
    CHECK(reports_equal(&r[0], &r[1]));
    CHECK(reports_equal(&r[0], &r[2]));
}

/* measure's JSON report of a file: its "all" and "seam" largest/median. */
static int measure_json(const char *file, const char *raw, double v[4])
{
    char out[8192];
    char *argv_raw[] = { "sdmorph", "measure", "--json", "--raw", (char *)raw, (char *)file, NULL };
    char *argv[] = { "sdmorph", "measure", "--json", (char *)file, NULL };
    json_object *o, *all, *seam, *x;
    int rc = run(raw ? argv_raw : argv, out, sizeof out, NULL);

    o = rc == 0 ? json_tokener_parse(out) : NULL;
    if (!o || !json_object_object_get_ex(o, "all", &all) || !json_object_object_get_ex(o, "seam", &seam)) {
        fprintf(stderr, "measure %s: %d: %s\n", file, rc, out);
        json_object_put(o);
        return -1;
    }
    v[0] = json_object_object_get_ex(all, "largest", &x) ? json_object_get_double(x) : NAN;
    v[1] = json_object_object_get_ex(all, "median", &x) ? json_object_get_double(x) : NAN;
    v[2] = json_object_object_get_ex(seam, "largest", &x) ? json_object_get_double(x) : NAN;
    v[3] = json_object_object_get_ex(seam, "median", &x) ? json_object_get_double(x) : NAN;
    json_object_put(o);
    return 0;
}

/* The raw frames of `path` into tmp/again.mp4 through the sink, at the
 * render's default MP4 settings. */
static int reencode(const char *path, int w, int h)
{
    sdm_sink_params kp = sdm_sink_default_params();
    char out_path[PATH_MAX + 64];
    const char *outs[1] = { out_path };
    sdm_sink *sink = NULL;
    sdm_error err = { 0 };
    long size;
    uint8_t *f = (uint8_t *)slurp_file(path, &size);
    size_t fb = (size_t)w * h * 3;
    int rc = -1;

    snprintf(out_path, sizeof out_path, "%s/again.mp4", tmp);
    kp.width = w;
    kp.height = h;
    kp.fps = 12;
    if (!f || sdm_sink_open(outs, 1, NULL, &kp, &sink, &err))
        goto end;
    for (long i = 0; i < size / (long)fb; i++)
        if (sdm_sink_push(sink, f + (size_t)i * fb, &err))
            goto end;
    rc = sdm_sink_finish(sink, 0, &err);
end:
    if (rc)
        fprintf(stderr, "reencode: %s\n", err.msg);
    sdm_sink_free(&sink);
    free(f);
    return rc;
}

/* The ffmpeg command, if installed (`make deps` installs it): args after
 * "ffmpeg -y -v error". Returns its exit status, or -1 when it is absent. */
static int ffmpeg(const char *args)
{
    char cmd[4 * PATH_MAX + 512];

    if (system("command -v ffmpeg > /dev/null 2>&1") != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "ffmpeg -y -v error -nostdin %s", args);
    return system(cmd) == 0 ? 0 : 1;
}

/* ffmpeg with IN_OPTS -i tmp/IN OUT_OPTS tmp/OUT, then `sdmorph measure`
 * on tmp/OUT (raw: its WxH where it is raw RGB) into v. ffmpeg's status
 * (-1: no ffmpeg), or 2 where measure failed. */
static int ffmpeg_measured(const char *in_opts, const char *in, const char *out_opts, const char *out, const char *raw,
                           double v[4])
{
    char args[4 * PATH_MAX], path[PATH_MAX + 64];
    int rc;

    snprintf(args, sizeof args, "%s -i '%s/%s' %s '%s/%s'", in_opts, tmp, in, out_opts, tmp, out);
    if ((rc = ffmpeg(args)) != 0)
        return rc;
    snprintf(path, sizeof path, "%s/%s", tmp, out);
    return measure_json(path, raw, v) == 0 ? 0 : 2;
}

/* `sdmorph measure` against the ffmpeg command on the same frames (issue
 * 22): ffv1 is lossless, so it must give the raw numbers to the bit; ffmpeg
 * decoding our MP4 (BT.709, tv range, the converter settings measure uses)
 * must give the MP4's numbers to the bit; ffmpeg's own x264 encode (same
 * crf and preset, its own RGB->YUV) lands near ours. */
static void test_measure_vs_ffmpeg(const double raw[4], const double mp4[4])
{
    const char *raw_in = "-f rawvideo -pix_fmt rgb24 -s 128x128 -r 12";
    double lossless[4], decoded[4], theirs[4];
    int rc = ffmpeg_measured(raw_in, "loop.rgb", "-c:v ffv1", "ff.mkv", NULL, lossless);

    if (rc < 0) {
        SKIP("no ffmpeg command (apt-get install ffmpeg): measure not compared with it");
        return;
    }
    CHECK_INT(rc, 0);
    CHECK_INT(ffmpeg_measured("", "loop.mp4",
                              "-vf scale=in_color_matrix=bt709:in_range=tv:flags=bicubic+accurate_rnd+full_chroma_int "
                              "-f rawvideo -pix_fmt rgb24",
                              "ff-decoded.rgb", "128x128", decoded),
              0);
    CHECK_INT(ffmpeg_measured(raw_in, "loop.rgb", "-c:v libx264 -crf 18 -preset medium -pix_fmt yuv420p", "ff-x264.mp4",
                              NULL, theirs),
              0);
    printf(
        "  ffmpeg ffv1      %.6f %.6f  %.6f %.6f\n  ffmpeg decoding our mp4 %.6f %.6f  %.6f %.6f\n"
        "  ffmpeg x264      %.6f %.6f  %.6f %.6f\n",
        lossless[0], lossless[1], lossless[2], lossless[3], decoded[0], decoded[1], decoded[2], decoded[3], theirs[0],
        theirs[1], theirs[2], theirs[3]);
    for (int i = 0; i < 4; i++) {
        CHECK(lossless[i] == raw[i]);
        CHECK(decoded[i] == mp4[i]);
        CHECK(fabs(theirs[i] - mp4[i]) <= 0.1 * mp4[i]);
    }
}

static void test_measure(const char *model)
{
    char recipe[PATH_MAX + 64], text[3 * PATH_MAX], out[16384], path[PATH_MAX + 64];
    char *argv[] = { "sdmorph", "render", recipe, "--device", "cpu", "-q", NULL };
    double raw[4], mp4[4], gif[4], rep[4], again[4];
    json_object *side, *pace, *all, *seam, *x;

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", tmp);
    snprintf(text, sizeof text,
             "model: %s\nwidth: 128\nheight: 128\nsteps: 8\nguidance: 1\nloop: pingpong\n"
             "output: [%s/loop.rgb, %s/loop.mp4, %s/loop.gif]\nkeyframes:\n  - prompt: a rainy city\n    frames: 12\n"
             "  - a forest at night\n",
             model, tmp, tmp, tmp);
    write_file(recipe, text);
    CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    snprintf(path, sizeof path, "%s/loop.json", tmp);
    side = json_object_from_file(path);
    if (!side || !json_object_object_get_ex(side, "pace", &pace) || !json_object_object_get_ex(pace, "all", &all) ||
        !json_object_object_get_ex(pace, "seam", &seam)) {
        CHECK(!"the sidecar has the pace");
        json_object_put(side);
        return;
    }
    rep[0] = json_object_object_get_ex(all, "largest", &x) ? json_object_get_double(x) : NAN;
    rep[1] = json_object_object_get_ex(all, "median", &x) ? json_object_get_double(x) : NAN;
    rep[2] = json_object_object_get_ex(seam, "largest", &x) ? json_object_get_double(x) : NAN;
    rep[3] = json_object_object_get_ex(seam, "median", &x) ? json_object_get_double(x) : NAN;
    json_object_put(side);
    snprintf(path, sizeof path, "%s/loop.rgb", tmp);
    CHECK(measure_json(path, "128x128", raw) == 0);
    snprintf(path, sizeof path, "%s/loop.mp4", tmp);
    CHECK(measure_json(path, NULL, mp4) == 0);
    snprintf(path, sizeof path, "%s/loop.gif", tmp);
    CHECK(measure_json(path, NULL, gif) == 0);
    printf(
        "pace (all largest, median; seam largest, median):\n"
        "  render's report  %.6f %.6f  %.6f %.6f\n  measure raw      %.6f %.6f  %.6f %.6f\n"
        "  measure mp4      %.6f %.6f  %.6f %.6f\n  measure gif      %.6f %.6f  %.6f %.6f\n",
        rep[0], rep[1], rep[2], rep[3], raw[0], raw[1], raw[2], raw[3], mp4[0], mp4[1], mp4[2], mp4[3], gif[0], gif[1],
        gif[2], gif[3]);
    /* the same frames: the same numbers, to the last bit */
    for (int i = 0; i < 4; i++)
        CHECK(raw[i] == rep[i]);
    /* the same frames encoded again by another path (the sink fed from the
     * raw file, not from the render): the same MP4 frames, the same numbers */
    snprintf(path, sizeof path, "%s/loop.rgb", tmp);
    CHECK(reencode(path, 128, 128) == 0);
    snprintf(path, sizeof path, "%s/again.mp4", tmp);
    CHECK(measure_json(path, NULL, again) == 0);
    printf("  measure again.mp4 %.6f %.6f  %.6f %.6f\n", again[0], again[1], again[2], again[3]);
    for (int i = 0; i < 4; i++)
        CHECK(again[i] == mp4[i]);
    /* lossy encoders add noise of their own to every distance; the
     * unevenness (largest / median) is what survives them */
    CHECK(fabs(mp4[0] / mp4[1] - rep[0] / rep[1]) <= 0.25 * rep[0] / rep[1]);
    CHECK(fabs(gif[0] / gif[1] - rep[0] / rep[1]) <= 0.25 * rep[0] / rep[1]);
    test_measure_vs_ffmpeg(raw, mp4);
}

static void test_measure_usage(void)
{
    char out[4096], missing[PATH_MAX + 64];
    char *none[] = { "sdmorph", "measure", NULL };
    char *bad_raw[] = { "sdmorph", "measure", "--raw", "7x7", "x.rgb", NULL };
    char *gone[] = { "sdmorph", "measure", missing, NULL };

    snprintf(missing, sizeof missing, "%s/no-such.mp4", tmp);
    CHECK_INT(run(none, out, sizeof out, NULL), 2);
    CHECK_INT(run(bad_raw, out, sizeof out, NULL), 2);
    CHECK_CONTAINS(out, "--raw wants WIDTHxHEIGHT");
    CHECK_INT(run(gone, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, "no-such.mp4");
}

int main(void)
{
    char path[PATH_MAX], model[PATH_MAX];

    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_segments();
    test_threads();
    snprintf(path, sizeof path, "%s/models/analytic", test_build_dir());
    if (!file_exists(test_sdmorph()) || !realpath(getenv("SDMORPH_MODEL") ? getenv("SDMORPH_MODEL") : path, model)) {
        SKIP("./sdmorph or the analytic bundle not built (run make first)");
    } else {
        test_measure_usage();
        test_measure(model);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    if (system(path))
        fprintf(stderr, "could not remove %s\n", tmp);
    return test_report();
}
