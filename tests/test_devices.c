/* --devices in process, on CPU engines (one thread each) of the analytic
 * bundle, with the UNet of each wrapped to make it slow or run out of
 * memory (render_hooks.h): the frames are those of one engine whatever the
 * devices do. A slower device renders fewer frames; one out of memory above
 * a frame per call halves its batch; one that fails mid-render drops out and
 * its frames go to the others; every device failing fails the render,
 * naming a device. */
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"
#include "devices.h"
#include "analytic.h"
#include "render.h"
#include "render_hooks.h"
#include "test.h"
#include "unet_faults.h"

static char model_dir[PATH_MAX];
static char dir[] = "/tmp/sdm-devices-XXXXXX";

static const char *loop_yaml =
    "width: 64\nheight: 64\nsteps: 6\nseed: 7\nfps: 12\nguidance: 1\n"
    "loop: pingpong\nframes: 5\nkeyframes:\n  - a city street in the rain\n"
    "  - prompt: a forest path in the mist\n    hold: 3\n  - a quiet harbour at dawn\n";

/* The largest difference of a pixel between two captures (256: they differ in count or size). */
static int worst_diff(const capture *a, const capture *b)
{
    size_t bytes = (size_t)a->width * a->height * 3;
    int worst = 0;

    if (a->n != b->n || a->n == 0 || a->width != b->width || a->height != b->height)
        return 256;
    for (int i = 0; i < a->n; i++)
        for (size_t k = 0; k < bytes; k++) {
            int d = abs((int)a->frames[i][k] - (int)b->frames[i][k]);
            worst = d > worst ? d : worst;
        }
    return worst;
}

/* A transition across the step bundle's sharp step, retimed: a probe first. */
static const char *retime_yaml =
    "width: 64\nheight: 64\nsteps: 8\nseed: 7\nfps: 12\nguidance: 1\n"
    "retime: even\nframes: 8\nkeyframes:\n  - a city street in the rain\n"
    "  - a forest path in the mist\n";

static int render_recipe_on(const char *yaml, const char *model, int n, int batch, unet_faults *units, capture *c,
                            sdm_render_stats *st, sdm_error *err);

/* The loop recipe on n CPU engines (n 0: sdm_render on one), batch frames
 * per call, its frames into c; units[i] wraps engine i's UNet. */
static int render_on(int n, int batch, unet_faults *units, capture *c, sdm_render_stats *st, sdm_error *err)
{
    return render_recipe_on(loop_yaml, model_dir, n, batch, units, c, st, err);
}

static int render_recipe_on(const char *yaml, const char *model, int n, int batch, unet_faults *units, capture *c,
                            sdm_render_stats *st, sdm_error *err)
{
    static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
    sdm_device devs[4] = { cpu, cpu, cpu, cpu };
    sdm_render_hooks hooks[4];
    const sdm_render_hooks *hp[4];
    sdm_render_params p = sdm_render_default_params();
    sdm_recipe *r = NULL;
    char out[PATH_MAX];
    const char *outs[1] = { out };
    int rc;

    memset(err, 0, sizeof *err);
    if (sdm_recipe_load_string("recipe.yaml", yaml, strlen(yaml), &r, err))
        return -1;
    snprintf(out, sizeof out, "%s/recipe-%d.mp4", dir, n);
    p.model_dir = model;
    p.device = cpu;
    p.batch = batch;
    p.outputs = outs;
    p.n_outputs = 1;
    p.write_outputs = n > 0;
    p.on_frame = capture_frame;
    p.user = c;
    for (int i = 0; i < n; i++) {
        hooks[i] = (sdm_render_hooks){ unet_faults_wrap, units ? &units[i] : NULL, NULL };
        hp[i] = units ? &hooks[i] : NULL;
    }
    rc = n > 0 ? sdm_render_devices_hooked(r, &p, devs, hp, n, st, err) : sdm_render(r, &p, st, err);
    if (rc)
        fprintf(stderr, "render on %d devices: %s\n", n, err->msg);
    sdm_recipe_free(&r);
    return rc;
}

/* Alike devices: the single engine's batches, so its frames bit for bit. */
static void test_same_frames(const capture *one)
{
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err;

    CHECK_INT(render_on(3, 2, NULL, &c, &st, &err), 0);
    CHECK_INT(worst_diff(one, &c), 0);
    CHECK_INT(st.frames_shown, one->n);
    CHECK_INT(st.frames_rendered, 11);
    CHECK_INT(st.batch, 2);
    capture_free(&c);
}

/* Device 2 is ten times slower (100 ms a UNet call, 10 ms the others):
 * it renders fewer frames, and the frames are the same. */
static void test_slow_device(const capture *one)
{
    unet_faults u[3] = { { .max_inputs = -1, .sleep_us = 10000 },
                         { .max_inputs = -1, .sleep_us = 100000 },
                         { .max_inputs = -1, .sleep_us = 10000 } };
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err;

    CHECK_INT(render_on(3, 1, u, &c, &st, &err), 0);
    CHECK_INT(worst_diff(one, &c), 0);
    printf("slow device: UNet calls %d, %d (slow), %d\n", u[0].calls, u[1].calls, u[2].calls);
    CHECK_INT(u[0].calls + u[1].calls + u[2].calls, 11 * 6); /* 11 renders of 6 steps, each once */
    CHECK(u[1].calls <= 2 * 6);
    capture_free(&c);
}

/* Device 1 runs out of memory above one frame per call (it halves its
 * batch), device 2 on every call (at one frame too: it drops out, the
 * renders it took go back to the others; they take 30 ms a call, so it
 * takes some): the frames of one engine, within the 1/255 a batch's size
 * may change. */
static void test_out_of_memory(const capture *one)
{
    unet_faults u[3] = { { .max_inputs = 1, .sleep_us = 30000 },
                         { .max_inputs = -1, .fail_from = 1 },
                         { .max_inputs = -1, .sleep_us = 30000 } };
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err;

    CHECK_INT(render_on(3, 2, u, &c, &st, &err), 0);
    CHECK(worst_diff(one, &c) <= 1);
    CHECK_INT(c.n, one->n);
    CHECK(u[0].failed >= 1);
    CHECK(st.batch_halved >= 2); /* device 1's 2 -> 1, and device 2's */
    CHECK(u[1].failed >= 1);
    CHECK_INT(u[1].calls, 2); /* 2 frames, then 1: dropped out */
    CHECK_INT(st.frames_rendered, 11); /* each render once */
    capture_free(&c);
}

/* Every device out of memory: the render fails, naming one. */
static void test_all_fail(void)
{
    unet_faults u[2] = { { .max_inputs = -1, .fail_from = 1 }, { .max_inputs = -1, .fail_from = 1 } };
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err;

    CHECK(render_on(2, 2, u, &c, &st, &err) < 0);
    CHECK_CONTAINS(err.msg, "every device failed");
    CHECK_CONTAINS(err.msg, "cpu (device");
    CHECK_INT(c.n, 0);
    capture_free(&c);
}

/* retime: even on three devices: one probes, the others take its curves
 * (devices.c, on_curves), and the frames are one engine's. Then two of the
 * engines fail at their first UNet call (the warm-up's are not wrapped):
 * one probing hands the probe on as it drops out, one waiting takes the
 * curves and drops out at its first batch; either way the third renders
 * one engine's frames, the probe counted once. */
static void test_retime_probed_once(void)
{
    char step[PATH_MAX];
    unet_faults u[3] = { { .max_inputs = -1, .fail_from = 1 },
                         { .max_inputs = -1, .fail_from = 1 },
                         { .max_inputs = -1 } };
    capture one = { 0 }, c = { 0 }, c2 = { 0 };
    sdm_render_stats st1, st;
    sdm_error err;

    snprintf(step, sizeof step, "%s/models/analytic-step", test_build_dir());
    CHECK_INT(render_recipe_on(retime_yaml, step, 0, 2, NULL, &one, &st1, &err), 0);
    CHECK(st1.probe_renders > 0);
    CHECK_INT(render_recipe_on(retime_yaml, step, 3, 2, NULL, &c, &st, &err), 0);
    printf("retime on 3 devices: %d probe frames (one engine: %d)\n", st.probe_renders, st1.probe_renders);
    CHECK_INT(st.probe_renders, st1.probe_renders); /* probed once, not on every device */
    CHECK_INT(worst_diff(&one, &c), 0);
    CHECK_INT(render_recipe_on(retime_yaml, step, 3, 2, u, &c2, &st, &err), 0);
    CHECK_INT(worst_diff(&one, &c2), 0);
    CHECK_INT(st.probe_renders, st1.probe_renders);
    CHECK_INT(u[2].failed, 0);
    capture_free(&one);
    capture_free(&c);
    capture_free(&c2);
}

int main(void)
{
    capture one = { 0 }, one1 = { 0 };
    sdm_render_stats st;
    sdm_error err;
    struct stat sb;

    snprintf(model_dir, sizeof model_dir, "%s/models/analytic", test_build_dir());
    if (stat(model_dir, &sb)) {
        SKIP("no analytic bundle (run make first)");
        return test_report();
    }
    if (!mkdtemp(dir)) {
        fprintf(stderr, "no temporary folder\n");
        return 1;
    }
    sdm_torch_set_threads(1);
    CHECK_INT(render_on(0, 2, NULL, &one, &st, &err), 0);
    CHECK_INT(one.n, 26);
    CHECK_INT(render_on(0, 1, NULL, &one1, &st, &err), 0);
    test_same_frames(&one);
    test_slow_device(&one1);
    test_out_of_memory(&one);
    test_all_fail();
    test_retime_probed_once();
    capture_free(&one);
    capture_free(&one1);
    {
        char cmd[sizeof dir + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd))
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_report();
}
