/* sdmorph import: the settings stored in an image made by A1111 or
 * ComfyUI, printed as a recipe to start a scene from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "image_params.h"
#include "png_text.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph import IMAGE.png\n"
            "Reads the settings an image generator stored in a PNG (A1111's \"parameters\"\n"
            "text; ComfyUI's \"prompt\" graph where it has one sampler whose prompts are\n"
            "written in) and prints a recipe: width, height, steps, sampler and SDXL's size\n"
            "conditioning, then one keyframe with the prompt, negative, seed, guidance (CFG)\n"
            "and clip skip.\n"
            "Save it (sdmorph import x.png > scene.yaml) and add keyframes to morph to.\n"
            "Exit status: 0 done, 2 not a PNG, or no settings in it.\n");
}

int sdm_cmd_import(int argc, char **argv)
{
    const char *path = NULL;
    char *text = NULL;
    sdm_image_params p = { 0 };
    sdm_error err = { 0 };
    int rc = SDM_EXIT_USAGE;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return SDM_EXIT_OK;
        }
        if (path || (argv[i][0] == '-' && argv[i][1])) {
            fprintf(stderr, "sdmorph import: %s '%s'\n", path ? "one image only, not also" : "unknown option", argv[i]);
            usage(stderr);
            return SDM_EXIT_USAGE;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "sdmorph import: no IMAGE given\n");
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    if (sdm_png_text_file(path, "parameters", &text, &err))
        goto fail;
    if (text) {
        if (sdm_image_params_a1111(text, &p, &err))
            goto fail;
    } else {
        if (sdm_png_text_file(path, "prompt", &text, &err))
            goto fail;
        if (!text) {
            fprintf(stderr,
                    "sdmorph import: %s: no settings in it (no \"parameters\" or \"prompt\" text, as A1111 "
                    "and ComfyUI write)\n",
                    path);
            goto end;
        }
        if (sdm_image_params_comfyui(text, &p, &err))
            goto fail;
    }
    sdm_image_params_print(&p, path, stdout);
    rc = SDM_EXIT_OK;
    goto end;
fail:
    fprintf(stderr, "sdmorph import: %s\n", err.msg);
    rc = err.code == SDM_EXIT_USAGE ? SDM_EXIT_USAGE : SDM_EXIT_RUNTIME;
end:
    free(text);
    sdm_image_params_clear(&p);
    return rc;
}
