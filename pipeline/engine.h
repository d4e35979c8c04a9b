/* The loaded model: bundle description, tokenizer and the three modules on
 * one device, with the text embeddings of the prompts seen so far. The
 * stages the render loop calls: embed, denoise, decode. */
#ifndef SDM_ENGINE_H
#define SDM_ENGINE_H

#include <signal.h>

#include "bundle.h"
#include "denoiser.h"
#include "sampler.h"
#include "tokenizer.h"
#include "torch_api.h"

typedef struct sdm_engine sdm_engine;

int sdm_engine_open(const char *model_dir, sdm_device dev, sdm_engine **out, sdm_error *err);
const sdm_bundle *sdm_engine_bundle(const sdm_engine *e);
sdm_device sdm_engine_device(const sdm_engine *e);
const sdm_tokenizer *sdm_engine_tokenizer(const sdm_engine *e);
/* The unet module (tests call its analytic `target` method). */
sdm_module *sdm_engine_unet(sdm_engine *e);

/* Captures the whole sampling loop of the warm-up's batch shape as one
 * CUDA graph and replays it for every batch of that shape (CUDA builds
 * with CUDA graphs; other shapes run step by step). */
void sdm_engine_set_graphs(sdm_engine *e, int on);

/* The bundle's AOTInductor builds (files.unet_aoti, files.vae_decoder_aoti),
 * off by default: on=1 loads each (CUDA only, builds that have
 * AOTInductor) and checks it against its TorchScript module on one input;
 * where that fails, a warning and TorchScript serves every call. Each runs
 * the calls of the shapes it was compiled for. on=0 frees them. */
void sdm_engine_set_aoti(sdm_engine *e, int on);
/* 1 where a UNet call on n latents of latent_h×latent_w runs the
 * AOTInductor UNet: the shape it was compiled for (aoti: in model.yaml). */
int sdm_engine_uses_aoti(const sdm_engine *e, int n, int latent_h, int latent_w);
/* 1 where the AOTInductor UNet is loaded (and passed its check). */
int sdm_engine_has_aoti(const sdm_engine *e);

/* Text embedding [1,L,H] (float32) of a prompt; cached, owned by the engine.
 * A prompt longer than the token length is cut, with one warning. */
int sdm_engine_embed(sdm_engine *e, const char *prompt, const sdm_tensor **out, sdm_error *err);

/* One batch of B frames through the whole sampler loop (sdm_denoiser_run).
 *   x      [B,C,h,w] initial noise (float32, already · init_sigma)
 *   cond   [B,L,H], uncond [B,L,H] (NULL when no frame is guided)
 *   g      B guidance scales (≤ 1: conditional only, as diffusers does)
 *   noise  per-step noise source for samplers that need it (NULL otherwise)
 *   stop   polled between steps (not inside a replayed graph); non-zero
 *          abandons the batch (returns 1)
 * On success *out is the final latent [B,C,h,w] float32. */
int sdm_engine_denoise(sdm_engine *e, const sdm_schedule *s, const sdm_tensor *x,
                       const sdm_tensor *cond, const sdm_tensor *uncond, const double *g,
                       sdm_step_noise_fn noise, void *noise_user, volatile sig_atomic_t *stop,
                       sdm_tensor **out, sdm_error *err);

/* Runs the UNet and VAE a few times at the batch shape the render will
 * use, so TorchScript's profiling runs and cuDNN's first calls are not paid
 * by the first frames, then (graphs on) captures the sampling loop of
 * schedule s at that shape. CUDA only; a no-op on the CPU. */
int sdm_engine_warmup(sdm_engine *e, const sdm_schedule *s, int batch, int latent_h, int latent_w, int guided,
                      sdm_error *err);

/* Latents [B,C,h,w] → frames [B,H,W,3] uint8 on the device, decoded
 * SDM_DECODE_CHUNK frames per VAE call (its activations at full image size
 * dominate peak memory). */
#define SDM_DECODE_CHUNK 8

int sdm_engine_decode(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err);

void sdm_engine_free(sdm_engine **e);

/* A torch failure as an sdm_error, with a hint on out-of-memory. */
int sdm_engine_torch_error(sdm_error *err, sdm_torch_status st, const char *what);

#endif
