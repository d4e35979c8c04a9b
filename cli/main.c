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
            "  render RECIPE... [-o OUT] [--model DIR] [--device cpu|cuda[:N]] [--devices LIST] [--batch N]\n"
            "         [--frames LIST] [--steps N] [--size WxH] [--seed N] [--sampler NAME] [--set KEY=VALUE] [--json]\n"
            "         [--image PATH [--strength S]]\n"
            "                      render recipes to their outputs (MP4, GIF, PNG sheet and stills)\n"
            "  render RECIPE --shard I/N|auto\n"
            "                      render one shard's frames into a segment (a cluster's array task)\n"
            "  join RECIPE SEGMENT...\n"
            "                      write the outputs from every shard's segment (no model, no GPU)\n"
            "  slurm RECIPE --shards N [--submit]\n"
            "                      write (and submit) a Slurm array job of N shards and its join job\n"
            "  check RECIPE        validate a recipe and print its frame plan (no model needed)\n"
            "  bridge A.yaml B.yaml [--frames N | --beats N] -o OUT\n"
            "                      render the transition from A's first frame to B's first frame\n"
            "  measure VIDEO...    print the pace of any MP4/GIF: adjacent-frame distances (SSIM)\n"
            "  info [MODEL]        what a model bundle holds: sizes, dtype, schedule, packages, fingerprint\n"
            "  tokenize [--model DIR] [--tokens] TEXT\n"
            "                      print the token ids (chunks, weights) a prompt becomes\n"
            "  import IMAGE.png    print a recipe from the settings A1111/ComfyUI stored in an image\n"
            "  samplers [--model DIR]\n"
            "                      list the samplers, their aliases and what each needs\n"
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
    if (!strcmp(argv[1], "bridge"))
        return sdm_cmd_bridge(argc - 1, argv + 1);
    if (!strcmp(argv[1], "measure"))
        return sdm_cmd_measure(argc - 1, argv + 1);
    if (!strcmp(argv[1], "join"))
        return sdm_cmd_join(argc - 1, argv + 1);
    if (!strcmp(argv[1], "slurm"))
        return sdm_cmd_slurm(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenize"))
        return sdm_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "import"))
        return sdm_cmd_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "samplers"))
        return sdm_cmd_samplers(argc - 1, argv + 1);
    fprintf(stderr, "sdmorph: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return SDM_EXIT_USAGE;
}
