/* Nothing a user owns is lost (issue 16): a render never writes over its
 * recipe or model, a re-render of a few frames never replaces the full
 * render or its sheet, the files of one render are committed together or
 * not at all (a full disk before the sidecar, a rename that fails in the
 * middle), killed renders leave nothing that a later one does not remove,
 * every output gets its sidecar, and the messages say why. Each test here
 * failed before the fix it pins. */
#include <limits.h>
#include <stdarg.h>
#include <time.h>

#include "cli_run.h"
#include "fileset.h"
#include "paths.h"
#include "probe.h"
#include "test.h"

static char tmp[] = "/tmp/sdm-out-XXXXXX";
static char model[PATH_MAX];

/* tmp/name, in one of 64 rotating buffers */
static char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *at(const char *fmt, ...)
{
    static char bufs[64][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 64], name[PATH_MAX - 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(b, PATH_MAX, "%s/%s", tmp, name);
    return b;
}

/* sdmorph ARGS... (NULL-terminated); render gets --device cpu -q too. */
static int sdm_args(char *out, size_t len, int render, va_list ap)
{
    char *argv[80];
    int n = 0;

    argv[n++] = "sdmorph";
    while (n < 74 && (argv[n] = va_arg(ap, char *)))
        n++;
    if (render) {
        argv[n++] = "--device";
        argv[n++] = "cpu";
        argv[n++] = "-q";
    }
    argv[n] = NULL;
    return run(argv, out, len, NULL);
}

static int sdm(char *out, size_t len, ...)
{
    va_list ap;
    int rc;

    va_start(ap, len);
    rc = sdm_args(out, len, 0, ap);
    va_end(ap);
    return rc;
}

static int render(char *out, size_t len, ...)
{
    va_list ap;
    int rc;

    va_start(ap, len);
    rc = sdm_args(out, len, 1, ap);
    va_end(ap);
    return rc;
}

static int same_file(const char *a, const char *b)
{
    long na, nb;
    char *x = slurp_file(a, &na), *y = slurp_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, (size_t)na) == 0;

    free(x);
    free(y);
    return same;
}

/* A copy of the analytic bundle in tmp/NAME, model.yaml with `from` replaced by `to`. */
static char *bundle_copy(const char *name, const char *from, const char *to)
{
    char *dir = at("%s", name);

    CHECK_INT(bundle_variant(model, dir, from, to, 1), 0);
    return dir;
}

#define SMALL "width: 64\nheight: 64\nsteps: 2\n"
#define WIDE "width: 128\nheight: 64\nsteps: 2\n"

/* ---- data loss ------------------------------------------------------------ */

/* A JSON recipe forest.json with output forest.mp4: the sidecar would be the
 * recipe; a recipe scene.gif whose output is scene.gif; an output whose
 * sidecar is a model file. Refused (2) by check and render; nothing touched. */
static void test_outputs_never_inputs(void)
{
    char out[8192], recipe_json[PATH_MAX + 256], *recipe = at("forest.json"), *gif = at("scene.gif"), *m;
    char text[PATH_MAX + 256];

    snprintf(recipe_json, sizeof recipe_json,
             "{\"width\": 64, \"height\": 64, \"steps\": 2, \"frames\": 2, "
             "\"output\": \"%s\", \"keyframes\": [\"a city\", \"a forest\"]}\n",
             at("forest.mp4"));
    write_file(recipe, recipe_json);
    CHECK_INT(sdm(out, sizeof out, "check", "-q", recipe, NULL), 2);
    CHECK_INT(render(out, sizeof out, "render", recipe, NULL), 2);
    CHECK_CONTAINS(out, "the sidecar");
    CHECK_CONTAINS(out, "would overwrite the recipe");
    {
        char *now = slurp_file(recipe, NULL);
        CHECK(now && !strcmp(now, recipe_json));
        free(now);
    }
    CHECK(!file_exists(at("forest.mp4")));

    snprintf(text, sizeof text, SMALL "frames: 2\noutput: %s\nkeyframes: [a, b]\n", gif);
    write_file(gif, text);
    CHECK_INT(sdm(out, sizeof out, "check", "-q", gif, NULL), 2);
    CHECK_INT(render(out, sizeof out, "render", gif, NULL), 2);
    CHECK_CONTAINS(out, "output '");
    CHECK_CONTAINS(out, "would overwrite the recipe");
    {
        char *now = slurp_file(gif, NULL);
        CHECK(now && !strcmp(now, text));
        free(now);
    }

    /* -o MODEL/vocab.mp4: its sidecar would be the model's vocab.json */
    m = bundle_copy("vocab-model", NULL, NULL);
    write_file(at("plain.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    CHECK_INT(
        render(out, sizeof out, "render", at("plain.yaml"), "--model", m, "-o", at("vocab-model/vocab.mp4"), NULL), 2);
    CHECK_CONTAINS(out, "the model file");
    {
        char a[PATH_MAX + 32], b[PATH_MAX + 32];
        snprintf(a, sizeof a, "%s/vocab.json", model);
        snprintf(b, sizeof b, "%s/vocab.json", m);
        CHECK(same_file(a, b));
    }
}

/* --frames 2 writes NAME.frames-2.mp4 and .png: the full render's video,
 * sheet and sidecar stay as they were, with or without -o. */
static void test_frames_keep_full_render(void)
{
    char out[8192], text[2048], *recipe = at("sheet.yaml");

    snprintf(text, sizeof text, SMALL "frames: 6\noutput: %s\ncontact_sheet: %s\nkeyframes: [a, b]\n", at("sheet.mp4"),
             at("sheet.png"));
    write_file(recipe, text);
    CHECK_INT(render(out, sizeof out, "render", recipe, NULL), 0);
    copy_file(at("sheet.png"), at("sheet-before.png"));
    copy_file(at("sheet.mp4"), at("sheet-before.mp4"));
    copy_file(at("sheet.json"), at("sheet-before.json"));

    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", "2", NULL), 0);
    CHECK(same_file(at("sheet.png"), at("sheet-before.png")));
    CHECK(same_file(at("sheet.mp4"), at("sheet-before.mp4")));
    CHECK(same_file(at("sheet.json"), at("sheet-before.json")));
    CHECK(file_exists(at("sheet.frames-2.mp4")));
    CHECK(file_exists(at("sheet.frames-2.png")));
    CHECK(file_exists(at("sheet.frames-2.json")));

    /* -o replaces the recipe's outputs, its contact sheet too */
    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", "3", "-o", at("pick.mp4"), NULL), 0);
    CHECK(same_file(at("sheet.png"), at("sheet-before.png")));
    CHECK(file_exists(at("pick.mp4")) && file_exists(at("pick.json")));
    CHECK(!file_exists(at("sheet.frames-3.png")));
}

/* A full disk (RLIMIT_FSIZE, so the 600-frame sidecar, larger than its
 * video, is what cannot be written): the earlier video and its sidecar
 * both stay; nothing temporary is left. */
static void test_disk_full_before_sidecar(void)
{
    char out[8192], text[1024], *recipe = at("full.yaml");
    struct rlimit old, small;
    long nv = 0, ns = 0;

    mkdir(at("full"), 0755);
    /* a small video: a near-still morph costs x264 (MB-tree on) few bytes */
    snprintf(text, sizeof text, WIDE "frames: 600\noutput: %s\nkeyframes: [a, b]\n", at("full/d.mp4"));
    write_file(recipe, text);
    CHECK_INT(render(out, sizeof out, "render", recipe, NULL), 0);
    copy_file(at("full/d.mp4"), at("d-before.mp4"));
    copy_file(at("full/d.json"), at("d-before.json"));
    free(slurp_file(at("full/d.mp4"), &nv));
    free(slurp_file(at("full/d.json"), &ns));
    CHECK(nv > 0 && nv + 8192 < ns); /* the premise: a limit halfway lets the video through, not the sidecar */
    snprintf(text, sizeof text, WIDE "frames: 601\noutput: %s\nkeyframes: [a, b]\n", at("full/d.mp4"));
    write_file(recipe, text);

    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = (rlim_t)(nv + ns) / 2;
    signal(SIGXFSZ, SIG_IGN); /* ignored across exec: writes past the limit fail with EFBIG */
    setrlimit(RLIMIT_FSIZE, &small);
    CHECK_INT(render(out, sizeof out, "render", recipe, NULL), 1);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK_CONTAINS(out, "d.json");
    CHECK_CONTAINS(out, "File too large");
    CHECK(same_file(at("full/d.mp4"), at("d-before.mp4")));
    CHECK(same_file(at("full/d.json"), at("d-before.json")));
    CHECK_INT(count_entries(at("full"), ".tmp-"), 0);
    printf("full disk before the sidecar: %s", out);
}

/* -o good.mp4 -o ./good.mp4 (and sub/../good.mp4): one file named twice is
 * a usage error up front; the earlier good.mp4 stays. */
static void test_one_file_twice(void)
{
    char out[8192], *recipe = at("twice.yaml"), *good = at("good.mp4");
    char dot[PATH_MAX], up[PATH_MAX];

    write_file(recipe, SMALL "frames: 2\nkeyframes: [a, b]\n");
    write_file(good, "an earlier good render");
    mkdir(at("sub"), 0755);
    snprintf(dot, sizeof dot, "%s/./good.mp4", tmp);
    snprintf(up, sizeof up, "%s/sub/../good.mp4", tmp);
    CHECK_INT(sdm(out, sizeof out, "check", "-q", recipe, "-o", good, "-o", dot, NULL), 2);
    CHECK_INT(render(out, sizeof out, "render", recipe, "-o", good, "-o", dot, NULL), 2);
    CHECK_CONTAINS(out, "are the same file");
    CHECK_INT(render(out, sizeof out, "render", recipe, "-o", up, "-o", good, NULL), 2);
    CHECK_CONTAINS(out, "are the same file");
    {
        char *now = slurp_file(good, NULL);
        CHECK(now && !strcmp(now, "an earlier good render"));
        free(now);
    }
}

/* Two --frames selections that agree in their first 63 characters write two
 * files; a list too long for a file name gets a name that still says which. */
static void test_frames_names_distinct(void)
{
    char out[8192], text[1024], a[400] = "", b[400], *recipe = at("sel.yaml");

    for (int k = 0; k <= 30; k++) /* 82 characters */
        snprintf(a + strlen(a), sizeof a - strlen(a), "%s%d", k ? "," : "", k);
    snprintf(b, sizeof b, "%s,31", a);
    snprintf(text, sizeof text, SMALL "frames: 50\noutput: %s\nkeyframes: [a, b]\n", at("sel.mp4"));
    write_file(recipe, text);
    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", a, NULL), 0);
    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", b, NULL), 0);
    CHECK_INT(count_entries(tmp, "sel.frames-"), 4); /* two videos, two sidecars */
    {
        char name[PATH_MAX];
        snprintf(name, sizeof name, "sel.frames-%s.mp4", b);
        for (char *c = name; *c; c++)
            *c = *c == ',' ? '_' : *c;
        CHECK(file_exists(at("%s", name)));
    }
    /* 0,1,2,...,49: 140 characters, still one name per list */
    a[0] = '\0';
    for (int k = 0; k < 50; k++)
        snprintf(a + strlen(a), sizeof a - strlen(a), "%s%d", k ? "," : "", k);
    snprintf(b, sizeof b, "%s,0", a);
    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", a, NULL), 0);
    CHECK_INT(render(out, sizeof out, "render", recipe, "--frames", b, NULL), 0);
    CHECK_INT(count_entries(tmp, "sel.frames-"), 8);
}

/* The commit itself: a rename that fails in the middle (here the second
 * file's temporary file vanished) puts the first file back. */
static void test_commit_rolls_back(void)
{
    char *a = at("set/a.mp4"), *b = at("set/b.gif"), *c = at("set/c.json");
    sdm_fileset *fs = NULL;
    sdm_error err = { 0 };
    int ia, ib, ic;

    mkdir(at("set"), 0755);
    write_file(a, "old a");
    write_file(c, "old c");
    CHECK_INT(sdm_fileset_new(&fs, &err), 0);
    ia = sdm_fileset_add(fs, a, &err);
    ib = sdm_fileset_add(fs, b, &err);
    ic = sdm_fileset_add(fs, c, &err);
    CHECK(ia == 0 && ib == 1 && ic == 2);
    write_file(sdm_fileset_temp(fs, ia), "new a");
    write_file(sdm_fileset_temp(fs, ic), "new c");
    unlink(sdm_fileset_temp(fs, ib));
    CHECK_INT(sdm_fileset_commit(fs, 0, &err), -1);
    CHECK_CONTAINS(err.msg, "b.gif");
    CHECK_CONTAINS(err.msg, "the earlier files are as they were");
    sdm_fileset_free(&fs);
    {
        char *na = slurp_file(a, NULL), *nc = slurp_file(c, NULL);
        CHECK(na && !strcmp(na, "old a"));
        CHECK(nc && !strcmp(nc, "old c"));
        free(na);
        free(nc);
    }
    CHECK(!file_exists(b));
    CHECK_INT(count_entries(at("set"), ".tmp-") + count_entries(at("set"), ".old-"), 0);

    /* and a whole one: all three in place, no backup left */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_fileset_new(&fs, &err), 0);
    for (int i = 0; i < 3; i++) {
        const char *t = i == 0 ? a : i == 1 ? b : c;
        int k = sdm_fileset_add(fs, t, &err);
        write_file(sdm_fileset_temp(fs, k), "new");
    }
    CHECK_INT(sdm_fileset_commit(fs, 0, &err), 0);
    CHECK_STR(sdm_fileset_written(fs, 1), b);
    sdm_fileset_free(&fs);
    {
        char *na = slurp_file(a, NULL);
        CHECK(na && !strcmp(na, "new"));
        free(na);
    }
    CHECK_INT(count_entries(at("set"), ".tmp-") + count_entries(at("set"), ".old-"), 0);
}

/* ---- leftovers ----------------------------------------------------------- */

/* Starts a long render into dir/long.mp4 (+ sheet); its stderr goes to log. */
static pid_t start_long(const char *dir, const char *log)
{
    char text[1024], recipe[PATH_MAX + 16];

    snprintf(recipe, sizeof recipe, "%s/long.yaml", dir);
    snprintf(text, sizeof text,
             "width: 128\nheight: 128\nsteps: 30\nframes: 4000\noutput: %s/long.mp4\n"
             "contact_sheet: %s/long.png\nkeyframes: [a city, a forest]\n",
             dir, dir);
    write_file(recipe, text);
    {
        char *argv[] = {
            "sdmorph", "render", recipe, "--device", "cpu", "--batch", "2", "--progress-every", "0", NULL
        };
        return start_logged(argv, log);
    }
}

/* A closed terminal (SIGHUP) ends a render as Ctrl-C does: exit 130, the
 * frames done in a playable .partial file, no temporary file left. */
static void test_sighup(void)
{
    char *dir = at("hup"), *log = at("hup.log");
    sdm_probe_info info;
    sdm_error err = { 0 };
    pid_t pid;

    mkdir(dir, 0755);
    pid = start_long(dir, log);
    CHECK(wait_for_text(log, "sdmorph: frame 2/", 300)); /* frames shown: a partial file to keep */
    CHECK_INT(stop_with(pid, SIGHUP), 130);
    CHECK_INT(count_entries(dir, ".tmp-"), 0);
    CHECK(sdm_probe_file(at("hup/long.partial.mp4"), NULL, NULL, 0, &info, &err) == 0 && info.frames > 0);
    CHECK(file_exists(at("hup/long.partial.png")));
    CHECK(!file_exists(at("hup/long.mp4")));
}

/* SIGKILL leaves temporary files; the next render of the same outputs
 * removes them, and nothing else: not those of a live process, nor those
 * of another output. */
static void test_stale_temps(void)
{
    char *dir = at("kill"), *log = at("kill.log"), out[8192], text[1024];
    char other[PATH_MAX + 64], live[PATH_MAX + 64];
    int left;
    pid_t pid;

    mkdir(dir, 0755);
    pid = start_long(dir, log);
    CHECK(wait_for_text(log, "sdmorph: frame 2/", 300)); /* its temporary files are made */
    CHECK_INT(stop_with(pid, SIGKILL), 128 + SIGKILL);
    left = count_entries(dir, ".tmp-");
    CHECK(left >= 2); /* the premise: the video's and the sheet's (and the sidecar's) */
    snprintf(other, sizeof other, "%s/.other.mp4.tmp-%ld", dir, (long)pid);
    snprintf(live, sizeof live, "%s/.long.mp4.tmp-%ld", dir, (long)getpid());
    write_file(other, "another output's");
    write_file(live, "a live process's");

    snprintf(text, sizeof text,
             SMALL
             "frames: 2\noutput: %s/long.mp4\ncontact_sheet: %s/long.png\n"
             "keyframes: [a, b]\n",
             dir, dir);
    write_file(at("kill/short.yaml"), text);
    CHECK_INT(render(out, sizeof out, "render", at("kill/short.yaml"), NULL), 0);
    CHECK_CONTAINS(out, "which is gone");
    CHECK_INT(count_entries(dir, ".tmp-"), 2);
    CHECK(file_exists(other));
    CHECK(file_exists(live));
    printf("stale temporary files: %d left by a killed render, removed by the next\n", left);
}

/* ---- sidecars ------------------------------------------------------------ */

static void test_sidecar_each_folder(void)
{
    char out[8192];

    mkdir(at("sc1"), 0755);
    mkdir(at("sc2"), 0755);
    write_file(at("two.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    CHECK_INT(render(out, sizeof out, "render", at("two.yaml"), "-o", at("sc1/a.mp4"), "-o", at("sc2/b.gif"), NULL), 0);
    CHECK(file_exists(at("sc1/a.json")));
    CHECK(file_exists(at("sc2/b.json")));
    CHECK(same_file(at("sc1/a.json"), at("sc2/b.json")));
}

/* ---- messages ------------------------------------------------------------ */

/* A path past the system's limit, a name past its name limit: refused up
 * front, the message short enough to say why. 251- and 254-character names
 * work (temporary and .partial names are cut to fit); at 255, x.mp4's
 * sidecar x.json would be 256: refused up front, saying so. */
static void test_long_paths(void)
{
    char out[8192], *p = malloc(5000), name[300];

    write_file(at("long.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    snprintf(p, 5000, "%s/", tmp);
    while (strlen(p) < 4200)
        strcat(p, "./");
    strcat(p, "x.mp4");
    CHECK_INT(sdm(out, sizeof out, "check", "-q", at("long.yaml"), "-o", p, NULL), 2);
    CHECK_INT(render(out, sizeof out, "render", at("long.yaml"), "-o", p, NULL), 2);
    CHECK_CONTAINS(out, "bytes long; the system allows at most 4095");
    CHECK(strlen(out) < 600);

    for (int len = 251; len <= 256; len++) {
        int ok = len < 255;
        if (len == 252 || len == 253)
            continue;
        memset(name, 'n', (size_t)len - 4);
        strcpy(name + len - 4, ".mp4");
        CHECK_INT(render(out, sizeof out, "render", at("long.yaml"), "-o", at("%s", name), NULL), ok ? 0 : 2);
        CHECK(ok ? file_exists(at("%s", name)) : strstr(out, "the system allows at most 255") != NULL);
        if (len == 255)
            CHECK_CONTAINS(out, "the sidecar of output");
        strcpy(name + len - 4, ".json");
        CHECK(!ok || file_exists(at("%s", name)));
    }
    CHECK_INT(count_entries(tmp, ".tmp-"), 0);
    free(p);
}

/* model.yaml's schedule: bad betas name the file and the key, and check
 * says so as render does, before anything loads. */
static void test_bad_betas(void)
{
    static const struct {
        const char *from, *to, *says;
    } cases[] = {
        { "beta_start: 0.00085", "beta_start: 0.5", "'schedule.beta_start' (0.5) is above 'schedule.beta_end'" },
        { "beta_end: 0.012", "beta_end: -1", "'schedule.beta_end' is -1; expected a number above 0 and below 1" },
    };
    char out[8192], dir[64];

    write_file(at("betas.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *m;
        snprintf(dir, sizeof dir, "betas%zu", i);
        m = bundle_copy(dir, cases[i].from, cases[i].to);
        CHECK_INT(sdm(out, sizeof out, "check", "-q", at("betas.yaml"), "--model", m, "-o", at("b.mp4"), NULL), 1);
        CHECK_CONTAINS(out, "model.yaml");
        CHECK_CONTAINS(out, cases[i].says);
        CHECK_INT(render(out, sizeof out, "render", at("betas.yaml"), "--model", m, "-o", at("b.mp4"), NULL), 1);
        CHECK_CONTAINS(out, "model.yaml");
        CHECK_CONTAINS(out, cases[i].says);
    }
    /* linear 0.1 .. 0.9 over 1000 steps: no signal is left at the end */
    {
        char *m =
            bundle_copy("betas-nosignal", "beta_start: 0.00085\n  beta_end: 0.012\n  beta_schedule: scaled_linear",
                        "beta_start: 0.1\n  beta_end: 0.9\n  beta_schedule: linear");
        CHECK_INT(render(out, sizeof out, "render", at("betas.yaml"), "--model", m, "-o", at("b.mp4"), NULL), 1);
        CHECK_CONTAINS(out, "leave no signal");
    }
}

/* check names the sampler `auto` is for the model it reads, as render
 * resolves it; without the model it can only say auto. */
static void test_check_auto_sampler(void)
{
    char out[8192], *m = bundle_copy("pndm", "scheduler: DDIMScheduler", "scheduler: PNDMScheduler");

    write_file(at("auto.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    CHECK_INT(sdm(out, sizeof out, "check", at("auto.yaml"), NULL), 0);
    CHECK_CONTAINS(out, "2 steps, ddim (auto: the model's DDIMScheduler)\n");
    CHECK_INT(sdm(out, sizeof out, "check", at("auto.yaml"), "--model", m, NULL), 0);
    CHECK_CONTAINS(out, "2 steps, pndm (auto: the model's PNDMScheduler)\n");
    CHECK_INT(sdm(out, sizeof out, "check", at("auto.yaml"), "--no-model", NULL), 0);
    CHECK_CONTAINS(out, "2 steps, auto\n");
    CHECK_INT(sdm(out, sizeof out, "check", at("auto.yaml"), "--model", m, "--sampler", "euler", NULL), 0);
    CHECK_CONTAINS(out, "2 steps, euler\n");
}

static void test_messages(void)
{
    char out[8192];
    static char big[2 << 20];

    write_file(at("msg.yaml"), SMALL "frames: 2\nkeyframes: [a, b]\n");
    /* a frame number past 2^64 is reported as written */
    CHECK_INT(sdm(out, sizeof out, "check", "-q", at("msg.yaml"), "--frames", "18446744073709551617", NULL), 2);
    CHECK_CONTAINS(out, "frame 18446744073709551617 is out of range");
    CHECK_INT(render(out, sizeof out, "render", at("msg.yaml"), "--frames", "18446744073709551617", NULL), 2);
    CHECK_CONTAINS(out, "frame 18446744073709551617 is out of range");

    /* render's errors carry the prefix check's have */
    write_file(at("bad.yaml"), "steps: 10\nguidence: 7\nkeyframes:\n  - a city\n");
    CHECK_INT(render(out, sizeof out, "render", at("bad.yaml"), NULL), 2);
    CHECK(!strncmp(out, "sdmorph: ", 9));

    /* tokenize: stdin has a limit, and a NUL byte is refused, not a cut */
    {
        char *argv[] = { "sdmorph", "tokenize", "-", NULL };
        memset(big, 'a', sizeof big);
        for (size_t i = 5; i < sizeof big; i += 6)
            big[i] = ' ';
        CHECK_INT(run_input(argv, big, sizeof big, out, sizeof out, NULL), 2);
        CHECK_CONTAINS(out, "more than 1 MiB");
        CHECK_INT(run_input(argv, "a city\0 street", 14, out, sizeof out, NULL), 2);
        CHECK_CONTAINS(out, "NUL byte");
        CHECK_INT(run_input(argv, "a city street", 13, out, sizeof out, NULL), 0);
    }
}

/* Ctrl-C before the first frame: exit 130, as README says, nothing written. */
static void test_interrupt_early(void)
{
    char text[1024], *recipe = at("slow.yaml"), *log = at("slow.log"), *msg;
    pid_t pid;

    mkdir(at("slow"), 0755);
    snprintf(text, sizeof text, "width: 512\nheight: 512\nsteps: 999\nframes: 8\noutput: %s\nkeyframes: [a, b]\n",
             at("slow/s.mp4"));
    write_file(recipe, text);
    {
        char *argv[] = { "sdmorph", "render", recipe, "--device", "cpu", "--batch", "4", NULL };
        pid = start_logged(argv, log);
    }
    /* once it catches SIGINT, long before a frame */
    CHECK(wait_catches(pid, SIGINT, 300));
    CHECK_INT(stop_with(pid, SIGINT), 130);
    msg = slurp_file(log, NULL);
    CHECK_CONTAINS(msg, "interrupted before the first frame: nothing written");
    free(msg);
    CHECK_INT(count_entries(at("slow"), "s."), 0);
    CHECK_INT(count_entries(at("slow"), ".tmp-"), 0);
}

int main(void)
{
    if (cli_test_setup(model, tmp))
        return test_report();
    test_outputs_never_inputs();
    test_frames_keep_full_render();
    test_disk_full_before_sidecar();
    test_one_file_twice();
    test_frames_names_distinct();
    test_commit_rolls_back();
    test_sighup();
    test_stale_temps();
    test_sidecar_each_folder();
    test_long_paths();
    test_bad_betas();
    test_check_auto_sampler();
    test_messages();
    test_interrupt_early();
    return test_report();
}
