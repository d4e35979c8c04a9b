/* Shards and join: `render --shard I/N` for every I, then `join`, give the
 * outputs of one render byte for byte (raw frames, MP4, GIF, contact sheet;
 * the sidecar but for its "render" record of time and device), for a pingpong loop with holds and for a walk; a segment
 * missing, given twice or of another recipe makes join fail naming the
 * frames; --shard's spec and `auto` from Slurm's and Kubernetes' variables;
 * the Slurm scripts. */
#include <json-c/json.h>
#include <limits.h>

#include "cli_run.h"
#include "plan.h"
#include "recipe.h"
#include "shard.h"
#include "test.h"

static char dir[] = "/tmp/sdm-shard-XXXXXX";
static char model[PATH_MAX];
static char out[1 << 16];

static int sdm(char *const argv[])
{
    int rc = run(argv, out, sizeof out, NULL);
    if (rc)
        fprintf(stderr, "[sdmorph %s exit %d] %s\n", argv[1], rc, out);
    return rc;
}

static int same_file(const char *a, const char *b)
{
    long na, nb;
    char *x = slurp_file(a, &na), *y = slurp_file(b, &nb);
    int same = x && y && na == nb && na > 0 && memcmp(x, y, (size_t)na) == 0;

    if (!same)
        fprintf(stderr, "%s and %s differ (%ld, %ld bytes)\n", a, b, na, nb);
    free(x);
    free(y);
    return same;
}

/* Whether the file at path holds the bytes of text. */
static int file_has(const char *path, const char *text)
{
    long n;
    char *x = slurp_file(path, &n);
    int has = x && memmem(x, (size_t)n, text, strlen(text)) != NULL;

    if (!has)
        fprintf(stderr, "%s does not hold '%s'\n", path, text);
    free(x);
    return has;
}

/* Sidecars a and b equal but for what each run's own: its times, devices
 * and batch, which the join's cannot share with a single render's; the
 * rest of "render" (model, dtypes, size, steps, sampler) they share. */
static int same_sidecar(const char *a, const char *b)
{
    static const char *const own[] = { "device", "batch", "load_seconds", "seconds" };
    json_object *x = json_object_from_file(a), *y = json_object_from_file(b), *rx = NULL, *ry = NULL;
    int same = x && y && json_object_object_get_ex(x, "render", &rx) && json_object_object_get_ex(y, "render", &ry);

    for (int i = 0; same && i < 4; i++) {
        same = json_object_object_get_ex(rx, own[i], NULL) && json_object_object_get_ex(ry, own[i], NULL);
        json_object_object_del(rx, own[i]);
        json_object_object_del(ry, own[i]);
    }
    if (same)
        same = !strcmp(json_object_to_json_string(x), json_object_to_json_string(y));
    if (!same)
        fprintf(stderr, "sidecars %s and %s differ\n", a, b);
    json_object_put(x);
    json_object_put(y);
    return same;
}

static void write_recipe(const char *path, const char *name, const char *body)
{
    char text[4096];

    snprintf(text, sizeof text,
             "width: 64\nheight: 64\nsteps: 6\nseed: 7\nfps: 12\nguidance: 1\n"
             "output: [%s/%s.mp4, %s/%s.gif]\ncontact_sheet: %s/%s.png\n%s",
             dir, name, dir, name, dir, name, body);
    write_file(path, text);
}

/* Renders `recipe` whole into single.*, then as n shards joined; every output equal. */
static void shards_equal_single(const char *recipe, const char *name, int n)
{
    static const char *const exts[] = { "mp4", "gif", "png", "json" };
    char single[PATH_MAX], joined[PATH_MAX], a[PATH_MAX], b[PATH_MAX], spec[16], png_single[PATH_MAX],
        png_joined[PATH_MAX];
    char *argv[64];
    int k = 0;

    snprintf(single, sizeof single, "%s/%s.single.rgb", dir, name);
    snprintf(joined, sizeof joined, "%s/%s.joined.rgb", dir, name);
    snprintf(png_single, sizeof png_single, "%s/%s.single.png", dir, name); /* stills: one PNG a frame */
    snprintf(png_joined, sizeof png_joined, "%s/%s.joined.png", dir, name);
    char *r1[] = { "sdmorph", "render", (char *)recipe, "--model", model, "-q", NULL };
    CHECK_INT(sdm(r1), 0);
    for (int i = 0; i < 4; i++) { /* keep the single render's outputs apart */
        snprintf(a, sizeof a, "%s/%s.%s", dir, name, exts[i]);
        snprintf(b, sizeof b, "%s/single-%s.%s", dir, name, exts[i]);
        CHECK_INT(rename(a, b), 0);
    }
    char *r2[] = { "sdmorph", "render", (char *)recipe, "--model", model, "-q", "-o", single, "-o", png_single, NULL };
    CHECK_INT(sdm(r2), 0);
    argv[k++] = "sdmorph";
    argv[k++] = "join";
    argv[k++] = (char *)recipe;
    for (int i = 1; i <= n; i++) {
        snprintf(spec, sizeof spec, "%d/%d", i, n);
        char *r3[] = { "sdmorph", "render", (char *)recipe, "--model", model, "-q", "--shard", spec, NULL };
        CHECK_INT(sdm(r3), 0);
        snprintf(a, sizeof a, "%s/%s.shard-%d-of-%d.json", dir, name, i, n);
        CHECK(file_exists(a));
        argv[k++] = strdup(a);
    }
    argv[k] = NULL;
    CHECK_INT(sdm(argv), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s.%s", dir, name, exts[i]);
        snprintf(b, sizeof b, "%s/single-%s.%s", dir, name, exts[i]);
        CHECK(i == 3 ? same_sidecar(a, b) : same_file(a, b));
    }
    argv[k++] = "-o";
    argv[k++] = joined;
    argv[k++] = "-o";
    argv[k++] = png_joined;
    argv[k] = NULL;
    CHECK_INT(sdm(argv), 0);
    CHECK(same_file(single, joined));
    for (int i = 0; i < 3; i++) { /* the join writes stills as the render does */
        snprintf(a, sizeof a, "%s/%s.single-%d.png", dir, name, i);
        snprintf(b, sizeof b, "%s/%s.joined-%d.png", dir, name, i);
        CHECK(same_file(a, b));
    }
    for (int i = 3; i < 3 + n; i++)
        free(argv[i]);
}

/* Engines on threads (--devices cpu,cpu) give the files one does, byte for
 * byte, every time and whatever the heap held before; say what they wrote
 * as one does; leave no scratch file. */
static void test_devices(void)
{
    char recipe[PATH_MAX], a[PATH_MAX], b[PATH_MAX], sa[PATH_MAX], sb[PATH_MAX], ja[PATH_MAX], jb[PATH_MAX];
    int before;

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", dir);
    snprintf(a, sizeof a, "%s/one.mp4", dir);
    snprintf(b, sizeof b, "%s/two.mp4", dir);
    snprintf(sa, sizeof sa, "%s/loop.single.rgb", dir);
    snprintf(sb, sizeof sb, "%s/two.rgb", dir);
    snprintf(ja, sizeof ja, "%s/one.json", dir);
    snprintf(jb, sizeof jb, "%s/two.json", dir);
    char *one[] = { "sdmorph", "render", recipe, "--model", model, "-q", "-o", a, NULL };
    CHECK_INT(sdm(one), 0);
    before = count_entries(dir, "");
    for (int i = 0; i < 3; i++) { /* the MP4 once differed now and then: x264 read memory it never wrote */
        char *two[] = { "sdmorph", "render", recipe, "--model", model, "--devices", i == 1 ? "cpu,cpu,cpu" : "cpu,cpu",
                        "-o",      b,        "-o",   sb,        NULL };
        CHECK_INT(sdm(two), 0);
        CHECK(same_file(sa, sb));
        CHECK(same_file(a, b));
        CHECK(same_sidecar(ja, jb));
        CHECK_CONTAINS(out, "wrote ");
        CHECK_CONTAINS(out, "two.mp4, ");
        CHECK_CONTAINS(out, "two.json");
        CHECK_CONTAINS(out, "frames rendered per device: cpu (device 1) ");
    }
    CHECK_INT(count_entries(dir, ""), before + 3); /* two.mp4, two.rgb, their sidecar */
    CHECK_INT(count_entries(dir, "sdmorph-devices"), 0);
    /* --json lists the files as for one device */
    char *json[] = { "sdmorph", "render",    recipe,    "--model", model, "-q",
                     "--json",  "--devices", "cpu,cpu", "-o",      b,     NULL };
    CHECK_INT(sdm(json), 0);
    CHECK_CONTAINS(out, "\"files\":");
    CHECK_CONTAINS(out, "two.mp4\"");
    CHECK_CONTAINS(out, "two.json\"");
    CHECK_CONTAINS(out, "\"frames_shown\":26");
    /* the same frames encode to the same MP4 whatever the heap held before:
     * 64 wide is 4 macroblocks a row, where x264's AVX-512 MB-tree code read
     * past the row (encoders/mp4.c); each of these once gave other bytes */
    const char *perturb[] = { "1", "85", "170" };
    for (int i = 0; i < 3; i++) {
        setenv("MALLOC_PERTURB_", perturb[i], 1);
        CHECK_INT(sdm(one), 0);
        unsetenv("MALLOC_PERTURB_");
        CHECK(same_file(a, b));
    }
    CHECK(file_has(a, "mbtree=1")); /* with MB-tree, as x264's options in the stream say */
    char *bad[] = { "sdmorph", "render", recipe, "--model", model, "--devices", "cpu,gpu", NULL };
    CHECK_INT(sdm(bad), 2);
    CHECK_CONTAINS(out, "'gpu' is not a device");
    char *both[] = { "sdmorph", "render", recipe, "--model", model, "--devices", "cpu,cpu", "--shard", "1/2", NULL };
    CHECK_INT(sdm(both), 2);
}

static void test_shards_equal_single(void)
{
    char recipe[PATH_MAX];

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", dir);
    write_recipe(recipe, "loop",
                 "loop: pingpong\nframes: 5\nkeyframes:\n  - a city street in the rain\n"
                 "  - prompt: a forest path in the mist\n    hold: 3\n  - a quiet harbour at dawn\n");
    shards_equal_single(recipe, "loop", 3);
    snprintf(recipe, sizeof recipe, "%s/walk.yaml", dir);
    write_recipe(recipe, "walk", "walk:\n  prompt: a lighthouse\n  seed: 3\n  frames: 11\n  sigma: 0.02\n");
    shards_equal_single(recipe, "walk", 3); /* 3, 4, 4 renders: not the batches of one render */
    /* retimed: each shard probes and keeps the curves in its manifest; join places the frames by them */
    snprintf(recipe, sizeof recipe, "%s/even.yaml", dir);
    write_recipe(recipe, "even",
                 "retime: even\nframes: 7\nkeyframes:\n  - a city street in the rain\n"
                 "  - a forest path in the mist\n  - a quiet harbour at dawn\n");
    shards_equal_single(recipe, "even", 3);
}

/* Shards 1 and 3 of 3 alone, or 2 given twice: join names the renders and frames. */
static void test_join_refuses(void)
{
    char recipe[PATH_MAX], s[3][PATH_MAX], other[PATH_MAX], seg[PATH_MAX];

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", dir);
    for (int i = 0; i < 3; i++)
        snprintf(s[i], sizeof s[i], "%s/loop.shard-%d-of-3.json", dir, i + 1);
    char *missing[] = { "sdmorph", "join", recipe, s[0], s[2], NULL };
    CHECK_INT(sdm(missing), 2);
    CHECK_CONTAINS(out, "are in no segment");
    CHECK_CONTAINS(out, "output frames");
    char *twice[] = { "sdmorph", "join", recipe, s[0], s[1], s[1], s[2], NULL };
    CHECK_INT(sdm(twice), 2);
    CHECK_CONTAINS(out, "more than one segment");
    /* a segment of a recipe edited since */
    snprintf(other, sizeof other, "%s/loop2.yaml", dir);
    write_recipe(other, "loop",
                 "loop: pingpong\nframes: 5\nkeyframes:\n  - a city street in the rain\n"
                 "  - prompt: a forest path in the mist\n    hold: 4\n  - a quiet harbour at dawn\n");
    char *edited[] = { "sdmorph", "join", other, s[0], s[1], s[2], NULL };
    CHECK_INT(sdm(edited), 2);
    CHECK_CONTAINS(out, "another recipe");
    /* frames cut short */
    snprintf(seg, sizeof seg, "%s/loop.shard-2-of-3.rgb", dir);
    CHECK_INT(truncate(seg, 100), 0);
    char *cut[] = { "sdmorph", "join", recipe, s[0], s[1], s[2], NULL };
    CHECK_INT(sdm(cut), 2);
    CHECK_CONTAINS(out, "holds 100 bytes");
    /* more shards than renders, and --shard with --frames: check refuses as render would */
    char *many[] = { "sdmorph", "check", recipe, "--no-model", "--shard", "99/99", NULL };
    CHECK_INT(sdm(many), 2);
    CHECK_CONTAINS(out, "distinct renders");
    char *frames[] = { "sdmorph", "check", recipe, "--no-model", "--shard", "1/2", "--frames", "0", NULL };
    CHECK_INT(sdm(frames), 2);
    char *mp4[] = { "sdmorph", "check", recipe, "--no-model", "--shard", "1/2", "-o", "x.mp4", NULL };
    CHECK_INT(sdm(mp4), 2);
    CHECK_CONTAINS(out, "NAME.rgb");
}

static void test_shard_spec(void)
{
    sdm_shard s;
    sdm_error err = { 0 };
    int first, end, next = 0;

    CHECK_INT(sdm_shard_parse("2/3", &s, &err), 0);
    CHECK_INT(s.index, 2);
    CHECK_INT(s.count, 3);
    CHECK(sdm_shard_parse("0/3", &s, &err) < 0);
    CHECK(sdm_shard_parse("4/3", &s, &err) < 0);
    CHECK(sdm_shard_parse("1/", &s, &err) < 0);
    CHECK(sdm_shard_parse("x", &s, &err) < 0);
    CHECK(sdm_shard_parse("1/3x", &s, &err) < 0);
    /* a Slurm array 5-9:2 (tasks 5, 7, 9): task 9 is shard 3 of 3 */
    setenv("SLURM_ARRAY_TASK_ID", "9", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "5", 1);
    setenv("SLURM_ARRAY_TASK_STEP", "2", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
    CHECK_INT(sdm_shard_parse("auto", &s, &err), 0);
    CHECK_INT(s.index, 3);
    CHECK_INT(s.count, 3);
    setenv("SLURM_ARRAY_TASK_ID", "8", 1);
    memset(&err, 0, sizeof err);
    CHECK(sdm_shard_parse("auto", &s, &err) < 0);
    CHECK_CONTAINS(err.msg, "SLURM_ARRAY_TASK_ID 8");
    unsetenv("SLURM_ARRAY_TASK_ID");
    setenv("JOB_COMPLETION_INDEX", "0", 1);
    setenv("JOB_COMPLETION_COUNT", "4", 1);
    CHECK_INT(sdm_shard_parse("auto", &s, &err), 0);
    CHECK_INT(s.index, 1);
    CHECK_INT(s.count, 4);
    unsetenv("JOB_COMPLETION_COUNT");
    memset(&err, 0, sizeof err);
    CHECK(sdm_shard_parse("auto", &s, &err) < 0);
    CHECK_CONTAINS(err.msg, "JOB_COMPLETION_COUNT");
    unsetenv("JOB_COMPLETION_INDEX");
    CHECK(sdm_shard_parse("auto", &s, &err) < 0);
    /* 7 shards of 25 renders: contiguous, every render once, sizes 3 or 4 */
    for (s.index = 1, s.count = 7; s.index <= 7; s.index++) {
        sdm_shard_range(&s, 25, &first, &end);
        CHECK_INT(first, next);
        CHECK(end - first == 3 || end - first == 4);
        next = end;
    }
    CHECK_INT(next, 25);
}

/* The plan kept to renders [first, end): each once, at its first showing. */
static void test_plan_keep_renders(void)
{
    sdm_recipe *r = NULL;
    sdm_plan p;
    sdm_error err = { 0 };
    char recipe[PATH_MAX];

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", dir);
    CHECK_INT(sdm_recipe_load(recipe, &r, &err), 0);
    if (!r)
        return;
    CHECK_INT(sdm_plan_make(r, &p, &err), 0);
    int n = p.n_renders, shown = p.n_sequence;
    CHECK(shown > n); /* pingpong and a hold show renders again */
    CHECK_INT(sdm_plan_keep_renders(&p, 2, 5, &err), 0);
    CHECK_INT(p.n_renders, 3);
    CHECK_INT(p.n_sequence, 3);
    CHECK_INT(p.sequence[2], 2);
    CHECK_INT(p.frame_index[0], 2); /* render 2 is first shown as frame 2 */
    CHECK(sdm_plan_keep_renders(&p, 0, 4, &err) < 0);
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

static void test_slurm_scripts(void)
{
    char recipe[PATH_MAX], path[PATH_MAX];
    char *text;

    snprintf(recipe, sizeof recipe, "%s/loop.yaml", dir);
    char *argv[] = { "sdmorph", "slurm",       recipe,    "--shards",
                     "3",       "--partition", "gpu",     "--gpus-per-task",
                     "1",       "--time",      "1:00:00", "--sbatch=--account=art",
                     "--model", model,         NULL };
    CHECK_INT(sdm(argv), 0);
    snprintf(path, sizeof path, "%s/loop.array.sbatch", dir);
    text = slurp_file(path, NULL);
    CHECK_CONTAINS(text, "#SBATCH --array=1-3\n");
    CHECK_CONTAINS(text, "#SBATCH --partition=gpu\n");
    CHECK_CONTAINS(text, "#SBATCH --gpus-per-task=1\n");
    CHECK_CONTAINS(text, "#SBATCH --time=1:00:00\n");
    CHECK_CONTAINS(text, "#SBATCH --account=art\n");
    CHECK_CONTAINS(text, "--shard auto");
    free(text);
    snprintf(path, sizeof path, "%s/loop.join.sbatch", dir);
    text = slurp_file(path, NULL);
    CHECK_CONTAINS(text, " join ");
    CHECK_CONTAINS(text, "loop.shard-3-of-3.json'\n");
    CHECK(!strstr(text, "--gpus-per-task"));
    free(text);
    char *many[] = { "sdmorph", "slurm", recipe, "--shards", "500", "--model", model, NULL };
    CHECK_INT(sdm(many), 2);
    CHECK_CONTAINS(out, "distinct renders");
}

int main(void)
{
    char cwd[2048];

    if (!mkdtemp(dir) || !getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "no temporary folder\n");
        return 1;
    }
    snprintf(model, sizeof model, "%s/%s/models/analytic", cwd, test_build_dir());
    if (!file_exists(model)) {
        SKIP("no analytic bundle (run make)");
        return test_report();
    }
    test_shard_spec();
    test_shards_equal_single();
    test_plan_keep_renders();
    test_devices();
    test_join_refuses();
    test_slurm_scripts();
    {
        char cmd[sizeof dir + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd))
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_report();
}
