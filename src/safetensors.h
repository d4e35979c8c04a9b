/* A .safetensors file: an 8-byte little-endian header length, a JSON
 * header (name -> dtype, shape, data_offsets; an optional "__metadata__"
 * of strings), then the tensors' bytes. Everything the header says is
 * checked against the file before a byte of data is read, as the format's
 * reference implementation checks it: sizes without overflow, every
 * tensor's bytes = its element count × its dtype's size, inside the data,
 * the tensors laid end to end over the whole data without overlap. The
 * header is parsed with json-c. Reading converts F32, F16, BF16 and F64
 * tensors to float. */
#ifndef SDM_SAFETENSORS_H
#define SDM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The reference implementation's limit on the JSON header. */
#define SDM_ST_MAX_HEADER 100000000u
#define SDM_ST_MAX_DIMS 8

typedef enum {
    SDM_ST_BOOL,
    SDM_ST_U8,
    SDM_ST_I8,
    SDM_ST_F8_E5M2,
    SDM_ST_F8_E4M3,
    SDM_ST_I16,
    SDM_ST_U16,
    SDM_ST_F16,
    SDM_ST_BF16,
    SDM_ST_I32,
    SDM_ST_U32,
    SDM_ST_F32,
    SDM_ST_F64,
    SDM_ST_I64,
    SDM_ST_U64,
    SDM_ST_DTYPE_COUNT
} sdm_st_dtype;

const char *sdm_st_dtype_name(sdm_st_dtype d);
int sdm_st_dtype_from_str(const char *s, sdm_st_dtype *out); /* 0 on success */
size_t sdm_st_dtype_size(sdm_st_dtype d);

typedef struct {
    const char *name;
    sdm_st_dtype dtype;
    int ndim;
    int64_t shape[SDM_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t offset, nbytes; /* within the data section */
} sdm_st_tensor;

typedef struct sdm_safetensors sdm_safetensors;

/* Opens and checks a file; errors (SDM_EXIT_USAGE for a file that is not
 * valid safetensors, SDM_EXIT_RUNTIME for I/O) name the path and what is
 * wrong. The file stays open until sdm_safetensors_free. */
int sdm_safetensors_open(const char *path, sdm_safetensors **out, sdm_error *err);
/* The same over bytes in memory (kept by the caller while it is open);
 * name is used in messages. */
int sdm_safetensors_open_memory(const char *name, const void *data, size_t len, sdm_safetensors **out, sdm_error *err);

int sdm_safetensors_count(const sdm_safetensors *st);
/* Tensors in the order of their data. */
const sdm_st_tensor *sdm_safetensors_tensor(const sdm_safetensors *st, int i);
const sdm_st_tensor *sdm_safetensors_find(const sdm_safetensors *st, const char *name);
/* A "__metadata__" string, NULL if absent. */
const char *sdm_safetensors_metadata(const sdm_safetensors *st, const char *key);

/* The tensor's elements as float, into out (numel of them, n must be
 * that). F32, F16, BF16 and F64 only; other dtypes are an error naming it. */
int sdm_safetensors_read_f32(const sdm_safetensors *st, const sdm_st_tensor *t, float *out, uint64_t n, sdm_error *err);

void sdm_safetensors_free(sdm_safetensors **st);

#endif
