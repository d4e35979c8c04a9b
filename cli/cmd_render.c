/* sdmorph render: options and model lookup; the run is run_render.h's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "model_dir.h"
#include "recipe.h"
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
            "  --batch N            frames per UNet call (default: from free GPU memory)\n"
            "  --frames LIST        render only these output frames, e.g. 37 or 0-9,20\n"
            "                       (written to NAME.frames-LIST.mp4 and .png unless -o is given)\n"
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

int sdm_cmd_render(int argc, char **argv)
{
    sdm_render_params p = sdm_render_default_params();
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    const char *recipe = NULL, *model = NULL, *device = NULL;
    const char **outputs = calloc(argc, sizeof *outputs);
    char model_dir[4096];
    int rc = SDM_EXIT_USAGE, threads = 0, n_out = 0, quiet = 0;

    if (!outputs)
        return SDM_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--model") ||
                    !strcmp(a, "--device") || !strcmp(a, "--batch") || !strcmp(a, "--frames") ||
                    !strcmp(a, "--threads");
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
    if ((rc = sdm_run_device("render", device, &p.device)) != SDM_EXIT_OK)
        goto end;
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
    rc = sdm_run_render(r, &p, quiet);
end:
    sdm_recipe_free(&r);
    free(outputs);
    return rc;
}
