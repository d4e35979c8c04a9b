/* sdmorph render: options, model lookup, signals; the work is sdm_render. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "commands.h"
#include "model_dir.h"
#include "recipe.h"
#include "devices.h"
#include "render.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph render RECIPE [options]\n"
            "  -o, --output FILE    write FILE instead of the recipe's outputs and contact sheet\n"
            "                       (repeatable; .mp4, .gif)\n"
            "  --model DIR          model bundle (default: the recipe's model, $SDMORPH_MODEL,\n"
            "                       else the built-in synthetic analytic model)\n"
            "  --device DEV         cpu, cuda or cuda:N (default: cuda when available)\n"
            "  --devices LIST       several devices of this host, e.g. 0,1 (CUDA), all (every GPU) or cpu,cpu:\n"
            "                       each renders an equal share on its own thread; the same frames as one\n"
            "  --batch N            frames per UNet call (default: from free GPU memory)\n"
            "  --frames LIST        render only these output frames, e.g. 37 or 0-9,20\n"
            "                       (written to NAME.frames-LIST.mp4 and .png unless -o is given)\n"
            "  --shard I/N          render only the I-th of N equal chunks of the distinct frames into a\n"
            "                       segment, NAME.shard-I-of-N.rgb (raw frames) and .json (manifest), or\n"
            "                       -o FILE.rgb; `sdmorph join` makes the outputs from all N. auto: the\n"
            "                       Slurm array task or Kubernetes Indexed Job (JOB_COMPLETION_INDEX/_COUNT)\n"
            "  --threads N          CPU threads for libtorch\n"
            "  --no-cuda-graphs     run the sampling loop step by step instead of replaying it as one\n"
            "                       CUDA graph per batch shape (the default on CUDA where the build has them)\n"
            "  --cudnn-benchmark    let cuDNN time its convolution algorithms and keep the fastest: faster,\n"
            "                       but two runs may then differ in the last bits of some pixels\n"
            "  --no-aoti            TorchScript modules only, even where the model has AOTInductor builds\n"
            "  -q, --quiet          no progress line\n"
            "Exit status: 0 done, 1 runtime failure, 2 bad usage or recipe, 130 interrupted\n"
            "(Ctrl-C, SIGTERM or SIGHUP: a playable NAME.partial.mp4 holds the frames done).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "0,1", "cuda:0,cuda:1", "cpu,cpu" or "all" (every CUDA device); the
 * count, or -1 (said). */
static int parse_devices(const char *list, sdm_device *devs)
{
    char buf[1024], *save = NULL, name[64];
    int n = 0, cuda = sdm_cuda_device_count();

    if (!strcmp(list, "all")) {
        if (cuda < 1) {
            fprintf(stderr, "sdmorph render: --devices all: no CUDA device (this libtorch has no CUDA or no GPU is "
                    "visible)\n");
            return -1;
        }
        for (; n < cuda && n < SDM_MAX_DEVICES; n++)
            devs[n] = (sdm_device){ SDM_DEVICE_CUDA, n };
        return n;
    }
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        snprintf(name, sizeof name, "%s%s", strspn(t, "0123456789") == strlen(t) ? "cuda:" : "", t);
        if (n == SDM_MAX_DEVICES || sdm_device_from_str(name, &devs[n])) {
            fprintf(stderr, "sdmorph render: --devices: '%s' is not a device (cpu, N or cuda:N; at most %d)\n", t,
                    SDM_MAX_DEVICES);
            return -1;
        }
        if (devs[n].type == SDM_DEVICE_CUDA && devs[n].index >= cuda) {
            fprintf(stderr, "sdmorph render: --devices: %s is not available (%d CUDA devices)\n", name, cuda);
            return -1;
        }
        n++;
    }
    if (n == 0)
        fprintf(stderr, "sdmorph render: --devices names no device\n");
    return n ? n : -1;
}

int sdm_cmd_render(int argc, char **argv)
{
    sdm_render_params p = sdm_render_default_params();
    sdm_render_stats stats;
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    const char *recipe = NULL, *model = NULL, *device = NULL, *devices = NULL;
    sdm_device devs[SDM_MAX_DEVICES];
    const char **outputs = calloc(argc, sizeof *outputs);
    char model_dir[4096];
    static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa, old[3];
    int rc = SDM_EXIT_USAGE, threads = 0, n_out = 0, quiet = 0, d, n_devs = 0;

    if (!outputs)
        return SDM_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--model") ||
                    !strcmp(a, "--device") || !strcmp(a, "--batch") || !strcmp(a, "--frames") ||
                    !strcmp(a, "--threads") || !strcmp(a, "--shard") || !strcmp(a, "--devices");
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = SDM_EXIT_OK;
            goto end;
        }
        if (takes && !v) {
            fprintf(stderr, "sdmorph render: %s needs a value\n", a);
            goto end;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            outputs[n_out++] = v;
        } else if (!strcmp(a, "--model")) {
            model = v;
        } else if (!strcmp(a, "--device")) {
            device = v;
        } else if (!strcmp(a, "--frames")) {
            p.frames = v;
        } else if (!strcmp(a, "--devices")) {
            devices = v;
        } else if (!strcmp(a, "--shard")) {
            if (sdm_shard_parse(v, &p.shard, &err)) {
                fprintf(stderr, "sdmorph render: %s\n", err.msg);
                goto end;
            }
        } else if (!strcmp(a, "--batch")) {
            if (parse_int(v, 1, 1024, &p.batch)) {
                fprintf(stderr, "sdmorph render: --batch must be 1..1024, not '%s'\n", v);
                goto end;
            }
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(v, 1, 1024, &threads)) {
                fprintf(stderr, "sdmorph render: --threads must be 1..1024, not '%s'\n", v);
                goto end;
            }
        } else if (!strcmp(a, "--no-cuda-graphs")) {
            p.cuda_graphs = 0;
            continue;
        } else if (!strcmp(a, "--cudnn-benchmark")) {
            p.cudnn_benchmark = 1;
            continue;
        } else if (!strcmp(a, "--no-aoti")) {
            p.aoti = 0;
            continue;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sdmorph render: unknown option '%s'\n", a);
            usage(stderr);
            goto end;
        } else if (!recipe) {
            recipe = a;
            continue;
        } else {
            fprintf(stderr, "sdmorph render: one recipe at a time ('%s' and '%s')\n", recipe, a);
            goto end;
        }
        i++;
    }
    if (!recipe) {
        usage(stderr);
        goto end;
    }
    if (devices && (device || (n_devs = parse_devices(devices, devs)) < 0)) {
        if (device)
            fprintf(stderr, "sdmorph render: --device or --devices, not both\n");
        goto end;
    }
    if (device) {
        if (sdm_device_from_str(device, &p.device)) {
            fprintf(stderr, "sdmorph render: --device must be cpu, cuda or cuda:N, not '%s'\n", device);
            goto end;
        }
        if (p.device.type == SDM_DEVICE_CUDA && p.device.index >= sdm_cuda_device_count()) {
            fprintf(stderr, "sdmorph render: %s is not available (%d CUDA devices%s)\n", device,
                    sdm_cuda_device_count(), sdm_cuda_device_count() ? "" : "; this libtorch has no CUDA or no GPU is visible");
            rc = SDM_EXIT_RUNTIME;
            goto end;
        }
    } else if (n_devs == 1) {
        p.device = devs[0];
    } else {
        p.device.type = sdm_cuda_device_count() > 0 ? SDM_DEVICE_CUDA : SDM_DEVICE_CPU;
        p.device.index = 0;
    }
    if (threads)
        sdm_torch_set_threads(threads);

    if (sdm_recipe_load(recipe, &r, &err)) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code;
        goto end;
    }
    if (sdm_bundle_dir_for(model, r->model, r->path, model_dir, sizeof model_dir)) {
        fprintf(stderr, "sdmorph: the model's path is too long\n");
        goto end;
    }
    p.model_dir = model_dir;
    p.outputs = outputs;
    p.n_outputs = n_out;
    p.progress = !quiet && isatty(STDERR_FILENO);
    p.stop = &stop_requested;

    /* a closed terminal (SIGHUP) ends a render as Ctrl-C does: the frames
     * done are kept in a .partial file, the temporary files removed */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &sa, &old[i]);
    d = n_devs > 1 ? sdm_render_devices(r, &p, devs, n_devs, &stats, &err) : sdm_render(r, &p, &stats, &err);
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &old[i], NULL);

    if (d < 0) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code ? err.code : SDM_EXIT_RUNTIME;
        goto end;
    }
    if (d == 1) {
        if (stats.frames_shown)
            fprintf(stderr, "sdmorph: interrupted: kept the %d frames done in a .partial file beside each output\n",
                    stats.frames_shown);
        else
            fprintf(stderr, "sdmorph: interrupted before the first frame: nothing written\n");
        rc = 130;
        goto end;
    }
    fprintf(stderr, "sdmorph: %d frames (%d rendered) at %dx%d in %.1f s (+%.1f s loading), "
            "%.4f s per rendered frame, batch %d\n", stats.frames_shown, stats.frames_rendered, stats.width,
            stats.height, stats.seconds, stats.load_seconds, stats.seconds_per_render, stats.batch);
    rc = SDM_EXIT_OK;
end:
    sdm_recipe_free(&r);
    free(outputs);
    return rc;
}
