/* The settings an image was made with, from the text its tool stored in
 * it (png_text.h): A1111's "parameters" (the prompt, "Negative prompt:",
 * then a line "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size:
 * 512x768, Clip skip: 2, ..."), read as its parse_generation_parameters
 * reads it; or ComfyUI's "prompt" graph where it is simple (one KSampler
 * whose positive and negative are CLIPTextEncode or CLIPTextEncodeSDXL
 * nodes with their text written in; or SDXL's base and refiner, read from
 * the base). Printed as a recipe, so a found image starts a scene. */
#ifndef SDM_IMAGE_PARAMS_H
#define SDM_IMAGE_PARAMS_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct {
    char *prompt, *negative; /* NULL where not given */
    char sampler[64]; /* the tool's name ("DPM++ 2M Karras", "euler_ancestral"), "" if none */
    char scheduler[32]; /* ComfyUI's, or A1111's "Schedule type" */
    int steps; /* 0: not given */
    double cfg; /* -1: not given */
    uint64_t seed;
    int has_seed;
    int width, height; /* 0: not given */
    int clip_skip; /* 0: not given */
    /* SDXL's size conditioning, [height, width] as diffusers orders it (the
     * recipe's original_size, crops_coords_top_left, target_size), where
     * ComfyUI's CLIPTextEncodeSDXL gave it; has_size 0: not given */
    int original_size[2], crops_coords_top_left[2], target_size[2];
    int has_size;
    /* CLIPTextEncodeSDXL's text_l where it is not its text_g (the prompt,
     * for both encoders): NULL where the same, or not given */
    char *prompt_l, *negative_l;
    char refiner[160]; /* where SDXL's refiner took over ("at step 20 of 25"; A1111's model and switch), "" if not */
    const char *tool; /* "A1111", "ComfyUI" */
} sdm_image_params;

/* A1111's parameters text; never fails but out of memory. */
int sdm_image_params_a1111(const char *text, sdm_image_params *out, sdm_error *err);
/* ComfyUI's prompt JSON: SDM_EXIT_USAGE where it is not JSON or not simple
 * (the message says what was missing). */
int sdm_image_params_comfyui(const char *json, sdm_image_params *out, sdm_error *err);
/* The recipe (YAML): the size, steps, sampler (any name or alias
 * `sdmorph samplers` lists) and SDXL's size conditioning as recipe keys,
 * then one keyframe with the prompt, negative, seed, guidance and clip
 * skip; comments say what had no equivalent. source names the image. */
void sdm_image_params_print(const sdm_image_params *p, const char *source, FILE *f);
void sdm_image_params_clear(sdm_image_params *p);

#endif
