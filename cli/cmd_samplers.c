/* sdmorph samplers: every sampler a recipe can name, the aliases it also
 * answers to, what each needs (options, UNet calls, noise), and with
 * --model what `auto` is for that model. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "options.h"
#include "recipe.h"
#include "sampler.h"

/* What a user needs to know of each sampler; the order of sdm_sampler. */
static const struct {
    const char *scheduler; /* diffusers' class */
    const char *options;
    const char *notes;
} about[SDM_SAMPLER_COUNT] = {
    [SDM_SAMPLER_DDIM] = { "DDIMScheduler", "eta (0..1; > 0 adds noise each step)", "1 UNet call a step" },
    [SDM_SAMPLER_EULER] = { "EulerDiscreteScheduler", "karras", "1 UNet call a step" },
    [SDM_SAMPLER_EULER_A] = { "EulerAncestralDiscreteScheduler", "", "1 UNet call a step; noise each step" },
    [SDM_SAMPLER_DPMPP_2M] = { "DPMSolverMultistepScheduler", "karras", "1 UNet call a step" },
    [SDM_SAMPLER_DPMPP_2M_SDE] = { "DPMSolverMultistepScheduler (sde-dpmsolver++)", "karras",
                                   "1 UNet call a step; noise each step" },
    [SDM_SAMPLER_PNDM] = { "PNDMScheduler (skip_prk_steps)", "", "steps + 1 UNet calls; SD 1.x's own" },
    [SDM_SAMPLER_LMS] = { "LMSDiscreteScheduler", "karras", "1 UNet call a step" },
    [SDM_SAMPLER_HEUN] = { "HeunDiscreteScheduler", "karras", "2 UNet calls a step (the last: 1)" },
    [SDM_SAMPLER_UNIPC] = { "UniPCMultistepScheduler (bh2, order 2)", "karras", "1 UNet call a step" },
    [SDM_SAMPLER_LCM] = { "LCMScheduler", "",
                          "for LCM-LoRA (fused at export) or LCM weights run with plain "
                          "guidance: 2..8 steps, guidance 1..2, at most original_inference_steps (50); noise each "
                          "step but the last. Checkpoints that take guidance as an embedding "
                          "(time_cond_proj_dim) are not supported" },
    [SDM_SAMPLER_AUTO] = { "the model's own", "", "the scheduler in model.yaml (ddim where none is named)" },
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph samplers [--model DIR]\n"
            "  --model DIR   also say which sampler `auto` is for this model bundle\n"
            "Lists the samplers a recipe's `sampler:` may name, with the names it also\n"
            "takes (A1111's, ComfyUI's, diffusers' class names; case does not matter),\n"
            "their options and UNet calls. Every sampler takes timestep_spacing\n"
            "(leading, trailing, linspace; default: the model's, else diffusers' own).\n"
            "Exit status: 0 done, 1 the bundle could not be loaded, 2 bad usage.\n");
}

static void list(void)
{
    for (int k = 0; k < SDM_SAMPLER_COUNT; k++) {
        const char *alias;
        sdm_sampler kind;
        bool karras;
        int n = 0;

        printf("%s\n  diffusers: %s\n", sdm_sampler_name((sdm_sampler)k), about[k].scheduler);
        if (about[k].options[0])
            printf("  options:   %s\n", about[k].options);
        printf("  needs:     %s\n", about[k].notes);
        for (int i = 0; (alias = sdm_sampler_alias(i, &kind, &karras)) != NULL; i++) {
            if ((int)kind != k || !strcmp(alias, sdm_sampler_name(kind)))
                continue;
            printf("%s\"%s\"%s", n++ ? ", " : "  aliases:   ", alias, karras ? " (karras)" : "");
        }
        if (n)
            printf("\n");
    }
}

int sdm_cmd_samplers(int argc, char **argv)
{
    const char *model = NULL;
    sdm_bundle b;
    sdm_error err = { 0 };
    sdm_sampler kind;
    int karras;

    for (int i = 1; i < argc; i++) {
        int value = sdm_option_value(argc, argv, &i, "--model", &model);
        if (value < 0) {
            fprintf(stderr, "sdmorph samplers: --model needs a directory\n");
            return SDM_EXIT_USAGE;
        }
        if (value > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return SDM_EXIT_OK;
        }
        fprintf(stderr, "sdmorph samplers: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    list();
    if (!model)
        return SDM_EXIT_OK;
    if (sdm_bundle_load(model, &b, &err)) {
        fprintf(stderr, "sdmorph samplers: %s\n", err.msg);
        return err.code ? err.code : SDM_EXIT_RUNTIME;
    }
    kind = sdm_sampler_auto(&b, &karras);
    printf("\nauto for %s: %s%s (its scheduler: %s)\n", model, sdm_sampler_name(kind), karras ? " with karras" : "",
           b.scheduler[0] ? b.scheduler : "none named");
    return SDM_EXIT_OK;
}
