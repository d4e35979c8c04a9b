/* retime: even. The placement arithmetic on hand-made curves, the curves'
 * sidecar form, and the must-shows on the analytic bundle with a step
 * (analytic.py --step 100, build/models/analytic-step): a 24-frame
 * transition across the step is uneven (largest/median >= 4) as planned
 * and even (<= 1.5) retimed; keyframes are bit-identical either way; the
 * frames crowd where the step is (its weight computed exactly by the
 * bundle's own step_position); pingpong keeps frame k = frame N-k; seed
 * morphs move the seed weight with the prompt weight; `check` prints the
 * retimed weights once a probe ran and `--frames K` re-renders frame K at
 * its retimed weight; the probe's cost is printed. */
#include <json-c/json.h>
#include <limits.h>

#include "cli_run.h"
#include "frame_distance.h"
#include "retime.h"
#include "test.h"
#include "torch_api.h"

static char tmp[] = "/tmp/sdm_retime_XXXXXX";
static char step_model[PATH_MAX];
#define SIDE 256 /* the bundle's frames */
#define FRAME_BYTES ((size_t)SIDE * SIDE * 3)
#define A_PROMPT "a blue lake" /* step_position -0.61 */
#define B_PROMPT "a red lighthouse" /* step_position +0.78: the step is inside the morph */

/* --- the arithmetic -------------------------------------------------------- */

/* The probe's steps: a quarter of the render's, rounded up, at least
 * min(steps, 4) (retime.h says why a quarter). */
static void test_probe_steps(void)
{
    CHECK_INT(sdm_retime_probe_steps(30), 8);
    CHECK_INT(sdm_retime_probe_steps(50), 13);
    CHECK_INT(sdm_retime_probe_steps(25), 7);
    CHECK_INT(sdm_retime_probe_steps(12), 4);
    CHECK_INT(sdm_retime_probe_steps(3), 3);
    CHECK_INT(sdm_retime_probe_steps(1), 1);
}

static void test_weights_of(void)
{
    double t[] = { 0, 0.5, 1 }, d[] = { 0, 3, 4 }, w[4], flat_d[] = { 0, 0, 0 };
    sdm_retime_curve c = { 0, 1, 1, 3, t, d };

    /* 3/4 of the change in the first half: frames at D = 1, 2, 3 */
    sdm_retime_weights_of(&c, SDM_EASE_LINEAR, 4, w);
    CHECK(w[0] == 0);
    CHECK_NEAR(w[1], 1.0 / 6, 1e-15);
    CHECK_NEAR(w[2], 2.0 / 6, 1e-15);
    CHECK_NEAR(w[3], 0.5, 1e-15);
    /* smoothstep on the distance: D = 4 * ease(j/4) */
    sdm_retime_weights_of(&c, SDM_EASE_SMOOTHSTEP, 4, w);
    CHECK_NEAR(w[1], 4 * sdm_ease_apply(SDM_EASE_SMOOTHSTEP, 0.25) / 6, 1e-15);
    CHECK_NEAR(w[3], 0.5 + (4 * sdm_ease_apply(SDM_EASE_SMOOTHSTEP, 0.75) - 3) * 0.5, 1e-15);
    /* nothing changes: the eased weights */
    c.d = flat_d;
    sdm_retime_weights_of(&c, SDM_EASE_COSINE, 4, w);
    for (int j = 0; j < 4; j++)
        CHECK(w[j] == sdm_ease_apply(SDM_EASE_COSINE, j / 4.0));
}

static int load_recipe(const char *text, sdm_recipe **r)
{
    sdm_error err = { 0 };
    int rc = sdm_recipe_load_string("t.yaml", text, strlen(text), r, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    return rc;
}

/* The sidecar's form: what sdm_retime_json writes, sdm_retime_load takes
 * back for the same key, and nothing malformed. */
static void test_sidecar_curves(void)
{
    const char *text = "keyframes:\n  - prompt: a\n    retime: even\n    frames: 4\n  - b\n  - c\n";
    sdm_recipe *r = NULL;
    sdm_retime rt, back;
    sdm_error err = { 0 };
    char path[PATH_MAX + 32], *js, doc[4096];
    double t[] = { 0, 0.25, 1 }, d[] = { 0, 1, 2 };

    if (load_recipe(text, &r))
        return;
    CHECK_INT(sdm_retime_wanted(r), 1);
    CHECK(sdm_retime_init(&rt, r, "model", 64, 64, &err) == 0);
    CHECK(sdm_retime_init(&back, r, "model", 64, 64, &err) == 0);
    CHECK_INT(sdm_retime_missing(&rt), 1);
    rt.curves[0].n = 3;
    rt.curves[0].t = malloc(sizeof t);
    rt.curves[0].d = malloc(sizeof d);
    memcpy(rt.curves[0].t, t, sizeof t);
    memcpy(rt.curves[0].d, d, sizeof d);
    CHECK_INT(sdm_retime_missing(&rt), 0);
    js = sdm_retime_json(&rt);
    snprintf(path, sizeof path, "%s/curves.json", tmp);
    snprintf(doc, sizeof doc, "{\"retime\": %s}", js ? js : "null");
    write_file(path, doc);
    CHECK_INT(sdm_retime_load(&back, path), 1);
    CHECK_INT(back.curves[0].n, 3);
    CHECK(back.curves[0].n == 3 && back.curves[0].t[1] == 0.25 && back.curves[0].d[2] == 2);
    CHECK(sdm_retime_place(&back, r, &err) == 0);
    CHECK(back.weights[0] && back.weights[0][0] == 0 && back.weights[0][2] == 0.25 &&
          fabs(back.weights[0][3] - 0.625) < 1e-15);
    CHECK(back.weights[1] == NULL);
    sdm_retime_free(&back);
    /* another model: another key, nothing taken */
    CHECK(sdm_retime_init(&back, r, "other model", 64, 64, &err) == 0);
    CHECK_INT(sdm_retime_load(&back, path), 0);
    sdm_retime_free(&back);
    /* malformed curves are not taken: t not from 0, falling d, too short */
    {
        const char *bad[] = { "[0.1, 0.5, 1], \"d\": [0, 1, 2]", "[0, 0.5, 1], \"d\": [0, 2, 1]", "[0], \"d\": [0]",
                              "[0, 0.5, 0.4, 1], \"d\": [0, 1, 2, 3]" };
        char key[32];
        snprintf(key, sizeof key, "%016llx", (unsigned long long)rt.curves[0].key);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            snprintf(doc, sizeof doc,
                     "{\"retime\": {\"transitions\": [{\"from\": 0, \"to\": 1, \"key\": \"%s\", "
                     "\"t\": %s}]}}",
                     key, bad[i]);
            write_file(path, doc);
            CHECK(sdm_retime_init(&back, r, "model", 64, 64, &err) == 0);
            CHECK_INT(sdm_retime_load(&back, path), 0);
            sdm_retime_free(&back);
        }
    }
    free(js);
    sdm_retime_free(&rt);
    sdm_recipe_free(&r);
}

/* --- renders on the step bundle ------------------------------------------- */

/* A recipe across the step, rendered to NAME.rgb and NAME.mp4 on the CPU
 * (or with `options`: up to 4 of render's options, NULL-ended); the output
 * of sdmorph in out. 0 on success. */
static int render_step_with(const char *name, const char *extra, const char *retime, char *const *options, char *out,
                            size_t outlen)
{
    char recipe[PATH_MAX + 64], text[3 * PATH_MAX];
    char *argv[12] = { "sdmorph", "render", recipe, "-q", "--device", "cpu" };

    for (int i = 0; options && options[i] && i < 5; i++)
        argv[4 + i] = options[i];

    snprintf(recipe, sizeof recipe, "%s/%s.yaml", tmp, name);
    snprintf(text, sizeof text,
             "model: %s\nsteps: 12\nguidance: 1\nseed: 7\nfps: 12\nretime: %s\n%s"
             "output: [%s/%s.rgb, %s/%s.mp4]\nkeyframes:\n  - prompt: " A_PROMPT
             "\n    frames: 24\n"
             "  - prompt: " B_PROMPT "\n",
             step_model, retime, extra, tmp, name, tmp, name);
    write_file(recipe, text);
    return run(argv, out, outlen, NULL);
}

static int render_step(const char *name, const char *extra, const char *retime, char *out, size_t outlen)
{
    return render_step_with(name, extra, retime, NULL, out, outlen);
}

static json_object *sidecar(const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s.json", tmp, name);
    return json_object_from_file(path);
}

static double get_double(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    if (!json_object_object_get_ex(o, a, &x) || (b && !json_object_object_get_ex(x, b, &y)))
        return NAN;
    return json_object_get_double(b ? y : x);
}

/* The pace of transition 0->1 in a sidecar: largest / median. */
static double unevenness(json_object *side)
{
    json_object *pace, *list;
    if (!json_object_object_get_ex(side, "pace", &pace) || !json_object_object_get_ex(pace, "transitions", &list) ||
        json_object_array_length(list) < 1)
        return NAN;
    json_object *t = json_object_array_get_idx(list, 0);
    return get_double(t, "largest", NULL) / get_double(t, "median", NULL);
}

static double frame_t(json_object *side, int i, const char *key)
{
    json_object *frames;
    if (!json_object_object_get_ex(side, "frames", &frames) || i >= (int)json_object_array_length(frames))
        return NAN;
    return get_double(json_object_array_get_idx(frames, i), key, NULL);
}

static uint8_t *raw_frames(const char *name, long *n)
{
    char path[PATH_MAX + 64];

    snprintf(path, sizeof path, "%s/%s.rgb", tmp, name);
    return slurp_frames(path, FRAME_BYTES, n);
}

/* The step's weight along A -> B, from the bundle's own step_position
 * (s is linear in the weight for lerp): s_a / (s_a - s_b). */
static double step_weight(void)
{
    char cmd[2 * PATH_MAX + 1024], line[128] = "";
    const char *py = getenv("SDM_PYTHON") ? getenv("SDM_PYTHON") : "/usr/bin/python3";
    FILE *p;

    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys,json,torch; sys.path.insert(0,'pipeline/export'); import clip_vocab; "
             "d='%s'; v=json.load(open(d+'/vocab.json')); "
             "m=[tuple(l.split()) for l in open(d+'/merges.txt').read().splitlines()[1:] if l]; "
             "te=torch.jit.load(d+'/text_encoder.pt'); u=torch.jit.load(d+'/unet.pt'); "
             "s=[u.step_position(te.from_ids(torch.tensor([clip_vocab.encode(p,v,m)]))).item() for p in ('%s','%s')]; "
             "print(repr(s[0]/(s[0]-s[1])))\" 2>/dev/null",
             py, step_model, A_PROMPT, B_PROMPT);
    p = popen(cmd, "r");
    if (!p)
        return NAN;
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    pclose(p);
    return line[0] ? atof(line) : NAN;
}

static void test_even_pace(void)
{
    char out[16384];
    json_object *none = NULL, *even = NULL;
    uint8_t *fn = NULL, *fe = NULL;
    long nn, ne;
    double ts = step_weight(), un, ue, probe = NAN;
    int near_none = 0, near_even = 0, widest = -1;
    const char *at;

    CHECK_INT(render_step("none", "", "none", out, sizeof out), 0);
    CHECK_INT(render_step("even", "", "even", out, sizeof out), 0);
    at = strstr(out, "retime probe: ");
    if (at && (at = strstr(at, " s, ")))
        probe = atof(at + 4);
    printf("retime probe cost (CPU, analytic-step 256x256, 24 frames, 12 steps): %s",
           strstr(out, "retime probe") ? strstr(out, "retime probe") : "(none)\n");
    CHECK(probe >= 0 && probe <= 35); /* percent of the render's time */
    none = sidecar("none");
    even = sidecar("even");
    un = unevenness(none);
    ue = unevenness(even);
    printf("largest/median adjacent distance of the 24-frame transition: %.2f retime none, %.2f retime even\n", un, ue);
    CHECK(un >= 4);
    CHECK(ue <= 1.5);
    fn = raw_frames("none", &nn);
    fe = raw_frames("even", &ne);
    CHECK_INT(nn, 25);
    CHECK_INT(ne, 25);
    if (nn == 25 && ne == 25) {
        /* the keyframes, bit for bit */
        CHECK(memcmp(fn, fe, FRAME_BYTES) == 0);
        CHECK(memcmp(fn + 24 * FRAME_BYTES, fe + 24 * FRAME_BYTES, FRAME_BYTES) == 0);
        CHECK(memcmp(fn + 12 * FRAME_BYTES, fe + 12 * FRAME_BYTES, FRAME_BYTES) != 0);
    }
    /* the exact step: the planned frames jump across it, the retimed ones crowd around it */
    if (isnan(ts))
        printf("the step's weight: no answer from %s with torch (set SDM_PYTHON)\n",
               getenv("SDM_PYTHON") ? getenv("SDM_PYTHON") : "/usr/bin/python3");
    CHECK(ts > 0.3 && ts < 0.6);
    for (int j = 0; j < 24; j++) {
        double a = frame_t(none, j, "t"), b = j == 23 ? 1 : frame_t(none, j + 1, "t");
        widest = a <= ts && ts <= b ? j : widest;
    }
    CHECK_INT(widest, (int)floor(ts * 24));
    for (int j = 1; j < 24; j++) {
        near_none += fabs(frame_t(none, j, "t") - ts) < 0.03;
        near_even += fabs(frame_t(even, j, "t") - ts) < 0.03;
    }
    printf("frames within 0.03 of the step at t = %.6f: %d planned, %d retimed\n", ts, near_none, near_even);
    CHECK(near_none <= 2);
    CHECK(near_even >= 6);
    json_object_put(none);
    json_object_put(even);
    free(fn);
    free(fe);
}

/* On CUDA with graphs on, the probe's batches (rounds of 13 and 12 frames
 * at --batch 16) replay a loop captured for the probe's schedule, padded
 * (render.c, capture_loop): the frames land at the weights the probe finds
 * step by step, and the render is the same. */
static void test_probe_captured(void)
{
    char out[16384];
    char *graphs[] = { "--device", "cuda", "--batch", "16", "--timings", NULL };
    char *steps[] = { "--device", "cuda", "--batch", "16", "--no-cuda-graphs", NULL };
    json_object *a = NULL, *b = NULL;
    double worst = 0;

    if (sdm_cuda_device_count() == 0 || !sdm_graphs_available()) {
        SKIP("no CUDA device with graphs here: the probe on the captured loop is checked where there is one");
        return;
    }
    CHECK_INT(render_step_with("cuda-graphs", "", "even", graphs, out, sizeof out), 0);
    CHECK(strstr(out, "retime probe: 25 frames") != NULL);
    /* --timings on CUDA also says the device memory in use: some, at most all */
    {
        const char *m = strstr(out, "device memory (--timings): ");
        double used = -1, total = -1;
        CHECK(m && sscanf(m, "device memory (--timings): %lf GiB in use at most, of %lf GiB", &used, &total) == 2);
        CHECK(used > 0 && used <= total);
    }
    CHECK_INT(render_step_with("cuda-steps", "", "even", steps, out, sizeof out), 0);
    a = sidecar("cuda-graphs");
    b = sidecar("cuda-steps");
    for (int j = 0; j < 25; j++) {
        double d = fabs(frame_t(a, j, "t") - frame_t(b, j, "t"));
        worst = d > worst || isnan(d) ? d : worst;
    }
    printf("retimed weights, probe on the captured loop vs step by step (CUDA): largest difference %.3g\n", worst);
    CHECK(worst <= 1e-4);
    json_object_put(a);
    json_object_put(b);
}

/* check prints the retimed weights; --frames K re-renders K at its weight. */
static void test_check_and_frames(void)
{
    char recipe[PATH_MAX + 64], frame_out[PATH_MAX + 64], out[16384], want[32];
    char *check_argv[] = { "sdmorph", "check", recipe, NULL };
    char *frames_argv[] = { "sdmorph",  "render", recipe, "--device", "cpu", "-q",
                            "--frames", "10",     "-o",   frame_out,  NULL };
    json_object *even = sidecar("even");
    uint8_t *all = NULL, *one = NULL;
    long n, size;

    snprintf(recipe, sizeof recipe, "%s/even.yaml", tmp);
    snprintf(frame_out, sizeof frame_out, "%s/frame10.rgb", tmp);
    CHECK_INT(run(check_argv, out, sizeof out, NULL), 0);
    CHECK_CONTAINS(out, "placed by the probe kept in");
    snprintf(want, sizeof want, " 0->1        %.4f", frame_t(even, 10, "t"));
    CHECK_CONTAINS(out, want);
    CHECK(fabs(frame_t(even, 10, "t") - 10 / 24.0) > 0.01); /* really moved */
    CHECK_INT(run(frames_argv, out, sizeof out, NULL), 0);
    CHECK(strstr(out, "retime probe") == NULL); /* the kept curve, no probe */
    all = raw_frames("even", &n);
    one = (uint8_t *)slurp_file(frame_out, &size);
    CHECK_INT(size, (long)FRAME_BYTES);
    /* alone, frame 10 is a batch of one where the render had it in a batch
     * of 4: bit for bit with Debian's torch; libtorch 2.x's CPU kernels may
     * round differently by batch size (test_render allows 1/255 there too) */
    if (all && one && n == 25 && size == (long)FRAME_BYTES) {
        int worst = 0;
        for (long i = 0; i < (long)FRAME_BYTES; i++)
            worst = abs(all[10 * FRAME_BYTES + i] - one[i]) > worst ? abs(all[10 * FRAME_BYTES + i] - one[i]) : worst;
        printf("--frames 10 against the render's frame 10: max |diff| %d/255\n", worst);
        CHECK(worst <= 1);
    } else
        CHECK(0); /* a frame missing */
    /* another keyframe prompt: another key, the eased weights until probed */
    write_file(recipe, "retime: even\nkeyframes:\n  - prompt: " A_PROMPT "\n    frames: 24\n  - another prompt\n");
    CHECK_INT(run(check_argv, out, sizeof out, NULL), 0);
    CHECK_CONTAINS(out, "not probed yet");
    json_object_put(even);
    free(all);
    free(one);
}

/* pingpong stays a palindrome; a seed morph's seed weight is its weight. */
static void test_loops_and_seeds(void)
{
    char out[16384];
    json_object *side;
    uint8_t *f;
    long n;
    int seeds_follow = 1, same = 1;

    /* cycle: both ways across the step retimed; the seam an ordinary step */
    CHECK_INT(render_step("cycle", "loop: cycle\n", "even", out, sizeof out), 0);
    side = sidecar("cycle");
    {
        json_object *rt = NULL, *list = NULL, *pace = NULL, *seam = NULL;
        CHECK(json_object_object_get_ex(side, "retime", &rt) && json_object_object_get_ex(rt, "transitions", &list) &&
              json_object_array_length(list) == 2);
        CHECK(json_object_object_get_ex(side, "pace", &pace) && json_object_object_get_ex(pace, "seam", &seam));
        printf("cycle, retimed: largest/median %.2f (0->1), seam largest/median %.2f\n", unevenness(side),
               get_double(seam, "largest", NULL) / get_double(seam, "median", NULL));
        CHECK(unevenness(side) <= 1.5);
        CHECK(get_double(seam, "largest", NULL) / get_double(seam, "median", NULL) <= 1.5);
    }
    CHECK(fabs(frame_t(side, 24 + 10, "t") - 10 / 16.0) > 0.01); /* the way back (16 frames) moved too */
    json_object_put(side);

    CHECK_INT(render_step("pingpong", "loop: pingpong\n", "even", out, sizeof out), 0);
    f = raw_frames("pingpong", &n);
    CHECK_INT(n, 48);
    for (int k = 1; f && n == 48 && k < 24; k++)
        same &= memcmp(f + k * FRAME_BYTES, f + (48 - k) * FRAME_BYTES, FRAME_BYTES) == 0;
    CHECK(same);
    free(f);
    side = sidecar("pingpong");
    CHECK(unevenness(side) <= 1.5);
    json_object_put(side);

    {
        /* the second keyframe with its own seed: the seed morph moves with the weight */
        char recipe[PATH_MAX + 64], text[3 * PATH_MAX];
        char *argv[] = { "sdmorph", "render", recipe, "--device", "cpu", "-q", NULL };
        snprintf(recipe, sizeof recipe, "%s/seeds.yaml", tmp);
        snprintf(text, sizeof text,
                 "model: %s\nsteps: 12\nguidance: 1\nretime: even\noutput: %s/seeds.rgb\n"
                 "keyframes:\n  - prompt: " A_PROMPT "\n    seed: 7\n    frames: 24\n  - prompt: " B_PROMPT
                 "\n"
                 "    seed: 8\n",
                 step_model, tmp);
        write_file(recipe, text);
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    }
    side = sidecar("seeds");
    for (int j = 0; j < 25; j++)
        seeds_follow &= frame_t(side, j, "seed_t") == frame_t(side, j, "t");
    CHECK(seeds_follow);
    CHECK(fabs(frame_t(side, 10, "t") - 10 / 24.0) > 0.01);
    json_object_put(side);
}

int main(void)
{
    char path[PATH_MAX];

    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_probe_steps();
    test_weights_of();
    test_sidecar_curves();
    snprintf(path, sizeof path, "%s/models/analytic-step", test_build_dir());
    if (!file_exists(test_sdmorph()) || !realpath(path, step_model)) {
        SKIP("./sdmorph or build/models/analytic-step not built (make test builds them)");
    } else {
        test_even_pace();
        test_check_and_frames();
        test_loops_and_seeds();
        test_probe_captured();
    }
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    if (system(path))
        fprintf(stderr, "could not remove %s\n", tmp);
    return test_report();
}
