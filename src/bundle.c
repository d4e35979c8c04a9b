/* model.yaml: a small fixed schema read through libyaml's document API by
 * one table of (path, type, field). Every error names the file and, where
 * there is one, line:col. */
#include "bundle.h"

#include "enum_table.h"
#include "hash.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

static const sdm_enum_entry prediction_entries[] = { { "epsilon", SDM_PRED_EPSILON },
                                                     { "v_prediction", SDM_PRED_V },
                                                     { "v", SDM_PRED_V } };
static const sdm_enum_entry beta_entries[] = { { "scaled_linear", SDM_BETAS_SCALED_LINEAR },
                                               { "linear", SDM_BETAS_LINEAR } };
/* "none" is the default only: model.yaml names scales where there are FP8 products */
static const sdm_enum_entry fp8_entries[] = { { "tensor", SDM_FP8_TENSOR },
                                              { "row", SDM_FP8_ROW },
                                              { "static", SDM_FP8_STATIC } };
static const sdm_enum_table prediction_names = SDM_ENUM_TABLE(prediction_entries);
static const sdm_enum_table beta_names = SDM_ENUM_TABLE(beta_entries);
static const sdm_enum_table fp8_names = SDM_ENUM_TABLE(fp8_entries);

SDM_ENUM_FUNCTIONS(sdm_prediction, prediction_names) /* sdm_prediction_name, sdm_prediction_from_str */
SDM_ENUM_FUNCTIONS(sdm_fp8_scales, fp8_names) /* sdm_fp8_scales_name, sdm_fp8_scales_from_str */
SDM_ENUM_FUNCTIONS(sdm_beta_schedule, beta_names) /* sdm_beta_schedule_name, sdm_beta_schedule_from_str */

/* F_NAME: text of up to 255 bytes; F_SHA: up to 64 */
typedef enum {
    F_INT,
    F_DOUBLE,
    F_BOOL,
    F_STR16,
    F_STR32,
    F_PRED,
    F_FP8,
    F_BETAS,
    F_SPACING,
    F_FILE,
    F_NAME,
    F_SHA
} field_type;

typedef struct {
    const char *path; /* "text.hidden_size" */
    field_type type;
    size_t offset;
    int required;
} field;

#define OFF(m) offsetof(sdm_bundle, m)
static const field fields[] = {
    { "format", F_INT, (size_t)-1, 1 },
    { "family", F_STR16, OFF(family), 1 },
    { "prediction", F_PRED, OFF(prediction), 1 },
    { "dtype", F_STR16, OFF(dtype), 1 },
    { "latent_channels", F_INT, OFF(latent_channels), 1 },
    { "vae_scale", F_INT, OFF(vae_scale), 1 },
    { "scaling_factor", F_DOUBLE, OFF(scaling_factor), 1 },
    { "width", F_INT, OFF(width), 1 },
    { "height", F_INT, OFF(height), 1 },
    { "text.token_length", F_INT, OFF(token_length), 1 },
    { "text.hidden_size", F_INT, OFF(hidden_size), 1 },
    { "text.bos_id", F_INT, OFF(bos_id), 1 },
    { "text.eos_id", F_INT, OFF(eos_id), 1 },
    { "text.pad_id", F_INT, OFF(pad_id), 1 },
    { "text.layers", F_INT, OFF(text_layers), 0 },
    { "text.penultimate", F_BOOL, OFF(text_penultimate), 0 },
    { "text_2.hidden_size", F_INT, OFF(text2.hidden_size), 0 },
    { "text_2.pad_id", F_INT, OFF(text2.pad_id), 0 },
    { "text_2.layers", F_INT, OFF(text2.layers), 0 },
    { "text_2.pooled_size", F_INT, OFF(text2.pooled_size), 0 },
    { "force_zeros_for_empty_prompt", F_BOOL, OFF(force_zeros_for_empty_prompt), 0 },
    { "vae_dtype", F_STR16, OFF(vae_dtype), 0 },
    { "schedule.train_steps", F_INT, OFF(train_steps), 1 },
    { "schedule.beta_start", F_DOUBLE, OFF(beta_start), 1 },
    { "schedule.beta_end", F_DOUBLE, OFF(beta_end), 1 },
    { "schedule.beta_schedule", F_BETAS, OFF(beta_schedule), 1 },
    { "schedule.steps_offset", F_INT, OFF(steps_offset), 0 },
    { "schedule.set_alpha_to_one", F_BOOL, OFF(set_alpha_to_one), 0 },
    { "schedule.scheduler", F_NAME, OFF(scheduler), 0 },
    { "schedule.timestep_spacing", F_SPACING, OFF(timestep_spacing), 0 },
    { "schedule.use_karras_sigmas", F_BOOL, OFF(use_karras_sigmas), 0 },
    { "schedule.algorithm_type", F_STR32, OFF(algorithm_type), 0 },
    { "schedule.skip_prk_steps", F_BOOL, OFF(skip_prk_steps), 0 },
    { "schedule.original_inference_steps", F_INT, OFF(original_inference_steps), 0 },
    { "schedule.timestep_scaling", F_DOUBLE, OFF(timestep_scaling), 0 },
    { "files.text_encoder", F_FILE, OFF(text_encoder), 1 },
    { "files.unet", F_FILE, OFF(unet), 1 },
    { "files.vae_decoder", F_FILE, OFF(vae_decoder), 1 },
    { "files.vae_encoder", F_FILE, OFF(vae_encoder), 0 },
    { "files.vocab", F_FILE, OFF(vocab), 1 },
    { "files.merges", F_FILE, OFF(merges), 1 },
    { "files.token_embedding", F_FILE, OFF(token_embedding), 0 },
    { "files.text_encoder_2", F_FILE, OFF(text2.text_encoder), 0 },
    { "files.token_embedding_2", F_FILE, OFF(text2.token_embedding), 0 },
    /* optional: AOTInductor builds and the shapes they were compiled for */
    { "files.unet_aoti", F_FILE, OFF(unet_aoti.path), 0 },
    { "aoti.latent_height", F_INT, OFF(unet_aoti.latent_h), 0 },
    { "aoti.latent_width", F_INT, OFF(unet_aoti.latent_w), 0 },
    { "aoti.min_batch", F_INT, OFF(unet_aoti.min_batch), 0 },
    { "aoti.max_batch", F_INT, OFF(unet_aoti.max_batch), 0 },
    { "aoti.fp8", F_FP8, OFF(unet_aoti.fp8), 0 },
    { "files.vae_decoder_aoti", F_FILE, OFF(vae_aoti.path), 0 },
    { "aoti_vae.latent_height", F_INT, OFF(vae_aoti.latent_h), 0 },
    { "aoti_vae.latent_width", F_INT, OFF(vae_aoti.latent_w), 0 },
    { "aoti_vae.min_batch", F_INT, OFF(vae_aoti.min_batch), 0 },
    { "aoti_vae.max_batch", F_INT, OFF(vae_aoti.max_batch), 0 },
    /* optional: what the bundle was exported from (source.loras is a list, read apart) */
    { "source.exporter", F_NAME, OFF(source.exporter), 0 },
    { "source.checkpoint", F_NAME, OFF(source.checkpoint), 0 },
    { "source.checkpoint_sha256", F_SHA, OFF(source.checkpoint_sha256), 0 },
    { "source.vae", F_NAME, OFF(source.vae), 0 },
    { "source.vae_sha256", F_SHA, OFF(source.vae_sha256), 0 },
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

typedef struct {
    const char *file;
    sdm_bundle *b;
    unsigned char seen[N_FIELDS];
    sdm_error *err;
} loader;

static int fail_at(loader *L, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(loader *L, const yaml_node_t *n, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s:%lu:%lu: %s", L->file, (unsigned long)n->start_mark.line + 1,
                         (unsigned long)n->start_mark.column + 1, what);
}

static int set_field(loader *L, const field *f, const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    char *end = NULL;
    /* "format" has no member ((size_t)-1): adding that offset to a pointer
     * would be undefined behaviour, even unused */
    void *dst = f->offset == (size_t)-1 ? NULL : (char *)L->b + f->offset;

    if (n->type != YAML_SCALAR_NODE)
        return fail_at(L, n, "'%s' must be a single value%s", f->path, "");
    errno = 0;
    switch (f->type) {
    case F_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0 || x > 1000000000)
            return fail_at(L, n, "'%s' must be a non-negative integer, not '%s'", f->path, v);
        if (f->offset != (size_t)-1)
            *(int *)dst = (int)x;
        else if (x != 1)
            return fail_at(L, n, "unsupported bundle format '%s' (this sdmorph reads format 1)%s", v, "");
        break;
    }
    case F_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return fail_at(L, n, "'%s' must be a number, not '%s'", f->path, v);
        *(double *)dst = x;
        break;
    }
    case F_BOOL:
        if (!strcmp(v, "true"))
            *(int *)dst = 1;
        else if (!strcmp(v, "false"))
            *(int *)dst = 0;
        else
            return fail_at(L, n, "'%s' must be true or false, not '%s'", f->path, v);
        break;
    case F_STR16:
    case F_STR32:
        if (strlen(v) >= (f->type == F_STR16 ? 16u : 32u))
            return fail_at(L, n, "'%s' is too long: '%s'", f->path, v);
        strcpy((char *)dst, v);
        break;
    case F_NAME:
    case F_SHA:
        if (strlen(v) > (f->type == F_NAME ? 255u : 64u))
            return fail_at(L, n, "'%s' is too long (at most %s bytes)", f->path, f->type == F_NAME ? "255" : "64");
        strcpy((char *)dst, v);
        break;
    case F_PRED:
    case F_FP8:
    case F_BETAS:
    case F_SPACING: {
        const sdm_enum_table *t = f->type == F_PRED    ? &prediction_names
                                  : f->type == F_FP8   ? &fp8_names
                                  : f->type == F_BETAS ? &beta_names
                                                       : sdm_spacing_table();
        const char *key = strrchr(f->path, '.') ? strrchr(f->path, '.') + 1 : f->path;
        char names[128], what[192];
        int x;
        if (sdm_enum_parse(t, v, &x)) {
            sdm_enum_list(t, names, sizeof names);
            snprintf(what, sizeof what, "%s must be %s", key, names);
            return fail_at(L, n, "%s, not '%s'", what, v);
        }
        *(int *)dst = x;
        break;
    }
    case F_FILE:
        if (!*v || strchr(v, '/'))
            return fail_at(L, n, "'%s' must be a file name inside the bundle, not '%s'", f->path, v);
        {
            char joined[1280];
            if (snprintf(joined, sizeof joined, "%s/%s", L->b->dir, v) >= (int)sizeof joined)
                return fail_at(L, n, "path too long for '%s'%s", f->path, "");
            memcpy(dst, joined, sizeof joined);
        }
        break;
    }
    return 0;
}

static int copy_text(loader *L, const yaml_node_t *n, const char *key, char *dst, size_t size)
{
    if (n->type != YAML_SCALAR_NODE || strlen((const char *)n->data.scalar.value) >= size)
        return fail_at(L, n, "source.loras: '%s' must be a single value of at most %s bytes", key,
                       size > 65 ? "255" : "64");
    strcpy(dst, (const char *)n->data.scalar.value);
    return 0;
}

/* One entry of source.loras: file, scale, sha256. */
static int read_lora(loader *L, yaml_document_t *doc, const yaml_node_t *map, sdm_bundle_lora *lo)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(L, map, "source.loras: each entry must be a mapping (file, scale, sha256)%s%s", "", "");
    lo->scale = 1.0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        const char *key = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
        char *end = NULL;

        if (!v)
            return fail_at(L, map, "source.loras: expected a key%s%s", "", "");
        if (!strcmp(key, "file")) {
            if (copy_text(L, v, key, lo->file, sizeof lo->file))
                return -1;
        } else if (!strcmp(key, "sha256")) {
            if (copy_text(L, v, key, lo->sha256, sizeof lo->sha256))
                return -1;
        } else if (!strcmp(key, "scale") && v->type == YAML_SCALAR_NODE) {
            errno = 0;
            lo->scale = strtod((const char *)v->data.scalar.value, &end);
            if (errno || end == (const char *)v->data.scalar.value || *end)
                return fail_at(L, v, "source.loras: scale must be a number, not '%s'%s",
                               (const char *)v->data.scalar.value, "");
        } else {
            sdm_warn("%s:%lu:%lu: unknown key 'source.loras.%s' ignored", L->file,
                     (unsigned long)map->start_mark.line + 1, (unsigned long)map->start_mark.column + 1, key);
        }
    }
    return 0;
}

static int read_loras(loader *L, yaml_document_t *doc, const yaml_node_t *seq)
{
    sdm_bundle_source *s = &L->b->source;

    if (seq->type != YAML_SEQUENCE_NODE)
        return fail_at(L, seq, "source.loras must be a list%s%s", "", "");
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *n = yaml_document_get_node(doc, *it);
        if (s->n_loras == SDM_BUNDLE_MAX_LORAS)
            return fail_at(L, seq, "source.loras: more than %s LoRAs%s", "16", "");
        if (!n || read_lora(L, doc, n, &s->loras[s->n_loras]))
            return -1;
        s->n_loras++;
    }
    return 0;
}

/* Walks a mapping; prefix is "" at the top, "text." inside text:. */
static int walk_mapping(loader *L, yaml_document_t *doc, const yaml_node_t *map, const char *prefix)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(L, map, "expected a mapping of keys%s%s", "", "");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        char path[160];
        size_t i;

        if (!k || !v || k->type != YAML_SCALAR_NODE)
            return fail_at(L, map, "expected a key%s%s", "", "");
        if (snprintf(path, sizeof path, "%s%s", prefix, (const char *)k->data.scalar.value) >= (int)sizeof path)
            return fail_at(L, k, "key too long%s%s", "", "");
        if (v->type == YAML_MAPPING_NODE && !*prefix) {
            char sub[200];
            snprintf(sub, sizeof sub, "%s.", path);
            if (walk_mapping(L, doc, v, sub))
                return -1;
            continue;
        }
        if (!strcmp(path, "source.loras")) {
            if (read_loras(L, doc, v))
                return -1;
            continue;
        }
        for (i = 0; i < N_FIELDS; i++)
            if (!strcmp(fields[i].path, path))
                break;
        if (i == N_FIELDS) {
            /* Newer bundles may carry more; say so, don't refuse. */
            sdm_warn("%s:%lu:%lu: unknown key '%s' ignored", L->file, (unsigned long)k->start_mark.line + 1,
                     (unsigned long)k->start_mark.column + 1, path);
            continue;
        }
        if (L->seen[i])
            return fail_at(L, k, "'%s' given twice%s", path, "");
        L->seen[i] = 1;
        if (set_field(L, &fields[i], v))
            return -1;
    }
    return 0;
}

static int seen(const loader *L, const char *path)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].path, path))
            return L->seen[i];
    return 0;
}

/* An AOTInductor file (files.FILE_KEY) and its shapes (SECTION:) come
 * together; the shapes must make sense. */
static int check_aoti(loader *L, const char *file_key, const char *section, sdm_aoti_build *a)
{
    static const char *names[] = { "latent_height", "latent_width", "max_batch", "min_batch" };
    char key[64], min_key[64];
    int any = 0;

    snprintf(min_key, sizeof min_key, "%s.min_batch", section);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(key, sizeof key, "%s.%s", section, names[i]);
        any |= seen(L, key);
        if (a->path[0] && strcmp(key, min_key) && !seen(L, key))
            return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                                 "%s: files.%s needs '%s' (the shapes it was "
                                 "compiled for)",
                                 L->file, file_key, key);
    }
    any |= a->fp8 != SDM_FP8_NONE;
    if (!a->path[0]) {
        if (any)
            return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: '%s:' given without files.%s", L->file, section,
                                 file_key);
        return 0;
    }
    if (!seen(L, min_key))
        a->min_batch = 1;
    if (a->latent_h < 1 || a->latent_w < 1 || a->min_batch < 1 || a->max_batch < a->min_batch)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: %s: shapes out of range (latent %dx%d, batch %d..%d)",
                             L->file, section, a->latent_h, a->latent_w, a->min_batch, a->max_batch);
    return 0;
}

/* Real schedules (SD: betas 0.00085..0.012 over 1000 steps) keep some
 * signal to the end: alphas_cumprod 0.0047, noise sigma 15. Past
 * MIN_LAST_ALPHA (sigma 10^4) the sampler's numbers leave float range. */
#define MAX_TRAIN_STEPS 100000
#define MIN_LAST_ALPHA 1e-8

static int check_schedule(loader *L)
{
    const sdm_bundle *b = L->b;
    double *ac;
    double last;

    if (b->train_steps < 2 || b->train_steps > MAX_TRAIN_STEPS)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: 'schedule.train_steps' is %d; expected 2..%d", L->file,
                             b->train_steps, MAX_TRAIN_STEPS);
    if (!(b->beta_start > 0 && b->beta_start < 1))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: 'schedule.beta_start' is %g; expected a number above "
                             "0 and below 1 (SD: 0.00085)",
                             L->file, b->beta_start);
    if (!(b->beta_end > 0 && b->beta_end < 1))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: 'schedule.beta_end' is %g; expected a number above 0 "
                             "and below 1 (SD: 0.012)",
                             L->file, b->beta_end);
    if (b->beta_start > b->beta_end)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: 'schedule.beta_start' (%g) is above "
                             "'schedule.beta_end' (%g); the noise grows along a schedule",
                             L->file, b->beta_start, b->beta_end);
    ac = malloc(sizeof *ac * (size_t)b->train_steps);
    if (!ac)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    sdm_alphas_cumprod(b, ac);
    last = ac[b->train_steps - 1];
    free(ac);
    if (!(last >= MIN_LAST_ALPHA))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: 'schedule.beta_start' %g and 'schedule.beta_end' %g "
                             "over %d steps leave no signal (alphas_cumprod %.3g at the end, expected at least %g; "
                             "SD: 0.0047)",
                             L->file, b->beta_start, b->beta_end, b->train_steps, last, MIN_LAST_ALPHA);
    return 0;
}

/* The second text encoder's keys come together, with token embeddings
 * (export_sd.py 4 on); vae_dtype is float32 or float16. */
static int check_text2(loader *L)
{
    sdm_bundle *b = L->b;
    const sdm_bundle_text2 *t = &b->text2;
    int any = t->hidden_size || t->layers || t->pooled_size || t->text_encoder[0] || t->token_embedding[0];

    if (!b->vae_dtype[0])
        snprintf(b->vae_dtype, sizeof b->vae_dtype, "%s", b->dtype);
    if (strcmp(b->vae_dtype, "float32") && strcmp(b->vae_dtype, "float16"))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: vae_dtype '%s' is not float32 or float16", L->file,
                             b->vae_dtype);
    if (!any)
        return 0;
    if (t->hidden_size < 1 || t->layers < 1 || t->layers > 1000 || t->pooled_size < 1 ||
        t->pooled_size > t->hidden_size || !t->text_encoder[0] || !t->token_embedding[0] || !b->text_layers)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: a second text encoder needs text_2.hidden_size, text_2.layers, "
                             "text_2.pooled_size (at most hidden_size), files.text_encoder_2 and "
                             "files.token_embedding_2, and the first encoder's text.layers",
                             L->file);
    return 0;
}

static int check_values(loader *L)
{
    sdm_bundle *b = L->b;
    const char *paths[SDM_BUNDLE_MAX_FILES];
    int n_paths = sdm_bundle_files(b, paths);
    struct stat st;

    for (size_t i = 0; i < N_FIELDS; i++)
        if (fields[i].required && !L->seen[i])
            return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: missing key '%s'", L->file, fields[i].path);
    if (b->latent_channels < 1 || b->vae_scale < 1 || b->token_length < 2 || b->hidden_size < 1 ||
        b->scaling_factor <= 0 || b->width < 8 || b->height < 8)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: sizes out of range (latent_channels %d, "
                             "vae_scale %d, token_length %d, hidden_size %d, scaling_factor %g, width %d, height %d)",
                             L->file, b->latent_channels, b->vae_scale, b->token_length, b->hidden_size,
                             b->scaling_factor, b->width, b->height);
    if (b->text_layers < 0 || b->text_layers > 1000 || !b->text_layers != !b->token_embedding[0])
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME,
                             "%s: text.layers (1 to 1000) and files.token_embedding go "
                             "together (an encoder that takes token embeddings)",
                             L->file);
    if (check_schedule(L) || check_text2(L))
        return -1;
    if (check_aoti(L, "unet_aoti", "aoti", &b->unet_aoti) ||
        check_aoti(L, "vae_decoder_aoti", "aoti_vae", &b->vae_aoti))
        return -1;
    for (int i = 0; i < n_paths; i++)
        if (paths[i][0] && (stat(paths[i], &st) || !S_ISREG(st.st_mode)))
            return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "model file missing: %s (named in %s)", paths[i], L->file);
    return 0;
}

int sdm_bundle_load(const char *dir, sdm_bundle *out, sdm_error *err)
{
    char file[1200];
    FILE *f = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0, rc = -1;
    loader L;

    memset(out, 0, sizeof *out);
    memset(&L, 0, sizeof L);
    out->steps_offset = 1;
    out->skip_prk_steps = 1;
    out->original_inference_steps = 50;
    out->timestep_scaling = 10.0;
    L.file = file;
    L.b = out;
    L.err = err;
    if (snprintf(out->dir, sizeof out->dir, "%s", dir) >= (int)sizeof out->dir) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "model directory path too long: %s", dir);
        goto end;
    }
    snprintf(file, sizeof file, "%s/model.yaml", dir);
    f = fopen(file, "rb");
    if (!f) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot open model bundle %s: %s", file, strerror(errno));
        goto end;
    }
    if (!yaml_parser_initialize(&parser)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    have_parser = 1;
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%lu:%lu: %s", file, (unsigned long)parser.problem_mark.line + 1,
                      (unsigned long)parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "not valid YAML");
        goto end;
    }
    have_doc = 1;
    if (!yaml_document_get_root_node(&doc)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: empty file", file);
        goto end;
    }
    if (walk_mapping(&L, &doc, yaml_document_get_root_node(&doc), "") || check_values(&L))
        goto end;
    rc = 0;
end:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    if (f)
        fclose(f);
    return rc;
}

int sdm_bundle_files(const sdm_bundle *b, const char **out)
{
    const char *files[SDM_BUNDLE_MAX_FILES] = { b->text_encoder,
                                                b->unet,
                                                b->vae_decoder,
                                                b->vocab,
                                                b->merges,
                                                b->unet_aoti.path,
                                                b->vae_aoti.path,
                                                b->token_embedding,
                                                b->text2.text_encoder,
                                                b->text2.token_embedding,
                                                b->vae_encoder };

    memcpy(out, files, sizeof files);
    return SDM_BUNDLE_MAX_FILES;
}

int sdm_bundle_tokenizer(const sdm_bundle *b, sdm_tokenizer **out, sdm_error *err)
{
    sdm_tokenizer_params tp = sdm_tokenizer_default_params();

    tp.token_length = b->token_length;
    tp.pad_id = b->pad_id;
    tp.bos_id = b->bos_id; /* a vocabulary whose bos or eos differ is refused */
    tp.eos_id = b->eos_id;
    return sdm_tokenizer_load(b->vocab, b->merges, tp, out, err);
}

int sdm_bundle_is_xl(const sdm_bundle *b)
{
    return b->text2.hidden_size > 0;
}

int sdm_bundle_context_size(const sdm_bundle *b)
{
    return b->hidden_size + b->text2.hidden_size;
}

int sdm_alphas_cumprod(const sdm_bundle *b, double *out)
{
    double prod = 1.0;

    for (int i = 0; i < b->train_steps; i++) {
        double x = (double)i / (b->train_steps - 1), beta;
        if (b->beta_schedule == SDM_BETAS_SCALED_LINEAR) {
            double s = sqrt(b->beta_start) + x * (sqrt(b->beta_end) - sqrt(b->beta_start));
            beta = s * s;
        } else {
            beta = b->beta_start + x * (b->beta_end - b->beta_start);
        }
        prod *= 1.0 - beta;
        out[i] = prod;
    }
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

#define BUILTIN_MODEL "build/models/analytic"

/* DIR/build/models/analytic for the executable's DIR; 0, or -1 if unknown. */
static int beside_executable(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;

    if (n <= 0)
        return -1;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return snprintf(buf, len, "%s/" BUILTIN_MODEL, exe) < (int)len ? 0 : -1;
}

/* The built-in bundle: beside the executable, else in the working
 * directory (the first that is a folder; beside the executable when
 * neither is, so a message names where it was looked for). */
static int builtin_model(char *buf, size_t len)
{
    if (beside_executable(buf, len) == 0 && is_dir(buf))
        return 0;
    if (is_dir(BUILTIN_MODEL) || beside_executable(buf, len))
        return snprintf(buf, len, BUILTIN_MODEL) >= (int)len ? -1 : 0;
    return 0;
}

int sdm_bundle_dir_for(const char *opt, const char *recipe_model, char *buf, size_t len)
{
    const char *env = getenv("SDMORPH_MODEL");
    int n;

    if (opt)
        n = snprintf(buf, len, "%s", opt);
    else if (recipe_model)
        n = snprintf(buf, len, "%s", recipe_model);
    else if (env && *env)
        n = snprintf(buf, len, "%s", env);
    else
        return builtin_model(buf, len);
    return n < 0 || n >= (int)len ? -1 : 0;
}

void sdm_bundle_print_source(const sdm_bundle *b, FILE *f)
{
    const sdm_bundle_source *s = &b->source;

    if (s->exporter[0])
        fprintf(f, "  exported by: %s\n", s->exporter);
    if (s->checkpoint[0])
        fprintf(f, "  checkpoint: %s%s%s\n", s->checkpoint, s->checkpoint_sha256[0] ? "  sha256 " : "",
                s->checkpoint_sha256);
    if (s->vae[0])
        fprintf(f, "  vae: %s%s%s\n", s->vae, s->vae_sha256[0] ? "  sha256 " : "", s->vae_sha256);
    for (int i = 0; i < s->n_loras; i++)
        fprintf(f, "  lora: %s at scale %g%s%s\n", s->loras[i].file, s->loras[i].scale,
                s->loras[i].sha256[0] ? "  sha256 " : "", s->loras[i].sha256);
}

/* Hashes up to `max` bytes of f from offset `from` (max < 0: to the end). */
static uint64_t fnv_file(uint64_t h, FILE *f, long from, long max)
{
    unsigned char buf[65536];
    size_t n;

    if (fseek(f, from, SEEK_SET))
        return h;
    while (max != 0) {
        size_t want = max < 0 || max > (long)sizeof buf ? sizeof buf : (size_t)max;
        n = fread(buf, 1, want, f);
        if (n == 0)
            break;
        h = sdm_fnv1a64(h, buf, n);
        if (max > 0)
            max -= (long)n;
    }
    return h;
}

void sdm_file_fingerprint(const char *path, char *out, size_t len)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    uint64_t h = SDM_FNV1A64_OFFSET;

    if (f) {
        h = fnv_file(h, f, 0, -1);
        fclose(f);
    } else {
        h = 0;
    }
    snprintf(out, len, "%016llx", (unsigned long long)h);
}

double sdm_bundle_file_bytes(const char *path)
{
    struct stat st;

    return path[0] && !stat(path, &st) ? (double)st.st_size : 0;
}

void sdm_bundle_fingerprint(const sdm_bundle *b, char *out, size_t len)
{
    const long MiB = 1 << 20;
    const char *whole[] = { NULL, b->vocab, b->merges };
    const char *modules[] = { b->text_encoder,       b->unet,
                              b->vae_decoder,        b->unet_aoti.path,
                              b->vae_aoti.path,      b->token_embedding,
                              b->text2.text_encoder, b->text2.token_embedding,
                              b->vae_encoder };
    char yaml[1100];
    uint64_t h = SDM_FNV1A64_OFFSET;

    snprintf(yaml, sizeof yaml, "%s/model.yaml", b->dir);
    whole[0] = yaml;
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        FILE *f = fopen(whole[i], "rb");
        if (f) {
            h = fnv_file(h, f, 0, -1);
            fclose(f);
        }
    }
    for (size_t i = 0; i < sizeof modules / sizeof *modules; i++) {
        FILE *f = modules[i][0] ? fopen(modules[i], "rb") : NULL;
        long size;
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        h = sdm_fnv1a64_word(h, (uint64_t)size);
        h = fnv_file(h, f, 0, MiB);
        if (size > 2 * MiB)
            h = fnv_file(h, f, size - MiB, MiB);
        fclose(f);
    }
    snprintf(out, len, "%016llx", (unsigned long long)h);
}
