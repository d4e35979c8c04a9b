/* sdmorph render: options and model lookup; the run is run_render.h's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "model_dir.h"
#include "recipe.h"
#include "devices.h"
#include "render.h"
#include "run_render.h"

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
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    const char *recipe = NULL, *model = NULL, *device = NULL, *devices = NULL;
    sdm_device devs[SDM_MAX_DEVICES];
    const char **outputs = calloc(argc, sizeof *outputs);
    char model_dir[4096];
    int rc = SDM_EXIT_USAGE, threads = 0, n_out = 0, quiet = 0, n_devs = 0;

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
    if (n_devs >= 1) {
        p.device = devs[0];
    } else if ((rc = sdm_run_device("render", device, &p.device)) != SDM_EXIT_OK) {
        goto end;
    }
    rc = SDM_EXIT_USAGE;
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
    rc = sdm_run_render(r, &p, devs, n_devs, quiet);
end:
    sdm_recipe_free(&r);
    free(outputs);
    return rc;
}
