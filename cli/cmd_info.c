/* sdmorph info MODEL: what a bundle's model.yaml says, read as a render
 * reads it (every file it names checked), and its fingerprint; no module
 * loaded. */
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "error.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph info [MODEL]\n"
            "\n"
            "Prints what the model bundle MODEL (a folder with model.yaml; default: as `render`\n"
            "finds it) holds: family, dtype, image and latent sizes, prediction type and noise\n"
            "schedule, its files and AOTInductor packages with their sizes and the shapes they\n"
            "take, what the weights take on the device while sampling, its fingerprint (the one\n"
            "every output records) and where it came from.\n"
            "Exit status: 0, 1 the bundle cannot be read, 2 bad usage.\n");
}

/* bytes as "1.6 GiB", "320.0 MiB" or "12.0 KiB". */
static const char *size_str(double bytes, char *buf, size_t len)
{
    const double KiB = 1024, MiB = KiB * KiB, GiB = MiB * KiB;

    if (bytes >= GiB)
        snprintf(buf, len, "%.1f GiB", bytes / GiB);
    else if (bytes >= MiB)
        snprintf(buf, len, "%.1f MiB", bytes / MiB);
    else
        snprintf(buf, len, "%.1f KiB", bytes / KiB);
    return buf;
}

/* "  what:   path (size)" */
static void print_file(const char *what, const char *path)
{
    char size[32];

    printf("  %-15s %s (%s)\n", what, path, size_str(sdm_bundle_file_bytes(path), size, sizeof size));
}

static void print_aoti(const char *what, const sdm_aoti_build *a)
{
    if (!a->path[0]) {
        printf("  %-15s none\n", what);
        return;
    }
    print_file(what, a->path);
    printf("  %-15s latents %dx%d, batch %d..%d\n", "", a->latent_h, a->latent_w, a->min_batch, a->max_batch);
    if (a->fp8)
        printf(
            "  %-15s FP8 products (%s scales) in attention projections and feed-forward layers: its frames "
            "differ from the TorchScript UNet's\n",
            "", sdm_fp8_scales_name(a->fp8));
}

/* What the weights take on the device as a render samples: the UNet
 * (TorchScript's, or an AOTInductor package of about its size where that
 * takes every batch) and the VAE decoder; the text encoders only until the
 * render's texts are encoded. */
static void print_weights(const sdm_bundle *b)
{
    double text = sdm_bundle_file_bytes(b->text_encoder) +
                  (sdm_bundle_is_xl(b) ? sdm_bundle_file_bytes(b->text2.text_encoder) : 0);
    double sampling = sdm_bundle_file_bytes(b->unet) + sdm_bundle_file_bytes(b->vae_decoder);
    char s1[32], s2[32];

    printf(
        "  weights:        %s on the device while sampling (UNet, VAE decoder); the text encoders' %s only "
        "while a render encodes its texts\n",
        size_str(sampling, s1, sizeof s1), size_str(text, s2, sizeof s2));
}

static void print_bundle(const sdm_bundle *b)
{
    char fp[32];

    sdm_bundle_fingerprint(b, fp, sizeof fp);
    printf("model %s\n", b->dir);
    printf("  family:         %s\n  dtype:          %s\n", b->family, b->dtype);
    printf("  image size:     %dx%d (default), multiples of %d\n", b->width, b->height, b->vae_scale);
    printf("  latents:        %d channels, 1/%d of the image, scaling factor %g\n", b->latent_channels, b->vae_scale,
           b->scaling_factor);
    printf("  text:           %d tokens, %d wide (bos %d, eos %d, pad %d)%s\n", b->token_length, b->hidden_size,
           b->bos_id, b->eos_id, b->pad_id, b->text_penultimate ? ", the layer before the last" : "");
    if (sdm_bundle_is_xl(b))
        printf(
            "  text 2:         %d wide (pad %d), pooled embedding %d wide; UNet context %d wide, 6 time ids\n"
            "  empty negative: %s\n",
            b->text2.hidden_size, b->text2.pad_id, b->text2.pooled_size, sdm_bundle_context_size(b),
            b->force_zeros_for_empty_prompt ? "zeros (force_zeros_for_empty_prompt)" : "the empty prompt encoded");
    printf("  vae decoder in: %s%s\n", b->vae_dtype,
           strcmp(b->vae_dtype, b->dtype) ? " (not the bundle's dtype: SDXL's VAE overflows in float16)"
           : !strcmp(b->vae_dtype, "float16") && sdm_bundle_is_xl(b) ? " (an fp16-fixed VAE)"
                                                                     : "");
    printf("  prediction:     %s\n", sdm_prediction_name(b->prediction));
    printf("  noise schedule: %d training steps, %s betas %g..%g, steps offset %d, DDIM final alpha %s\n",
           b->train_steps, sdm_beta_schedule_name(b->beta_schedule), b->beta_start, b->beta_end, b->steps_offset,
           b->set_alpha_to_one ? "1" : "alphas_cumprod[0]");
    print_file("text encoder:", b->text_encoder);
    if (sdm_bundle_is_xl(b))
        print_file("text encoder 2:", b->text2.text_encoder);
    print_file("unet:", b->unet);
    print_file("vae decoder:", b->vae_decoder);
    if (b->vae_encoder[0])
        print_file("vae encoder:", b->vae_encoder);
    else
        printf("  vae encoder:    none (no image-to-image starts)\n");
    print_aoti("unet (aoti):", &b->unet_aoti);
    print_aoti("vae (aoti):", &b->vae_aoti);
    print_weights(b);
    printf("  fingerprint:    %s\n", fp);
    printf("source:%s\n", b->source.exporter[0] || b->source.checkpoint[0] || b->source.n_loras ? "" : " not recorded");
    sdm_bundle_print_source(b, stdout);
}

int sdm_cmd_info(int argc, char **argv)
{
    const char *model = NULL;
    char dir[4096];
    sdm_bundle b;
    sdm_error err = { 0 };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return SDM_EXIT_OK;
        }
        if ((argv[i][0] == '-' && argv[i][1]) || model) {
            fprintf(stderr, "sdmorph info: %s '%s'\n", model ? "one model at a time, not also" : "unknown option",
                    argv[i]);
            usage(stderr);
            return SDM_EXIT_USAGE;
        }
        model = argv[i];
    }
    if (sdm_bundle_dir_for(model, NULL, dir, sizeof dir)) {
        fprintf(stderr, "sdmorph info: the model's path is too long\n");
        return SDM_EXIT_USAGE;
    }
    if (sdm_bundle_load(dir, &b, &err)) {
        fprintf(stderr, "sdmorph: %s\n", err.msg);
        return SDM_EXIT_RUNTIME;
    }
    print_bundle(&b);
    return fflush(stdout) ? SDM_EXIT_RUNTIME : SDM_EXIT_OK;
}
