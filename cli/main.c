/* sdmorph: the command line. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "sdmorph %s\n"
            "usage: sdmorph COMMAND [options]\n"
            "\n"
            "  render RECIPE... [-o OUT] [--model DIR] [--device cpu|cuda[:N]] [--batch N] [--frames LIST]\n"
            "         [--steps N] [--size WxH] [--seed N] [--sampler NAME] [--set KEY=VALUE] [--json]\n"
            "                      render recipes to their outputs (MP4, GIF, PNG sheet and stills)\n"
            "  check RECIPE        validate a recipe and print its frame plan (no model needed)\n"
            "  info [MODEL]        what a model bundle holds: sizes, dtype, schedule, packages, fingerprint\n"
            "  tokenize [--model DIR] [--tokens] TEXT\n"
            "                      print the token ids (chunks, weights) a prompt becomes\n"
            "  import IMAGE.png    print a recipe from the settings A1111/ComfyUI stored in an image\n"
            "\n"
            "  --version           print the version\n"
            "\n"
            "Run `sdmorph COMMAND --help` for a command's options; `man sdmorph` for all of them.\n",
            SDM_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return SDM_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("sdmorph %s\n", SDM_VERSION);
        return SDM_EXIT_OK;
    }
    if (!strcmp(argv[1], "info"))
        return sdm_cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "render"))
        return sdm_cmd_render(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check"))
        return sdm_cmd_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenize"))
        return sdm_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "import"))
        return sdm_cmd_import(argc - 1, argv + 1);
    fprintf(stderr, "sdmorph: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return SDM_EXIT_USAGE;
}
