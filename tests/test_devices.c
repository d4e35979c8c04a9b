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
#include "render.h"
#include "render_hooks.h"
#include "torch_error.h"
#include "test.h"

static char model_dir[PATH_MAX];
static char dir[] = "/tmp/sdm-devices-XXXXXX";

static const char *loop_yaml =
    "width: 64\nheight: 64\nsteps: 6\nseed: 7\nfps: 12\nguidance: 1\n"
    "loop: pingpong\nframes: 5\nkeyframes:\n  - a city street in the rain\n"
    "  - prompt: a forest path in the mist\n    hold: 3\n  - a quiet harbour at dawn\n";

/* The frames a render shows, in order. */
typedef struct {
    uint8_t **frames;
    int n, cap;
    size_t bytes;
} capture;

static int capture_frame(void *user, int index, const uint8_t *rgb, int width, int height)
{
    capture *c = user;

    if (index != c->n)
        return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->frames = realloc(c->frames, sizeof *c->frames * c->cap);
    }
    c->bytes = (size_t)width * height * 3;
    c->frames[c->n] = malloc(c->bytes);
    memcpy(c->frames[c->n++], rgb, c->bytes);
    return 0;
}

static void capture_free(capture *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->frames[i]);
    free(c->frames);
    memset(c, 0, sizeof *c);
}

/* The largest difference of a pixel between two captures (256: they differ in count). */
static int worst_diff(const capture *a, const capture *b)
{
    int worst = 0;

    if (a->n != b->n || a->n == 0 || a->bytes != b->bytes)
        return 256;
    for (int i = 0; i < a->n; i++)
        for (size_t k = 0; k < a->bytes; k++) {
            int d = abs((int)a->frames[i][k] - (int)b->frames[i][k]);
            worst = d > worst ? d : worst;
        }
    return worst;
}

/* A device's UNet: slower by sleep_us a call; out of memory on calls of
 * more than max_inputs inputs (0: none), and on every call after fail_after
 * calls (-1: never), from an allocation no machine can grant. */
typedef struct {
    sdm_unet_fn real;
    void *real_user;
    int64_t max_inputs;
    int fail_after;
    int sleep_us;
    int calls, failed;
} device_unet;

static int device_unet_call(void *user, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err)
{
    device_unet *u = user;
    const int64_t huge[2] = { 1LL << 30, 1LL << 30 };
    sdm_tensor *t = NULL;
    sdm_torch_status st;

    u->calls++;
    if (u->sleep_us)
        usleep((useconds_t)u->sleep_us);
    if ((!u->max_inputs || sdm_tensor_dim(args[0], 0) <= u->max_inputs) &&
        (u->fail_after < 0 || u->calls <= u->fail_after))
        return u->real(u->real_user, args, out, err);
    u->failed++;
    st = sdm_tensor_zeros(SDM_F32, huge, 2, sdm_tensor_device(args[0]), &t);
    sdm_tensor_free(&t);
    return sdm_torch_error(err, st, "UNet");
}

static void device_wrap(void *user, sdm_unet_fn *fn, void **fn_user)
{
    device_unet *u = user;

    u->real = *fn;
    u->real_user = *fn_user;
    *fn = device_unet_call;
    *fn_user = u;
}

/* The loop recipe on n CPU engines (n 0: sdm_render on one), batch frames
 * per call, its frames into c; units[i] wraps engine i's UNet. */
static int render_on(int n, int batch, device_unet *units, capture *c, sdm_render_stats *st, sdm_error *err)
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
    if (sdm_recipe_load_string("loop.yaml", loop_yaml, strlen(loop_yaml), &r, err))
        return -1;
    snprintf(out, sizeof out, "%s/loop-%d.mp4", dir, n);
    p.model_dir = model_dir;
    p.device = cpu;
    p.batch = batch;
    p.outputs = outs;
    p.n_outputs = 1;
    p.write_outputs = n > 0;
    p.on_frame = capture_frame;
    p.user = c;
    for (int i = 0; i < n; i++) {
        hooks[i] = (sdm_render_hooks){ device_wrap, &units[i], NULL };
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
    device_unet u[3] = { { NULL, NULL, 0, -1, 10000, 0, 0 },
                         { NULL, NULL, 0, -1, 100000, 0, 0 },
                         { NULL, NULL, 0, -1, 10000, 0, 0 } };
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
    device_unet u[3] = { { NULL, NULL, 1, -1, 30000, 0, 0 },
                         { NULL, NULL, 0, 0, 0, 0, 0 },
                         { NULL, NULL, 0, -1, 30000, 0, 0 } };
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
    device_unet u[2] = { { NULL, NULL, 0, 0, 0, 0, 0 }, { NULL, NULL, 0, 0, 0, 0, 0 } };
    capture c = { 0 };
    sdm_render_stats st;
    sdm_error err;

    CHECK(render_on(2, 2, u, &c, &st, &err) < 0);
    CHECK_CONTAINS(err.msg, "every device failed");
    CHECK_CONTAINS(err.msg, "cpu (device");
    CHECK_INT(c.n, 0);
    capture_free(&c);
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
