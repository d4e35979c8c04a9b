/* A model bundle: a directory with model.yaml, the three TorchScript
 * modules and the tokenizer files (and optionally the VAE encoder, for
 * image starts, and AOTInductor builds of the UNet and the VAE decoder). This reads and checks model.yaml. */
#ifndef SDM_BUNDLE_H
#define SDM_BUNDLE_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"
#include "spacing.h"
#include "tokenizer.h"

typedef enum { SDM_PRED_EPSILON, SDM_PRED_V, SDM_PRED_COUNT } sdm_prediction;
const char *sdm_prediction_name(sdm_prediction p);
int sdm_prediction_from_str(const char *s, sdm_prediction *out);

typedef enum { SDM_BETAS_SCALED_LINEAR, SDM_BETAS_LINEAR, SDM_BETAS_COUNT } sdm_beta_schedule;
const char *sdm_beta_schedule_name(sdm_beta_schedule b);
int sdm_beta_schedule_from_str(const char *s, sdm_beta_schedule *out);

/* The scales of a UNet package's FP8 products (export_sd.py --aoti-fp8):
 * none, or the inputs' per tensor, per row, or static (calibrated at export). */
typedef enum { SDM_FP8_NONE, SDM_FP8_TENSOR, SDM_FP8_ROW, SDM_FP8_STATIC, SDM_FP8_COUNT } sdm_fp8_scales;
const char *sdm_fp8_scales_name(sdm_fp8_scales s);
int sdm_fp8_scales_from_str(const char *s, sdm_fp8_scales *out);

/* A module compiled by AOTInductor for one latent size and a range of
 * batch sizes: its file ("" if the bundle has none) and, from model.yaml,
 * latent_height, latent_width, min_batch (default 1), max_batch. */
typedef struct {
    char path[1280];
    int latent_h, latent_w, min_batch, max_batch;
    sdm_fp8_scales fp8; /* the UNet's aoti.fp8: its attention projections and feed-forward layers
                           run FP8 products (opt-in: its frames differ from the TorchScript UNet's) */
} sdm_aoti_build;

/* Where a bundle came from (model.yaml's optional source: section, written
 * by the exporter): "" where not recorded. */
#define SDM_BUNDLE_MAX_LORAS 16
typedef struct {
    char file[256];
    double scale;
    char sha256[65];
} sdm_bundle_lora;

typedef struct {
    char exporter[256]; /* "export_sd.py 2" */
    char checkpoint[256], checkpoint_sha256[65];
    char vae[256], vae_sha256[65]; /* a VAE that replaced the checkpoint's */
    sdm_bundle_lora loras[SDM_BUNDLE_MAX_LORAS]; /* fused into the weights, in order */
    int n_loras;
} sdm_bundle_source;

/* SDXL's second text encoder (model.yaml's text_2: and files.*_2): the
 * same tokens as the first (bos, eos, token_length), padded with its own
 * pad id; its hidden states are concatenated to the first's on the feature
 * axis, and it gives the pooled embedding too. hidden_size 0: none. */
typedef struct {
    int hidden_size; /* 1280 */
    int pad_id; /* 0 ("!") */
    int layers; /* 32 */
    int pooled_size; /* the projected pooled embedding: 1280 */
    char text_encoder[1280], token_embedding[1280];
} sdm_bundle_text2;

typedef struct {
    char dir[1024];
    char family[16]; /* "sd1", "sd2", "sdxl", "analytic", "analytic-sdxl" */
    sdm_prediction prediction;
    int latent_channels; /* 4 */
    int vae_scale; /* pixels per latent cell: 8 */
    double scaling_factor; /* VAE latent scaling: 0.18215 */
    int width, height; /* default image size */
    int token_length; /* 77 */
    int hidden_size; /* text embedding width: 768 for SD 1.x */
    int bos_id, eos_id, pad_id;
    int text_layers; /* text.layers: the encoder takes token embeddings and
                                   gives every layer (clip skip, embeddings); 0: an older
                                   bundle, ids in, last layer out */
    int text_penultimate; /* text.penultimate: clip_skip 1 is the hidden state
                             before the last layer, as SDXL reads it (the
                             encoders then give their layers without the final norm) */
    /* SDXL (text_2.hidden_size > 0): a second encoder, a pooled embedding
     * and six time ids, which the UNet takes after the text embedding */
    sdm_bundle_text2 text2;
    int force_zeros_for_empty_prompt; /* an empty negative prompt is zeros, not "" encoded */
    char vae_dtype[16]; /* what the VAE decoder computes in: dtype unless model.yaml's vae_dtype says */
    /* training noise schedule */
    int train_steps; /* 1000 */
    double beta_start, beta_end;
    sdm_beta_schedule beta_schedule;
    int steps_offset; /* 1 for SD */
    int set_alpha_to_one; /* DDIM's final alpha: 1, or alphas_cumprod[0] */
    /* the checkpoint's scheduler config, for `sampler: auto` and the samplers' keys */
    char scheduler[256]; /* its class, "PNDMScheduler"; "": none recorded (auto is ddim) */
    sdm_spacing timestep_spacing; /* DEFAULT where the config has none */
    int use_karras_sigmas;
    char algorithm_type[32]; /* DPMSolverMultistepScheduler's: "sde-dpmsolver++" is dpmpp_2m_sde */
    int skip_prk_steps; /* PNDM: 1 (PLMS only, as SD ships it) */
    int original_inference_steps; /* LCM: 50 */
    double timestep_scaling; /* LCM: 10 */
    char dtype[16]; /* "float32" / "float16": what the .pt files hold */
    /* file paths, already joined with dir */
    char text_encoder[1280], unet[1280], vae_decoder[1280], vocab[1280], merges[1280];
    char token_embedding[1280]; /* files.token_embedding, with text.layers; else "" */
    char vae_encoder[1280]; /* files.vae_encoder: image -> latent moments (image starts); "": none */
    /* Optional: the UNet and the VAE decoder compiled by AOTInductor
     * (files.unet_aoti with aoti:, files.vae_decoder_aoti with aoti_vae:) */
    sdm_aoti_build unet_aoti, vae_aoti;
    sdm_bundle_source source;
} sdm_bundle;

/* Reads dir/model.yaml; every file it names must exist. Errors name the path
 * (and line:col for yaml), and for a value out of range, model.yaml and the key. */
int sdm_bundle_load(const char *dir, sdm_bundle *out, sdm_error *err);

/* 1 where the bundle is SDXL-shaped: a second text encoder, pooled
 * embedding and time ids (sdm_bundle_text2). */
int sdm_bundle_is_xl(const sdm_bundle *b);
/* The width of the text embedding the UNet takes: hidden_size, plus the
 * second encoder's where there is one. */
int sdm_bundle_context_size(const sdm_bundle *b);
/* The tokenizer the bundle's prompts are read with: its vocab and merges,
 * its token length, pad, bos and eos ids (a vocabulary that disagrees is
 * refused; the second encoder's padding is the text encoder's to apply). */
int sdm_bundle_tokenizer(const sdm_bundle *b, sdm_tokenizer **out, sdm_error *err);
/* The number of SDXL time ids: 6 (original size, crop corner, target size). */
#define SDM_TIME_IDS 6

/* Every file the bundle names ("" where it names none, at most
 * SDM_BUNDLE_MAX_FILES): its modules, tables, tokenizer files, packages. */
#define SDM_BUNDLE_MAX_FILES 11
int sdm_bundle_files(const sdm_bundle *b, const char **out);

/* The training schedule's alphas_cumprod (train_steps values), in double. */
int sdm_alphas_cumprod(const sdm_bundle *b, double *out);

/* The bundle a command uses: `opt` (--model) if given, else the recipe's
 * model (the recipe loader has made a relative one relative to the
 * recipe's folder), else $SDMORPH_MODEL, else the built-in analytic model:
 * build/models/analytic beside the executable, else in the working
 * directory. recipe_model may be NULL. 0, or -1 if the path does not fit len. */
int sdm_bundle_dir_for(const char *opt, const char *recipe_model, char *buf, size_t len);
/* The source: section for people, one "  key: value" line each (nothing
 * where the bundle records none), e.g. for `sdmorph info`. */
void sdm_bundle_print_source(const sdm_bundle *b, FILE *f);

/* A short fingerprint of the bundle's contents (16 hex digits), stored in
 * every output so a user can tell which model made a loop: FNV-1a over
 * model.yaml, the tokenizer files, and each module file's size with its
 * first and last MiB (whole multi-GB files would cost seconds a render). */
void sdm_bundle_fingerprint(const sdm_bundle *b, char *out, size_t len);
/* The size of one of the bundle's module files (a path model.yaml names),
 * about what its weights take on the device: TorchScript and AOTInductor
 * files hold little else. 0 where it cannot be read. */
double sdm_bundle_file_bytes(const char *path);

/* FNV-1a 64 of a whole file, as 16 hex digits ("0000000000000000" if unreadable). */
void sdm_file_fingerprint(const char *path, char *out, size_t len);

#endif
