/* libFuzzer target: `sdmorph import`'s readers on any bytes. The input is
 * read as a PNG (its "parameters" and "prompt" texts, png_text.h), and the
 * texts found, or else the input itself, as A1111's parameters and as
 * ComfyUI's graph (image_params.h), each then printed as a recipe. Checks
 * the headers' promises: a PNG error is a usage error with a message, a
 * text comes back NUL-terminated within the cap, A1111's reader never
 * fails, ComfyUI's fails only as a usage error, the same input reads the
 * same way twice.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "image_params.h"
#include "png_text.h"

static FILE *sink;

static void read_text(const char *text)
{
    sdm_image_params a, b;
    sdm_error err = { 0 };

    if (sdm_image_params_a1111(text, &a, &err) || sdm_image_params_a1111(text, &b, &err))
        abort();
    if (strcmp(a.prompt, b.prompt) || (!a.negative) != (!b.negative) || a.steps != b.steps || a.seed != b.seed)
        abort();
    sdm_image_params_print(&a, "fuzz", sink);
    sdm_image_params_clear(&a);
    sdm_image_params_clear(&b);
    if (sdm_image_params_comfyui(text, &a, &err)) {
        if (err.code != SDM_EXIT_USAGE || !err.msg[0] || a.prompt)
            abort();
        return;
    }
    if (!a.prompt || !a.negative)
        abort();
    sdm_image_params_print(&a, "fuzz", sink);
    sdm_image_params_clear(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *keys[] = { "parameters", "prompt" };
    char *text = NULL, *as_text;
    int found = 0;

    if (!sink)
        sink = fopen("/dev/null", "w");
    for (int k = 0; k < 2; k++) {
        sdm_error err = { 0 };
        if (sdm_png_text("fuzz.png", data, size, keys[k], &text, &err)) {
            if (err.code != SDM_EXIT_USAGE || !err.msg[0] || text)
                abort();
            continue;
        }
        if (!text)
            continue;
        if (strlen(text) > 2 * SDM_PNG_MAX_TEXT)
            abort();
        found = 1;
        read_text(text);
        free(text);
    }
    if (found)
        return 0;
    as_text = malloc(size + 1);
    if (!as_text)
        return 0;
    if (size)
        memcpy(as_text, data, size);
    as_text[size] = '\0';
    read_text(as_text);
    free(as_text);
    return 0;
}
