#include "segment.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "paths.h"

#define SEGMENT_FORMAT "sdmorph-segment"

/* The shard's plan as the sidecar writes it, parsed to be one field. */
static json_object *plan_object(const sdm_recipe *r, const sdm_plan *plan)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    json_object *o = NULL;

    if (!f)
        return NULL;
    if (sdm_plan_write_json(plan, r, f) == 0 && fclose(f) == 0)
        o = json_tokener_parse(text);
    else
        fclose(f);
    free(text);
    return o;
}

/* What the shard's render used, beside its frames: the join's sidecar says it. */
static void add_used(json_object *m, const sdm_sidecar_used *u)
{
    json_object *ids = NULL;

    if (!u)
        return;
    json_object_object_add(m, "device", json_object_new_string(u->device ? u->device : ""));
    json_object_object_add(m, "dtype", json_object_new_string(u->dtype ? u->dtype : ""));
    json_object_object_add(m, "batch", json_object_new_int(u->batch));
    if (u->vae_dtype)
        json_object_object_add(m, "vae_dtype", json_object_new_string(u->vae_dtype));
    if (u->sampler_auto)
        json_object_object_add(m, "sampler_auto", json_object_new_string(u->sampler_auto));
    if (u->time_ids && (ids = json_object_new_array())) {
        for (int i = 0; i < 6; i++)
            json_object_array_add(ids, json_object_new_double(u->time_ids[i]));
        json_object_object_add(m, "time_ids", ids);
    }
}

int sdm_segment_write(const char *path, const char *target, const sdm_segment_info *info, const sdm_recipe *r,
                      const sdm_plan *plan, const sdm_sidecar_used *used, sdm_error *err)
{
    const char *texts = used ? used->texts : NULL;
    json_object *m = json_object_new_object(), *sidecar = plan_object(r, plan);
    char frames[SDM_SEGMENT_PATH_MAX];
    int rc = -1;

    if (!m || !sidecar || sdm_path_with_ext(sdm_path_base(target), "rgb", frames, sizeof frames)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: out of memory", target);
        goto end;
    }
    json_object_object_add(m, "format", json_object_new_string(SEGMENT_FORMAT));
    json_object_object_add(m, "version", json_object_new_int(1));
    json_object_object_add(m, "recipe", json_object_new_string(r->path ? r->path : ""));
    json_object_object_add(m, "recipe_fingerprint", json_object_new_string(info->recipe_fp));
    json_object_object_add(m, "model", json_object_new_string(info->model_dir));
    json_object_object_add(m, "model_fingerprint", json_object_new_string(info->model_fp));
    json_object_object_add(m, "shard", json_object_new_int(info->index));
    json_object_object_add(m, "shards", json_object_new_int(info->count));
    json_object_object_add(m, "first_render", json_object_new_int(info->first));
    json_object_object_add(m, "renders", json_object_new_int(info->n));
    json_object_object_add(m, "renders_total", json_object_new_int(info->n_total));
    json_object_object_add(m, "width", json_object_new_int(info->width));
    json_object_object_add(m, "height", json_object_new_int(info->height));
    json_object_object_add(m, "frames_file", json_object_new_string(frames));
    /* a string, not parsed: the join's sidecar writes it byte for byte */
    json_object_object_add(m, "texts", texts ? json_object_new_string(texts) : NULL);
    add_used(m, used);
    json_object_object_add(m, "sidecar", sidecar);
    sidecar = NULL;
    if (json_object_to_file_ext(path, m, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target, strerror(errno ? errno : EIO));
        goto end;
    }
    rc = 0;
end:
    json_object_put(sidecar);
    json_object_put(m);
    return rc;
}

static int get_int(json_object *m, const char *key, int lo, int hi, int *out, const char *path, sdm_error *err)
{
    json_object *v;
    int64_t x;

    if (!json_object_object_get_ex(m, key, &v) || !json_object_is_type(v, json_type_int))
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: no whole number '%s'", path, key);
    x = json_object_get_int64(v);
    if (x < lo || x > hi)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: '%s' is %lld, not in %d..%d", path, key, (long long)x,
                             lo, hi);
    *out = (int)x;
    return 0;
}

static int get_string(json_object *m, const char *key, char *out, size_t len, const char *path, sdm_error *err)
{
    json_object *v;
    const char *s;

    if (!json_object_object_get_ex(m, key, &v) || !json_object_is_type(v, json_type_string))
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: no text '%s'", path, key);
    s = json_object_get_string(v);
    if (strlen(s) >= len)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: '%s' is too long", path, key);
    strcpy(out, s);
    return 0;
}

/* What the render used: optional (manifests of version 1 before they kept
 * it), each checked where present. */
static int read_used(json_object *m, const char *path, sdm_segment_info *o, sdm_error *err)
{
    json_object *ids;

    if ((json_object_object_get_ex(m, "device", NULL) &&
         get_string(m, "device", o->device, sizeof o->device, path, err)) ||
        (json_object_object_get_ex(m, "dtype", NULL) && get_string(m, "dtype", o->dtype, sizeof o->dtype, path, err)) ||
        (json_object_object_get_ex(m, "vae_dtype", NULL) &&
         get_string(m, "vae_dtype", o->vae_dtype, sizeof o->vae_dtype, path, err)) ||
        (json_object_object_get_ex(m, "sampler_auto", NULL) &&
         get_string(m, "sampler_auto", o->sampler_auto, sizeof o->sampler_auto, path, err)) ||
        (json_object_object_get_ex(m, "batch", NULL) && get_int(m, "batch", 1, 1 << 16, &o->batch, path, err)))
        return -1;
    if (!json_object_object_get_ex(m, "time_ids", &ids))
        return 0;
    if (!json_object_is_type(ids, json_type_array) || json_object_array_length(ids) != 6)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: 'time_ids' is not a list of 6 numbers", path);
    for (int i = 0; i < 6; i++) {
        json_object *v = json_object_array_get_idx(ids, (size_t)i);
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
            return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: 'time_ids' is not a list of 6 numbers", path);
        o->time_ids[i] = (float)json_object_get_double(v);
    }
    o->has_time_ids = 1;
    return 0;
}

/* The fields, each checked against what it may be. */
static int read_fields(json_object *m, const char *path, sdm_segment_info *o, sdm_error *err)
{
    char format[32], name[SDM_SEGMENT_PATH_MAX];
    const char *base = sdm_path_base(path);
    json_object *texts;

    if (get_string(m, "format", format, sizeof format, path, err) || strcmp(format, SEGMENT_FORMAT))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s is not a segment of `sdmorph render --shard`", path);
    if (get_string(m, "recipe_fingerprint", o->recipe_fp, sizeof o->recipe_fp, path, err) ||
        get_string(m, "model_fingerprint", o->model_fp, sizeof o->model_fp, path, err) ||
        get_string(m, "model", o->model_dir, sizeof o->model_dir, path, err) ||
        get_string(m, "frames_file", name, sizeof name, path, err) ||
        get_int(m, "shards", 1, 1 << 30, &o->count, path, err) ||
        get_int(m, "shard", 1, o->count, &o->index, path, err) ||
        get_int(m, "renders_total", 1, 1 << 30, &o->n_total, path, err) ||
        get_int(m, "first_render", 0, o->n_total - 1, &o->first, path, err) ||
        get_int(m, "renders", 1, o->n_total - o->first, &o->n, path, err) ||
        get_int(m, "width", 1, 1 << 16, &o->width, path, err) ||
        get_int(m, "height", 1, 1 << 16, &o->height, path, err) || read_used(m, path, o, err))
        return -1;
    if (json_object_object_get_ex(m, "texts", &texts) && json_object_is_type(texts, json_type_string) &&
        !(o->texts = strdup(json_object_get_string(texts))))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    if (strchr(name, '/') || !strcmp(name, "..") || !*name)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: frames_file must be a name beside it", path);
    if (snprintf(o->frames, sizeof o->frames, "%.*s%s", (int)(base - path), path, name) >= (int)sizeof o->frames)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: the frames' path is too long", path);
    return 0;
}

int sdm_segment_parse(const char *text, size_t len, const char *path, sdm_segment_info *out, sdm_error *err)
{
    json_tokener *tok = json_tokener_new();
    json_object *m = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (!tok)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    if (len > (size_t)INT32_MAX)
        len = INT32_MAX;
    m = json_tokener_parse_ex(tok, text, (int)len);
    if (!m || json_tokener_get_error(tok) != json_tokener_success) {
        sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: not JSON (%s)", path,
                      json_tokener_error_desc(json_tokener_get_error(tok)));
        goto end;
    }
    if (!json_object_is_type(m, json_type_object)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s is not a segment of `sdmorph render --shard`", path);
        goto end;
    }
    rc = read_fields(m, path, out, err);
end:
    json_object_put(m);
    json_tokener_free(tok);
    return rc;
}

int sdm_segment_read(const char *path, sdm_segment_info *out, sdm_error *err)
{
    char manifest[SDM_SEGMENT_PATH_MAX], *text = NULL;
    const char *ext = sdm_path_ext(path);
    FILE *f = NULL;
    long n = -1;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (ext && !strcmp(ext, ".rgb") ? sdm_path_with_ext(path, "json", manifest, sizeof manifest)
                                    : snprintf(manifest, sizeof manifest, "%s", path) >= (int)sizeof manifest)
        return sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: path too long", path);
    f = fopen(manifest, "rb");
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: %s", manifest, strerror(errno));
        goto end;
    }
    if (n > SDM_SEGMENT_MANIFEST_MAX) {
        sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: %ld bytes, more than a manifest's %d", manifest, n,
                      SDM_SEGMENT_MANIFEST_MAX);
        goto end;
    }
    text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "segment %s: cannot read it", manifest);
        goto end;
    }
    rc = sdm_segment_parse(text, (size_t)n, manifest, out, err);
end:
    if (f)
        fclose(f);
    free(text);
    return rc;
}

void sdm_segment_clear(sdm_segment_info *s)
{
    free(s->texts);
    s->texts = NULL;
}
