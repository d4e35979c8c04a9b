/* sdmorph check RECIPE: everything `render` would refuse, refused here
 * first (preflight.h), and the frame plan printed. No model is loaded, only
 * its model.yaml read, so it runs anywhere, instantly, before a long render. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "error.h"
#include "overrides.h"
#include "plan.h"
#include "preflight.h"
#include "recipe.h"
#include "sampler.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph check RECIPE [-o FILE]... [--model DIR | --no-model] [--frames LIST] [--shard I/N]\n"
            "                    [--quiet | --json]\n"
            "\n"
            "Validates RECIPE as `sdmorph render` would with the same options, and prints\n"
            "its frame plan: frames shown and rendered, duration, and for every output\n"
            "frame the keyframes, weight, seeds and guidance it uses. No model is loaded:\n"
            "its model.yaml is read for the limits that depend on it (steps against its\n"
            "training schedule, the image size against its VAE).\n"
            "\n"
            "  -o, --output FILE  the outputs `render -o FILE` would write (repeatable)\n"
            "  --model DIR        the model bundle (default: as `render` finds it)\n"
            "  --no-model         do not read the model: its limits are not checked\n"
            "  --frames LIST      only these output frames, e.g. 37 or 0-9,20\n"
            "  --shard I/N|auto   only the renders of shard I of N (`render --shard`) and its segment\n"
            "  --steps N, --size WxH, --seed N, --sampler NAME, --image PATH, --strength S, --set KEY=VALUE\n"
            "                     the recipe as `render` with these options reads it\n"
            "  -q, --quiet        print the summary line only\n"
            "      --json         print the plan as JSON (the format of a render's sidecar)\n"
            "\n"
            "Exit status: 0 the recipe would render, 2 it would not (the message says where),\n"
            "1 the model cannot be read or an output folder cannot be written.\n");
}

/* Where the weights of `retime: even` transitions come from. */
static void print_retime(const sdm_preflight *pf, const sdm_recipe *r)
{
    int wanted = sdm_retime_wanted(r), missing = sdm_retime_missing(&pf->retime);

    if (!wanted)
        return;
    if (!missing)
        printf("retime: even on %d transition%s: the weights above are placed by the probe kept in %s\n", wanted,
               wanted > 1 ? "s" : "", pf->retime_sidecar);
    else
        printf(
            "retime: even on %d transition%s, %d not probed yet with this model and size: the weights above are "
            "%s; `render` probes first (at %d steps) and keeps the curves in its sidecar\n",
            wanted, wanted > 1 ? "s" : "", missing, missing < wanted ? "partly the eased ones" : "the eased ones",
            pf->retime.probe_steps ? pf->retime.probe_steps : sdm_retime_probe_steps(r->steps));
}

/* The sampler the render uses, for the plan's first line: `auto` resolved
 * from the model where its model.yaml was read, as the render resolves it. */
static void sampler_text(const sdm_recipe *r, const sdm_preflight *pf, char *buf, size_t len)
{
    const sdm_bundle *b = &pf->bundle;
    sdm_sampler kind;
    int karras;

    if (r->sampler != SDM_SAMPLER_AUTO || !pf->has_bundle) {
        snprintf(buf, len, "%s", sdm_sampler_name(r->sampler));
        return;
    }
    kind = sdm_sampler_auto(b, &karras);
    if (b->scheduler[0])
        snprintf(buf, len, "%s%s (auto: the model's %s)", sdm_sampler_name(kind), karras || r->karras ? " karras" : "",
                 b->scheduler);
    else
        snprintf(buf, len, "%s%s (auto: the model names no scheduler)", sdm_sampler_name(kind),
                 r->karras ? " karras" : "");
}

static int print_plan(const char *path, const sdm_preflight *pf, const sdm_recipe *r, const char *model, int quiet,
                      int json)
{
    const sdm_plan *plan = &pf->plan;
    sdm_plan_json_extra x = { model, pf->width, pf->height, NULL, NULL };
    char sampler[400];

    sampler_text(r, pf, sampler, sizeof sampler);
    if (json)
        sdm_plan_write_json_with(plan, r, &x, stdout);
    else if (quiet)
        printf("%s: ok, %d frames shown, %d rendered, %.2f s at %g fps\n", path, plan->n_sequence, plan->n_renders,
               plan->n_sequence / plan->fps, plan->fps);
    else
        sdm_plan_print_sampler(plan, r, sampler, stdout);
    if (!json && !quiet)
        print_retime(pf, r);
    return fflush(stdout) ? SDM_EXIT_RUNTIME : SDM_EXIT_OK;
}

/* What the command line asks for, beyond the recipe's overrides. */
typedef struct {
    const char *path, *model;
    int quiet, json, no_model;
} check_options;

/* Reads the command line into o, ov and p. 0 to go on, 1 when done (--help:
 * *rc says how), -1 after a message (an error in err, or one printed). */
static int parse_options(int argc, char **argv, check_options *o, sdm_overrides *ov, sdm_render_params *p,
                         const char **outputs, int *rc, sdm_error *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = sdm_overrides_take(ov, argc, argv, &i, "sdmorph check");
        int takes = !strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--model") || !strcmp(a, "--frames") ||
                    !strcmp(a, "--shard");

        if (k != 0) {
            if (k < 0)
                return -1;
            continue;
        }
        if (takes && i + 1 >= argc) {
            fprintf(stderr, "sdmorph check: %s needs a value\n", a);
            return -1;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            *rc = SDM_EXIT_OK;
            return 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--no-model")) {
            o->no_model = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            outputs[p->n_outputs++] = argv[++i];
        } else if (!strcmp(a, "--model")) {
            o->model = argv[++i];
        } else if (!strcmp(a, "--frames")) {
            p->frames = argv[++i];
        } else if (!strncmp(a, "--frames=", 9)) {
            p->frames = a + 9;
        } else if (!strcmp(a, "--shard")) {
            if (sdm_shard_parse(argv[++i], &p->shard, err))
                return -1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sdmorph check: unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        } else if (o->path) {
            fprintf(stderr, "sdmorph check: one recipe at a time ('%s' and '%s')\n", o->path, a);
            return -1;
        } else {
            o->path = a;
        }
    }
    if (!o->path || (o->model && o->no_model)) {
        if (o->path)
            fprintf(stderr, "sdmorph check: --model and --no-model together\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

int sdm_cmd_check(int argc, char **argv)
{
    const char **outputs = calloc((size_t)argc, sizeof *outputs);
    int rc = SDM_EXIT_USAGE, parsed;
    check_options o = { 0 };
    sdm_overrides ov;
    sdm_render_params p = sdm_render_default_params();
    sdm_recipe *r = NULL;
    sdm_preflight pf;
    sdm_error err = { 0 };
    char model_dir[4096];

    memset(&pf, 0, sizeof pf);
    if (sdm_overrides_init(&ov, argc) || !outputs) {
        rc = SDM_EXIT_RUNTIME;
        goto end;
    }
    parsed = parse_options(argc, argv, &o, &ov, &p, outputs, &rc, &err);
    if (parsed < 0 && err.msg[0])
        goto fail;
    if (parsed)
        goto end;
    if (sdm_recipe_load_with(o.path, ov.items, ov.n, &r, &err))
        goto fail;
    if (!o.no_model && sdm_bundle_dir_for(o.model, r->model, model_dir, sizeof model_dir)) {
        sdm_error_set(&err, SDM_EXIT_USAGE, "the model's path is too long");
        goto fail;
    }
    p.model_dir = o.no_model ? NULL : model_dir;
    p.outputs = outputs;
    if (sdm_preflight_run(r, &p, &pf, &err))
        goto fail;
    if (p.shard.count && !o.json)
        printf("shard %d/%d: renders %d-%d of %d, into %s\n", p.shard.index, p.shard.count, pf.outs.segment.first,
               pf.outs.segment.first + pf.outs.segment.n - 1, pf.outs.segment.n_total, pf.segment);
    rc = print_plan(o.path, &pf, r, p.model_dir, o.quiet, o.json);
    goto end;
fail:
    fprintf(stderr, "sdmorph: %s\n", err.msg);
    rc = err.code ? err.code : SDM_EXIT_USAGE;
end:
    sdm_preflight_free(&pf);
    sdm_recipe_free(&r);
    sdm_overrides_free(&ov);
    free(outputs);
    return rc;
}
