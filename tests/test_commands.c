/* The command line a user reaches for, through the real ./sdmorph: output
 * paths relative to the recipe and made folders, the final line naming
 * every file, PNG stills, overrides (and check agreeing), several recipes
 * in one command, --version and info, progress in logs, render --json,
 * what the sidecar records, a GIF as long as its MP4 at the slowest rate,
 * bash completion, the man page and `make install`. */
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "bundle.h"
#include "cli_run.h"
#include "probe.h"
#include "test.h"
#include "version.h"

static char tmp[] = "/tmp/sdm-cmd-XXXXXX";
static char model[PATH_MAX];

#define SMALL "width: 64\nheight: 64\nsteps: 2\n"

/* tmp/NAME, formatted; four at a time. */
static char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *at(const char *fmt, ...)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char name[PATH_MAX / 2], *b = bufs[next++ % 4];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(b, PATH_MAX, "%s/%s", tmp, name);
    return b;
}

/* ./sdmorph with the NULL-terminated arguments; stdout and stderr in out. */
static int sdm(char *out, size_t len, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;

    argv[n++] = "sdmorph";
    va_start(ap, len);
    while (n < 63 && (argv[n] = va_arg(ap, char *)))
        n++;
    va_end(ap);
    argv[n] = NULL;
    return run(argv, out, len, NULL);
}

/* Runs argv[0] (a path) with stdout and stderr into out; its exit status. */
static int run_exec(char *const argv[], char *out, size_t len)
{
    return run_program(argv[0], argv, NULL, 0, out, len, NULL);
}

/* The JSON document printed last on stdout (stderr's lines come first). */
static json_object *json_after(const char *out)
{
    const char *start = out[0] == '{' ? out : strstr(out, "\n{");

    return start ? json_tokener_parse(start + (start[0] == '\n')) : NULL;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static int png_size(const char *path, int *w, int *h)
{
    long n;
    unsigned char *b = (unsigned char *)slurp_file(path, &n);
    int ok = b && n > 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && !memcmp(b + 12, "IHDR", 4);

    if (ok) {
        *w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19];
        *h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
    }
    free(b);
    return ok ? 0 : -1;
}

static void test_version_info(void)
{
    char out[16384], want[64], fp[32];
    sdm_bundle b;
    sdm_error err = { 0 };

    snprintf(want, sizeof want, "sdmorph %s\n", SDM_VERSION);
    CHECK_INT(sdm(out, sizeof out, "--version", NULL), 0);
    CHECK_STR(out, want);
    CHECK_INT(sdm(out, sizeof out, "--help", NULL), 0);
    CHECK(!strncmp(out, want, strlen(want)));
    CHECK_CONTAINS(out, "info [MODEL]");

    CHECK_INT(sdm(out, sizeof out, "info", model, NULL), 0);
    CHECK_CONTAINS(out, "family:         analytic");
    CHECK_CONTAINS(out, "dtype:          float32");
    CHECK_CONTAINS(out, "image size:     256x256");
    CHECK_CONTAINS(out, "prediction:     epsilon");
    CHECK_CONTAINS(out, "1000 training steps, scaled_linear");
    CHECK_CONTAINS(out, "unet (aoti):    none");
    {
        /* each file with its size (about its weights on the device) */
        char path[4200], size[64];
        struct stat st;
        snprintf(path, sizeof path, "%s/unet.pt", model);
        CHECK(stat(path, &st) == 0 && st.st_size < 1024 * 1024);
        snprintf(size, sizeof size, "unet.pt (%.1f KiB)\n", (double)st.st_size / 1024);
        CHECK_CONTAINS(out, size);
        CHECK_CONTAINS(out, "on the device while sampling (UNet, VAE decoder); the text encoders' ");
    }
    CHECK_CONTAINS(out, "checkpoint: the analytic test model"); /* the source: section */
    CHECK(sdm_bundle_load(model, &b, &err) == 0);
    sdm_bundle_fingerprint(&b, fp, sizeof fp);
    CHECK_CONTAINS(out, fp);
    CHECK_INT(sdm(out, sizeof out, "info", "/nonexistent/model", NULL), 1);
    CHECK_CONTAINS(out, "/nonexistent/model");
    CHECK_INT(sdm(out, sizeof out, "info", model, "extra", NULL), 2);
}

/* Relative paths in a recipe are the recipe folder's; missing folders are
 * made by render (check makes none); the last line names every file. */
static void test_paths(void)
{
    char out[16384];

    mkdir(at("scenes"), 0755);
    write_file(at("scenes/a.yaml"), SMALL
               "frames: 2\noutput: renders/deep/a.mp4\ncontact_sheet: renders/a.png\n"
               "keyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "check", "-q", at("scenes/a.yaml"), NULL), 0);
    CHECK(!file_exists(at("scenes/renders")));
    CHECK_INT(sdm(out, sizeof out, "render", at("scenes/a.yaml"), "-q", "--device", "cpu", NULL), 0);
    CHECK(file_exists(at("scenes/renders/deep/a.mp4")));
    CHECK(file_exists(at("scenes/renders/deep/a.json")));
    CHECK(file_exists(at("scenes/renders/a.png")));
    CHECK(file_exists(at("scenes/renders/a.json")));
    CHECK_CONTAINS(out, "sdmorph: wrote ");
    CHECK_CONTAINS(out, at("scenes/renders/deep/a.mp4"));
    CHECK_CONTAINS(out, at("scenes/renders/deep/a.json"));
    CHECK_CONTAINS(out, at("scenes/renders/a.png"));
    CHECK_CONTAINS(out, at("scenes/renders/a.json"));

    /* model: too, relative to the recipe */
    write_file(at("scenes/m.yaml"), SMALL "model: nomodel\noutput: m.mp4\nkeyframes: [a]\n");
    CHECK_INT(sdm(out, sizeof out, "check", at("scenes/m.yaml"), NULL), 1);
    CHECK_CONTAINS(out, at("scenes/nomodel"));
    /* -o stays the working directory's; a folder under a file is refused */
    write_file(at("afile"), "x");
    CHECK_INT(sdm(out, sizeof out, "render", at("scenes/a.yaml"), "-o", at("afile/x.mp4"), "-q", NULL), 1);
    CHECK_CONTAINS(out, "a part of the path is a file");
}

/* A decoded still against the frame it should be. */
typedef struct {
    const uint8_t *want;
    int same;
} still_pixels;

static int same_pixels(void *user, int index, const uint8_t *rgb, int w, int h)
{
    still_pixels *sp = user;

    sp->same = index == 0 && w == 96 && h == 64 && !memcmp(rgb, sp->want, (size_t)w * h * 3);
    return 0;
}

/* -o pick.png with --frames: one still; the recipe's outputs untouched;
 * %d names and numbered names give one PNG per frame. */
static void test_stills(void)
{
    char out[16384];
    int w = 0, h = 0;
    long n;
    char *before, *after;

    write_file(
        at("st.yaml"),
        "width: 96\nheight: 64\nsteps: 2\nframes: 4\noutput: st.mp4\ncontact_sheet: st.png\nkeyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("st.yaml"), "-q", "--device", "cpu", NULL), 0);
    before = slurp_file(at("st.mp4"), &n);
    CHECK_INT(sdm(out, sizeof out, "render", at("st.yaml"), "-q", "--frames", "2", "-o", at("pick.png"), NULL), 0);
    CHECK(png_size(at("pick.png"), &w, &h) == 0);
    CHECK_INT(w, 96);
    CHECK_INT(h, 64);
    CHECK(file_exists(at("pick.json")));
    after = slurp_file(at("st.mp4"), NULL);
    CHECK(before && after && !memcmp(before, after, (size_t)n)); /* the recipe's video untouched */
    free(before);
    free(after);
    CHECK(!file_exists(at("st.frames-2.mp4")));

    /* one per frame: a %03d name, and a plain name numbered */
    CHECK_INT(
        sdm(out, sizeof out, "render", at("st.yaml"), "-q", "--frames", "1-2", "-o", at("%s", "seq/f%03d.png"), NULL),
        0);
    CHECK(png_size(at("seq/f001.png"), &w, &h) == 0);
    CHECK(png_size(at("seq/f002.png"), &w, &h) == 0);
    CHECK(!file_exists(at("seq/f000.png")));
    CHECK_INT(sdm(out, sizeof out, "render", at("st.yaml"), "-q", "-o", at("all.png"), NULL), 0);
    for (int i = 0; i < 5; i++)
        CHECK(png_size(at("all-%d.png", i), &w, &h) == 0);
    CHECK_INT(count_entries(tmp, "all-"), 10); /* 5 stills, 5 sidecars */
    /* the stills (written on worker threads) are the frames, to the pixel */
    CHECK_INT(sdm(out, sizeof out, "render", at("st.yaml"), "-q", "-o", at("px.rgb"), "-o", at("px.png"), NULL), 0);
    {
        char *rgb = slurp_file(at("px.rgb"), &n);
        CHECK(rgb && n == 5 * 96 * 64 * 3);
        for (int i = 0; rgb && n == 5 * 96 * 64 * 3 && i < 5; i++) {
            still_pixels sp = { (const uint8_t *)rgb + (size_t)i * 96 * 64 * 3, 0 };
            sdm_probe_info info;
            sdm_error err = { 0 };
            CHECK_INT(sdm_probe_file(at("px-%d.png", i), same_pixels, &sp, 0, &info, &err), 0);
            CHECK_INT(sp.same, 1);
        }
        free(rgb);
    }

    /* a bad % is refused by check and render alike */
    CHECK_INT(sdm(out, sizeof out, "check", at("st.yaml"), "-o", at("%s", "bad%s.png"), NULL), 2);
    CHECK_CONTAINS(out, "one %d");
    CHECK_INT(sdm(out, sizeof out, "render", at("st.yaml"), "-o", at("%s", "bad%s.png"), NULL), 2);
    CHECK_CONTAINS(out, "one %d");
}

static json_object *sidecar(const char *path)
{
    char *text = slurp_file(path, NULL);
    json_object *o = text ? json_tokener_parse(text) : NULL;
    free(text);
    return o;
}

/* Overrides change the recipe as its own keys would, errors name the
 * option, check reads them the same, and the sidecar records them with
 * what the render used, never null. */
static void test_overrides_sidecar(void)
{
    char out[16384];
    json_object *s, *r, *ov;

    write_file(at("ov.yaml"), "steps: 2\nframes: 2\noutput: ov.mp4\nkeyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("ov.yaml"), "-q", "--device", "cpu", "--steps", "3", "--size", "64x72",
                  "--seed", "9", "--sampler", "euler", "--set", "negative=blur", NULL),
              0);
    s = sidecar(at("ov.json"));
    CHECK(s != NULL);
    CHECK_INT(json_object_get_int(get(s, "steps")), 3);
    CHECK_INT(json_object_get_int(get(s, "width")), 64);
    CHECK_INT(json_object_get_int(get(s, "height")), 72);
    CHECK_STR(json_object_get_string(get(s, "sampler")), "euler");
    CHECK_STR(json_object_get_string(get(s, "negative")), "blur");
    CHECK_INT(json_object_get_int64(get(json_object_array_get_idx(get(s, "keyframes"), 0), "seed")), 9);
    ov = get(s, "overrides");
    CHECK_INT(ov ? (int)json_object_array_length(ov) : -1, 6);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(ov, 0)), "steps=3");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(ov, 2)), "height=72");
    CHECK_STR(json_object_get_string(get(s, "model")), model);
    r = get(s, "render");
    CHECK(r != NULL);
    CHECK_STR(json_object_get_string(get(r, "model")), model);
    CHECK_INT(strlen(json_object_get_string(get(r, "model_fingerprint"))), 16);
    CHECK_STR(json_object_get_string(get(r, "device")), "cpu");
    CHECK_INT(json_object_get_int(get(r, "width")), 64);
    CHECK_INT(json_object_get_int(get(r, "steps")), 3);
    CHECK(json_object_get_int(get(r, "batch")) >= 1);
    CHECK(json_object_get_double(get(r, "seconds")) > 0);
    json_object_object_foreach(r, key, val)
    {
        if (!val)
            fprintf(stderr, "render.%s is null\n", key);
        CHECK(val != NULL);
    }
    json_object_put(s);

    /* errors name the option; check says the same as render */
    const char *bad[][2] = { { "--steps", "0" },        { "--size", "64x60" },       { "--sampler", "dpm_fast" },
                             { "--set", "guidence=3" }, { "--set", "keyframes=[]" }, { "--seed", "-1" } };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[64], check_out[16384];
        snprintf(want, sizeof want, "sdmorph: %s %s: ", bad[i][0], bad[i][1]);
        CHECK_INT(sdm(out, sizeof out, "render", at("ov.yaml"), "-q", bad[i][0], bad[i][1], NULL), 2);
        CHECK_CONTAINS(out, want);
        CHECK_INT(sdm(check_out, sizeof check_out, "check", at("ov.yaml"), bad[i][0], bad[i][1], NULL), 2);
        CHECK_STR(check_out, out);
    }
    CHECK_INT(sdm(out, sizeof out, "render", at("ov.yaml"), "--size", "64", NULL), 2);
    CHECK_CONTAINS(out, "--size must be WIDTHxHEIGHT");
    CHECK_INT(sdm(out, sizeof out, "render", at("ov.yaml"), "--set", "steps", NULL), 2);
    CHECK_CONTAINS(out, "--set must be KEY=VALUE");
    /* --set output= is relative to the working directory, a YAML list works */
    CHECK_INT(sdm(out, sizeof out, "check", "--json", at("ov.yaml"), "--set", "steps=4", NULL), 0);
    s = json_after(out);
    CHECK_INT(json_object_get_int(get(s, "steps")), 4);
    CHECK_INT(json_object_get_int(get(s, "width")), 256); /* the model's, not null */
    json_object_put(s);
}

/* Several recipes: each model loaded once, a failing one does not stop
 * the others, the table and the exit status say which failed. */
static void test_several(void)
{
    char out[32768];
    json_object *j, *list;

    write_file(at("r1.yaml"), SMALL "frames: 2\noutput: r1.mp4\nkeyframes: [a, b]\n");
    write_file(at("r2.yaml"), SMALL "frames: 2\noutput: r2.gif\nkeyframes: [c, d]\n");
    write_file(at("r3.yaml"), SMALL "frames: 2\nguidence: 3\noutput: r3.mp4\nkeyframes: [e, f]\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("r1.yaml"), at("r3.yaml"), at("r2.yaml"), "--device", "cpu", "-q",
                  "--json", NULL),
              2);
    CHECK(file_exists(at("r1.mp4")));
    CHECK(file_exists(at("r2.gif")));
    CHECK(!file_exists(at("r3.mp4")));
    CHECK_CONTAINS(out, "3 recipes: 2 rendered, 1 failed");
    CHECK_CONTAINS(out, "FAILED");
    CHECK_CONTAINS(out, "guidence");
    j = json_after(out);
    list = get(j, "recipes");
    CHECK_INT(list ? (int)json_object_array_length(list) : -1, 3);
    CHECK_STR(json_object_get_string(get(json_object_array_get_idx(list, 0), "status")), "ok");
    CHECK_STR(json_object_get_string(get(json_object_array_get_idx(list, 1), "status")), "failed");
    CHECK_INT(json_object_get_int(get(json_object_array_get_idx(list, 1), "exit")), 2);
    CHECK_STR(json_object_get_string(get(json_object_array_get_idx(list, 2), "status")), "ok");
    /* --json: stats and every file written */
    {
        json_object *r1 = json_object_array_get_idx(list, 0), *files = get(r1, "files");
        CHECK_INT(json_object_get_int(get(r1, "frames_shown")), 3);
        CHECK_INT(json_object_get_int(get(r1, "width")), 64);
        CHECK_INT(files ? (int)json_object_array_length(files) : -1, 2);
        CHECK_STR(json_object_get_string(json_object_array_get_idx(files, 0)), at("r1.mp4"));
        CHECK_STR(json_object_get_string(json_object_array_get_idx(files, 1)), at("r1.json"));
    }
    /* timing: where the loop's seconds went, each part within the loop's */
    {
        json_object *r1 = json_object_array_get_idx(list, 0), *t = get(r1, "timing");
        double loop = json_object_get_double(get(r1, "seconds")), parts = 0;
        static const char *const keys[] = { "launch", "device_wait", "frames_out", "outputs_blocked", "pace" };
        CHECK(t != NULL);
        for (size_t k = 0; t && k < sizeof keys / sizeof *keys; k++) {
            double v = json_object_get_double(get(t, keys[k]));
            CHECK(v >= 0 && v <= loop + 1e-6);
            parts += k < 3 ? v : 0;
        }
        CHECK(loop > 0 && parts <= loop + 1e-6 && parts > 0.5 * loop); /* launch + wait + out: most of the loop */
        CHECK(t && json_object_get_double(get(t, "finish")) > 0);
    }
    json_object_put(j);
    /* the two good ones share one model load: the second loads nothing */
    CHECK_INT(sdm(out, sizeof out, "render", at("r1.yaml"), at("r2.yaml"), "--device", "cpu", "-q", "--json", NULL), 0);
    j = json_after(out);
    list = get(j, "recipes");
    CHECK(json_object_get_double(get(json_object_array_get_idx(list, 1), "load_seconds")) <
          json_object_get_double(get(json_object_array_get_idx(list, 0), "load_seconds")) + 0.5);
    json_object_put(j);
}

/* --timings: the device's time for sampling and decoding, counted per batch
 * (2 steps each, 3 frames at 2 a call: two batches), said and in the JSON. */
static void test_timings(void)
{
    char out[32768];
    json_object *j, *t;

    write_file(at("tm.yaml"), SMALL "frames: 2\noutput: tm.mp4\nkeyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("tm.yaml"), "--device", "cpu", "--batch", "2", "--timings", "--json",
                  "-q", NULL),
              0);
    CHECK_CONTAINS(out, "sdmorph: device time (--timings): sampling ");
    CHECK_CONTAINS(out, "(2 batches, 4 steps: ");
    CHECK_CONTAINS(out, "(3 frames: ");
    j = json_after(out);
    t = get(json_object_array_get_idx(get(j, "recipes"), 0), "timing");
    CHECK_INT(json_object_get_int(get(t, "sample_steps")), 4);
    CHECK_INT(json_object_get_int(get(t, "decoded_frames")), 3);
    CHECK(json_object_get_double(get(t, "sample")) > 0 && json_object_get_double(get(t, "decode")) > 0);
    CHECK(get(t, "device_memory_used") == NULL); /* CUDA only */
    CHECK(!strstr(out, "device memory"));
    /* where the loading went: each part some time, none more than all of it */
    CHECK_CONTAINS(out, "sdmorph: loading (--timings): libtorch ");
    {
        json_object *l = get(t, "loading");
        double load = json_object_get_double(get(json_object_array_get_idx(get(j, "recipes"), 0), "load_seconds"));
        CHECK(l != NULL && json_object_get_double(get(l, "unet")) > 0 &&
              json_object_get_double(get(l, "text_encoders")) > 0 &&
              json_object_get_double(get(l, "unet")) + json_object_get_double(get(l, "text_encoders")) <= load);
        CHECK(json_object_get_double(get(l, "aoti_unet")) == 0); /* none on the CPU */
    }
    json_object_put(j);
    /* without it, neither */
    CHECK_INT(sdm(out, sizeof out, "render", at("tm.yaml"), "--device", "cpu", "--batch", "2", "--json", "-q", NULL),
              0);
    CHECK(!strstr(out, "device time"));
    CHECK(!strstr(out, "loading (--timings)"));
    j = json_after(out);
    t = get(json_object_array_get_idx(get(j, "recipes"), 0), "timing");
    CHECK(t != NULL && get(t, "sample_steps") == NULL && get(t, "loading") == NULL);
    json_object_put(j);
}

/* stderr is not a terminal here: progress comes as lines with rate and ETA. */
static void test_progress_log(void)
{
    char out[32768], *c = out;
    int lines = 0;

    write_file(at("pg.yaml"), SMALL "frames: 8\noutput: pg.mp4\nkeyframes: [a, b]\n");
    CHECK_INT(
        sdm(out, sizeof out, "render", at("pg.yaml"), "--device", "cpu", "--batch", "2", "--progress-every", "0", NULL),
        0);
    while ((c = strstr(c, "sdmorph: frame "))) {
        lines++;
        c++;
    }
    CHECK(lines >= 5); /* a line per batch of 2 (9 frames), and the last */
    CHECK(strchr(out, '\r') == NULL);
    CHECK_CONTAINS(out, "frame 9/9 (rendered 9/9)");
    CHECK_CONTAINS(out, "frames/s, ETA 0:00\n");
    CHECK_CONTAINS(out, "sdmorph: loop ");
    CHECK_CONTAINS(out, "s after it\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("pg.yaml"), "--device", "cpu", "-q", NULL), 0);
    CHECK(strstr(out, "sdmorph: frame ") == NULL);
}

/* The slowest rate: a GIF as long as its MP4, and no FFmpeg error. */
static void test_slow_gif(void)
{
    char out[16384];
    sdm_probe_info gif, mp4;
    sdm_error err = { 0 };

    write_file(at("slow.yaml"), SMALL "fps: 0.001\nframes: 2\nkeyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "render", at("slow.yaml"), "-q", "-o", at("slow.mp4"), "-o", at("slow.gif"), NULL),
              0);
    CHECK(strstr(out, "rror") == NULL);
    CHECK(sdm_probe_file(at("slow.mp4"), NULL, NULL, 0, &mp4, &err) == 0);
    CHECK(sdm_probe_file(at("slow.gif"), NULL, NULL, 0, &gif, &err) == 0);
    printf("at 0.001 fps: MP4 %.2f s, GIF %.2f s\n", mp4.duration, gif.duration);
    CHECK_NEAR(mp4.duration, 3000, 0.5);
    CHECK_NEAR(gif.duration, mp4.duration, 0.5);
}

/* bash completion: subcommands, options, recipe files. */
static void test_completion(void)
{
    char out[4096], script[PATH_MAX * 3], cwd[PATH_MAX];
    char *argv[] = { "/bin/bash", "-c", script, NULL };

    if (!file_exists("/bin/bash") || !getcwd(cwd, sizeof cwd) || !file_exists("completion/sdmorph.bash")) {
        SKIP("no bash, or not run from the source tree");
        return;
    }
    mkdir(at("comp"), 0755);
    write_file(at("comp/one.yaml"), "");
    write_file(at("comp/two.txt"), "");
    snprintf(script, sizeof script,
             "source %s/completion/sdmorph.bash; cd %s/comp; c() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); "
             "COMPREPLY=(); _sdmorph; echo \"${COMPREPLY[*]}\"; }; c sdmorph re; c sdmorph render --sa; "
             "c sdmorph render o; c sdmorph render a --sampler eu; c sdmorph check --js",
             cwd, tmp);
    CHECK_INT(run_exec(argv, out, sizeof out), 0);
    CHECK_STR(out, "render\n--sampler\none.yaml\neuler euler_a\n--json\n");
}

/* make install puts the binary, its libtorch side, the man page and the
 * completion under DESTDIR/PREFIX; the installed binary renders with the
 * installed shim (the dynamic loader's log names it); make uninstall
 * removes them all; the man page is valid for man. */
static void test_install(void)
{
    char out[16384], dest[PATH_MAX + 16], bin[PATH_MAX + 8], file[PATH_MAX];
    /* -o: the binary under test is installed as it is, never rebuilt */
    char *argv[] = { "/usr/bin/make", "-s", "-o", file, "install", dest, "PREFIX=/opt/sdm", bin, NULL };
    char *unargv[] = { "/usr/bin/make", "-s", "uninstall", dest, "PREFIX=/opt/sdm", bin, NULL };

    if (!file_exists("Makefile") || !file_exists("/usr/bin/make") || !realpath(test_sdmorph(), file)) {
        SKIP("no make, or not run from the source tree");
        return;
    }
    snprintf(dest, sizeof dest, "DESTDIR=%s", at("stage"));
    snprintf(bin, sizeof bin, "BIN=%s", file);
    CHECK_INT(run_exec(argv, out, sizeof out), 0);
    CHECK(file_exists(at("stage/opt/sdm/bin/sdmorph")));
    CHECK(file_exists(at("stage/opt/sdm/share/man/man1/sdmorph.1")));
    CHECK(file_exists(at("stage/opt/sdm/share/bash-completion/completions/sdmorph")));
    /* the installed binary runs */
    {
        char *args[] = { at("stage/opt/sdm/bin/sdmorph"), "--version", NULL };
        CHECK_INT(run_exec(args, out, sizeof out), 0);
        CHECK_CONTAINS(out, SDM_VERSION);
    }
    CHECK(file_exists(at("stage/opt/sdm/lib/sdmorph/libsdm_torch.so")));
    {
        char *args[] = { at("stage/opt/sdm/bin/sdmorph"),
                         "render",
                         at("install.yaml"),
                         "--frames",
                         "0",
                         "-o",
                         at("install.png"),
                         "-q",
                         NULL };
        write_file(args[2], SMALL "keyframes:\n  - a city\n  - a forest\n");
        static char log[1 << 20];
        setenv("LD_DEBUG", "files", 1);
        CHECK_INT(run_exec(args, log, sizeof log), 0);
        unsetenv("LD_DEBUG");
        CHECK_CONTAINS(log, "/opt/sdm/bin/../lib/sdmorph/libsdm_torch.so");
        CHECK(file_exists(at("install.png")));
    }
    CHECK_INT(run_exec(unargv, out, sizeof out), 0);
    CHECK(!file_exists(at("stage/opt/sdm/bin/sdmorph")));
    CHECK(!file_exists(at("stage/opt/sdm/lib/sdmorph")));
    CHECK(!file_exists(at("stage/opt/sdm/share/man/man1/sdmorph.1")));
    /* the man page names every option render and check take */
    {
        const char *cmds[] = { "render", "check" };
        char *text = slurp_file("sdmorph.1", NULL), help[8192], opt[64], *c;
        CHECK(text && strstr(text, ".TH SDMORPH 1"));
        for (int k = 0; text && k < 2; k++) {
            CHECK_INT(sdm(help, sizeof help, cmds[k], "--help", NULL), 0);
            for (c = help; (c = strstr(c, "--")); c += 2) {
                size_t n = strspn(c + 2, "abcdefghijklmnopqrstuvwxyz-");
                snprintf(opt, sizeof opt, "\\-\\-%.*s", (int)n, c + 2);
                for (char *h = opt + 4; (h = strchr(h + 1, '-')) && h[-1] != '\\';) {
                    memmove(h + 1, h, strlen(h) + 1);
                    *h++ = '\\';
                }
                if (n && !strstr(text, opt))
                    fprintf(stderr, "sdmorph.1 lacks %s\n", opt);
                CHECK(!n || strstr(text, opt));
            }
        }
        free(text);
    }
}

int main(void)
{
    if (cli_test_setup(model, tmp))
        return test_report();
    test_version_info();
    test_paths();
    test_stills();
    test_overrides_sidecar();
    test_several();
    test_timings();
    test_progress_log();
    test_slow_gif();
    test_completion();
    test_install();
    return test_report();
}
