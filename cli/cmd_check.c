/* sdmorph check RECIPE: loads and plans a recipe and prints the plan. No
 * model is loaded, so it runs anywhere, instantly, before a long render. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "options.h"
#include "plan.h"
#include "recipe.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph check RECIPE [--frames LIST] [--quiet | --json]\n"
            "\n"
            "Validates RECIPE and prints its frame plan: frames shown and rendered,\n"
            "duration, and for every output frame the keyframes, weight, seeds and\n"
            "guidance it uses. No model is loaded.\n"
            "\n"
            "  --frames LIST   only these output frames, e.g. 37 or 0-9,20\n"
            "  -q, --quiet     print the summary line only\n"
            "      --json      print the plan as JSON (the format of a render's sidecar)\n"
            "\n"
            "Exit status: 0 the recipe is valid, 2 it is not (the message says where).\n");
}

int sdm_cmd_check(int argc, char **argv)
{
    const char *path = NULL, *frames = NULL;
    int quiet = 0, json = 0, rc = SDM_EXIT_USAGE;
    sdm_recipe *r = NULL;
    sdm_plan plan;
    sdm_error err;

    memset(&plan, 0, sizeof plan);
    memset(&err, 0, sizeof err);
    for (int i = 1; i < argc; i++) {
        int value = sdm_option_value(argc, argv, &i, "--frames", &frames);

        if (value < 0) {
            fprintf(stderr, "sdmorph check: --frames needs a list, e.g. --frames 0-9,20\n");
            return SDM_EXIT_USAGE;
        } else if (value > 0) {
            continue;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return SDM_EXIT_OK;
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sdmorph check: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return SDM_EXIT_USAGE;
        } else if (path) {
            fprintf(stderr, "sdmorph check: one recipe at a time ('%s' and '%s')\n", path, argv[i]);
            return SDM_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    if (sdm_recipe_load(path, &r, &err) || sdm_plan_make(r, &plan, &err) ||
        (frames && sdm_plan_select(&plan, frames, &err))) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code ? err.code : SDM_EXIT_USAGE;
        goto end;
    }
    if (json) {
        sdm_plan_write_json(&plan, r, stdout);
    } else if (quiet) {
        printf("%s: ok, %d frames shown, %d rendered, %.2f s at %g fps\n", path, plan.n_sequence, plan.n_renders,
               plan.n_sequence / plan.fps, plan.fps);
    } else {
        sdm_plan_print(&plan, r, stdout);
    }
    rc = fflush(stdout) ? SDM_EXIT_RUNTIME : SDM_EXIT_OK;
end:
    sdm_plan_free(&plan);
    sdm_recipe_free(&r);
    return rc;
}
