/* sdmorph join RECIPE SEGMENT...: the outputs of a sharded render (join.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "join.h"
#include "options.h"
#include "recipe.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph join RECIPE SEGMENT... [-o FILE]... [-q]\n"
            "\n"
            "Writes RECIPE's outputs (videos, contact sheet, sidecars) from the segments\n"
            "that `sdmorph render RECIPE --shard I/N` wrote, as one render would have: no\n"
            "model, no GPU. SEGMENT is a segment's manifest (NAME.shard-I-of-N.json) or\n"
            "its frames (.rgb). The segments must come from RECIPE as it is now and from\n"
            "one model, and hold every distinct frame exactly once.\n"
            "\n"
            "  -o, --output FILE  write FILE instead of the recipe's outputs and sheet (repeatable)\n"
            "  -q, --quiet        no summary line\n"
            "\n"
            "Exit status: 0 written, 2 a segment missing, repeated or not of this recipe\n"
            "or model (the message names the frames), 1 a file could not be read or written.\n");
}

int sdm_cmd_join(int argc, char **argv)
{
    const char **segs = calloc((size_t)argc, sizeof *segs), **outs = calloc((size_t)argc, sizeof *outs);
    const char *recipe = NULL, *v;
    sdm_join_params jp = { 0 };
    sdm_join_stats stats;
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    int rc = SDM_EXIT_USAGE, quiet = 0, got;

    if (!segs || !outs) {
        rc = SDM_EXIT_RUNTIME;
        goto end;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = SDM_EXIT_OK;
            goto end;
        }
        got = sdm_option_value(argc, argv, &i, "--output", &v);
        if (!got)
            got = sdm_option_value(argc, argv, &i, "-o", &v);
        if (got < 0) {
            fprintf(stderr, "sdmorph join: %s needs a file\n", a);
            goto end;
        } else if (got) {
            outs[jp.n_outputs++] = v;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sdmorph join: unknown option '%s'\n", a);
            usage(stderr);
            goto end;
        } else if (!recipe) {
            recipe = a;
        } else {
            segs[jp.n_segments++] = a;
        }
    }
    if (!recipe || jp.n_segments == 0) {
        usage(stderr);
        goto end;
    }
    jp.segments = segs;
    jp.outputs = outs;
    if (sdm_recipe_load(recipe, &r, &err) || sdm_join(r, &jp, &stats, &err)) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        rc = err.code ? err.code : SDM_EXIT_RUNTIME;
        goto end;
    }
    if (!quiet)
        fprintf(stderr, "sdmorph: joined %d segments: %d frames (%d rendered) in %.1f s\n", jp.n_segments,
                stats.frames_shown, stats.renders, stats.seconds);
    rc = SDM_EXIT_OK;
end:
    sdm_recipe_free(&r);
    free(segs);
    free(outs);
    return rc;
}
