/* sdmorph bridge A.yaml B.yaml: the transition from scene A's first frame
 * to scene B's (bridge.h), rendered as `render` renders a recipe. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "bundle.h"
#include "commands.h"
#include "options.h"
#include "recipe.h"
#include "run_render.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph bridge A.yaml B.yaml [--frames N | --beats N] -o OUT [options]\n"
            "\n"
            "Renders the transition from scene A's first frame to scene B's first frame\n"
            "(their prompts, negatives, seeds and guidance), so a game master can cut from\n"
            "A's loop to B's without a jump: its first frame is exactly A's first frame, its\n"
            "last exactly B's first. A and B must use the same model,\n"
            "size and sampler settings; A's interp, ease and retime shape the transition.\n"
            "\n"
            "  --frames N         the transition's frames, its first included (default 24)\n"
            "  --beats N          its length in beats at A's bpm (else B's)\n"
            "  -o, --output FILE  write FILE (.mp4, .gif, .rgb; repeatable, at least one)\n"
            "  --model DIR        model bundle (default: as `render` finds A's)\n"
            "  --device DEV       cpu, cuda or cuda:N\n"
            "  -q, --quiet        no progress line\n"
            "\n"
            "The bridge ends on B's first frame: it shows N frames and then B's first, N + 1 in all.\n"
            "Exit status: 0 done, 1 runtime failure, 2 bad usage or recipes, 130 interrupted.\n");
}

typedef struct {
    const char *paths[2], *model, *device;
    const char **outputs;
    int n_outputs, frames, frames_given, quiet;
    double beats;
} bridge_args;

static int parse_number(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(v, &end);
    if (errno || end == v || *end || !(*out >= lo && *out <= hi)) {
        fprintf(stderr, "sdmorph bridge: %s wants a number in %g..%g, not '%s'\n", opt, lo, hi, v);
        return -1;
    }
    return 0;
}

/* One option at argv[*i]: 0 taken, 1 help printed, -1 bad. */
static int parse_option(int argc, char **argv, int *i, bridge_args *a)
{
    const char *v, *names[] = { "--frames", "--beats", "-o", "--output", "--model", "--device" };
    double x;

    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        int got = sdm_option_value(argc, argv, i, names[k], &v);
        if (got < 0)
            fprintf(stderr, "sdmorph bridge: %s needs a value\n", names[k]);
        if (got < 0 || (got && k == 0 && parse_number(names[k], v, 1, 100000, &x)) ||
            (got && k == 1 && parse_number(names[k], v, 1e-3, 100000, &a->beats)))
            return -1;
        if (got && k == 0) {
            a->frames = (int)x;
            a->frames_given = 1;
        }
        if (got && k == 0 && x != a->frames) {
            fprintf(stderr, "sdmorph bridge: --frames wants a whole number, not '%s'\n", v);
            return -1;
        }
        if (got && k >= 2)
            *(k <= 3 ? &a->outputs[a->n_outputs++] : k == 4 ? &a->model : &a->device) = v;
        if (got)
            return 0;
    }
    if (!strcmp(argv[*i], "-h") || !strcmp(argv[*i], "--help")) {
        usage(stdout);
        return 1;
    }
    if (!strcmp(argv[*i], "-q") || !strcmp(argv[*i], "--quiet")) {
        a->quiet = 1;
        return 0;
    }
    if ((argv[*i][0] != '-' || !argv[*i][1]) && !a->paths[1]) {
        a->paths[a->paths[0] ? 1 : 0] = argv[*i];
        return 0;
    }
    fprintf(stderr, "sdmorph bridge: unexpected argument '%s'\n", argv[*i]);
    return -1;
}

/* A and B's model bundles: one model for both, else a clear refusal. */
static int same_model(const bridge_args *a, const sdm_recipe *ra, const sdm_recipe *rb, char *dir, size_t len)
{
    char other[PATH_MAX], ca[PATH_MAX], cb[PATH_MAX];

    if (sdm_bundle_dir_for(a->model, ra->model, dir, len) ||
        sdm_bundle_dir_for(a->model, rb->model, other, sizeof other)) {
        fprintf(stderr, "sdmorph bridge: the model's path is too long\n");
        return SDM_EXIT_USAGE;
    }
    if (strcmp(realpath(dir, ca) ? ca : dir, realpath(other, cb) ? cb : other)) {
        fprintf(stderr,
                "sdmorph bridge: %s renders with the model %s and %s with %s; a bridge needs one model "
                "(give both the same 'model:', or --model DIR)\n",
                ra->path, dir, rb->path, other);
        return SDM_EXIT_USAGE;
    }
    return SDM_EXIT_OK;
}

int sdm_cmd_bridge(int argc, char **argv)
{
    bridge_args a = { { NULL, NULL }, NULL, NULL, NULL, 0, 24, 0, 0, 0 };
    sdm_render_params p = sdm_render_default_params();
    sdm_recipe *ra = NULL, *rb = NULL, *bridge = NULL;
    sdm_error err = { 0 };
    char model_dir[PATH_MAX];
    int rc = SDM_EXIT_USAGE;

    a.outputs = calloc((size_t)argc, sizeof *a.outputs);
    if (!a.outputs)
        return SDM_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        int got = parse_option(argc, argv, &i, &a);
        if (got) {
            rc = got > 0 ? SDM_EXIT_OK : SDM_EXIT_USAGE;
            goto end;
        }
    }
    if (!a.paths[1] || !a.n_outputs) {
        fprintf(stderr, "sdmorph bridge: needs two recipes and at least one -o OUT\n");
        usage(stderr);
        goto end;
    }
    if (a.beats > 0 && a.frames_given) {
        fprintf(stderr, "sdmorph bridge: --frames and --beats together; give one\n");
        goto end;
    }
    if ((rc = sdm_run_device("bridge", a.device, &p.device)) != SDM_EXIT_OK)
        goto end;
    if (sdm_recipe_load(a.paths[0], &ra, &err) || sdm_recipe_load(a.paths[1], &rb, &err) ||
        (rc = same_model(&a, ra, rb, model_dir, sizeof model_dir)) != SDM_EXIT_OK ||
        sdm_bridge_recipe(ra, rb, a.frames, a.beats, &bridge, &err)) {
        if (err.msg[0])
            fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code ? err.code : rc ? rc : SDM_EXIT_USAGE;
        goto end;
    }
    p.model_dir = model_dir;
    p.outputs = a.outputs;
    p.n_outputs = a.n_outputs;
    rc = sdm_run_render(bridge, &p, NULL, 0, a.quiet);
end:
    sdm_recipe_free(&bridge);
    sdm_recipe_free(&ra);
    sdm_recipe_free(&rb);
    free(a.outputs);
    return rc;
}
