/* The loaded model: bundle description, tokenizer and the three modules
 * (with the bundle's AOTInductor builds where they load) on one device,
 * and the text embeddings of the prompts seen so far. What the render asks
 * of it: embeddings, the UNet call its denoiser makes, the warm-up, the
 * decode. The sampling loop itself is the denoiser's (denoiser.h). */
#ifndef SDM_ENGINE_H
#define SDM_ENGINE_H

#include "bundle.h"
#include "error.h"
#include "text_encoder.h"
#include "tokenizer.h"
#include "torch_api.h"

typedef struct sdm_engine sdm_engine;

int sdm_engine_open(const char *model_dir, sdm_device dev, sdm_engine **out, sdm_error *err);
/* Where the engine's loading went, seconds on the host's clock (a load
 * returns when its weights are on the device; a check reads back). */
typedef struct {
    double runtime; /* model.yaml read, libtorch and its CUDA libraries loaded */
    double text; /* tokenizer, text encoders, the bundle's embeddings */
    double unet, vae; /* the TorchScript UNet and VAE decoder */
    double check; /* the modules' first calls, checked */
    double aoti_unet, aoti_vae; /* AOTInductor builds: each loaded and checked against TorchScript */
} sdm_engine_loading;
sdm_engine_loading sdm_engine_loading_split(const sdm_engine *e);
const sdm_bundle *sdm_engine_bundle(const sdm_engine *e);
sdm_device sdm_engine_device(const sdm_engine *e);
/* What the modules compute in (model.yaml's dtype). */
sdm_dtype sdm_engine_dtype(const sdm_engine *e);
const sdm_tokenizer *sdm_engine_tokenizer(const sdm_engine *e);

/* The bundle's AOTInductor builds (files.unet_aoti, files.vae_decoder_aoti),
 * off by default: on=1 loads each (CUDA only, builds that have
 * AOTInductor) and checks it against its TorchScript module on one input;
 * where that fails, a warning and TorchScript serves every call. Each runs
 * the calls of the shapes it was compiled for. on=0 frees them: release a
 * loop captured with the package first (sdm_denoiser_release). */
void sdm_engine_set_aoti(sdm_engine *e, int on);
/* 1 where a UNet call on n latents of latent_h×latent_w, with text
 * embeddings of `tokens` rows, runs the AOTInductor UNet: the shape it was
 * compiled for (aoti: in model.yaml; one prompt chunk, token_length rows). */
int sdm_engine_uses_aoti(const sdm_engine *e, int n, int latent_h, int latent_w, int tokens);
/* 1 where the AOTInductor UNet is loaded (and passed its check). */
int sdm_engine_has_aoti(const sdm_engine *e);
/* Lets the TorchScript UNet go (SDXL's is 4.8 GiB in float16), for a render
 * whose calls the AOTInductor one all takes; a call of another shape loads
 * it again. Never while a captured loop holds it: a render releases it
 * before its warm-up. */
void sdm_engine_release_unet(sdm_engine *e);
/* 1 where the TorchScript UNet is loaded (open, or since a call needed it). */
int sdm_engine_unet_loaded(const sdm_engine *e);

/* Text embedding [1, chunks·token_length, H] (float32) of a prompt, as
 * text_encoder.h makes it; cached, owned by the engine. */
int sdm_engine_embed_opts(sdm_engine *e, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                          sdm_error *err);
/* The same, and where the bundle has one (SDXL) the pooled embedding
 * [1, P] (float32; NULL otherwise). */
int sdm_engine_embed_pooled(sdm_engine *e, const char *prompt, const sdm_text_opts *o, const sdm_tensor **out,
                            const sdm_tensor **pooled, sdm_error *err);
/* The same with the recipe's defaults: A1111 weighting, the last layer, the
 * chunks the prompt needs. */
int sdm_engine_embed(sdm_engine *e, const char *prompt, const sdm_tensor **out, sdm_error *err);
/* The text encoder: chunks, layers, embeddings (text_encoder.h). */
sdm_text_encoder *sdm_engine_text(sdm_engine *e);
/* Lets the text encoders go once a render's texts are encoded (the
 * conditioner encodes them all as it is made): their memory goes to the
 * UNet's batches and the decode, and on CUDA back to the device, so the
 * automatic batch counts it. A prompt not yet encoded loads them again. */
void sdm_engine_release_text(sdm_engine *e);

/* One UNet call, as a denoiser makes it (sdm_unet_fn in denoiser.h, with
 * the engine as user): args x [n,C,h,w] float32, t [n] float32, emb
 * [n,L,H], and for SDXL pooled [n,P] and time ids [n,6]; *out [n,C,h,w]
 * float32. Runs the AOTInductor UNet where it was compiled for the shape,
 * else TorchScript. */
/* The UNet's inputs: 3, or 5 for SDXL (sdm_engine_unet_call). */
int sdm_engine_unet_args(const sdm_engine *e);
int sdm_engine_unet_call(void *engine, sdm_tensor *const *args, sdm_tensor **out, sdm_error *err);

/* Runs the UNet and VAE a few times at the batch shape the render will use
 * (`batch` latents of latent_h×latent_w, twice as many UNet inputs where
 * guided; text embeddings of `tokens` rows), so TorchScript's profiling
 * runs and cuDNN's first calls are not paid by the first frames, and a
 * capture of the sampling loop (sdm_denoiser_capture, next) records the
 * optimized graph. CUDA only; a no-op on the CPU. */
int sdm_engine_warmup(sdm_engine *e, int batch, int latent_h, int latent_w, int guided, int tokens, sdm_error *err);

/* Latents [B,C,h,w] → frames [B,H,W,3] uint8 on the device, decoded
 * sdm_decode_chunk frames per VAE call (its activations at full image size
 * dominate peak memory). */
int sdm_engine_decode(sdm_engine *e, const sdm_tensor *latents, sdm_tensor **rgb, sdm_error *err);

/* The most frames one VAE call decodes. */
#define SDM_DECODE_CHUNK 8

/* Frames per VAE call for latents of latent_h×latent_w decoded in a dtype of
 * elem_bytes: as many as keep the decoder's activations to those of 8 frames
 * at 512² in float16 (about 4 GiB), at least 1. SDXL's float32 decode at
 * 1024² (37 GiB for 8 frames at once) thus runs a frame at a time. The
 * exporter compiles the AOTInductor decoder for the same count
 * (export_sd.py, decode_chunk). */
int sdm_decode_chunk(int latent_h, int latent_w, int elem_bytes);

/* Frames per UNet call that fit free_bytes of device memory (70% of it), 1
 * to 16. SD at 512² takes about 1.2 GB a guided frame at peak, its decode
 * of 8 frames included. SDXL (xl) about 0.64 GiB a guided frame at 1024²
 * beside a fixed 6 GiB, most of it the float32 decode of a frame a call:
 * a batch of 8 peaked at 15.2 GiB on an H100, weights and CUDA's context
 * included (bench/README, 2026-12-08). Both scale with the pixels. */
int sdm_batch_for_memory(double free_bytes, int xl, int width, int height);

void sdm_engine_free(sdm_engine **e);

#endif
