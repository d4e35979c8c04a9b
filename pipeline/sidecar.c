#include "sidecar.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "version.h"

void sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - path) : strlen(path);

    snprintf(buf, len, "%.*s.%s", (int)stem, path, ext);
}

static json_object *u64(uint64_t v)
{
    /* seeds go past int64: keep them exact as strings of digits when big */
    if (v <= (uint64_t)INT64_MAX)
        return json_object_new_int64((int64_t)v);
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return json_object_new_string(s);
}

static json_object *frame_json(const sdm_recipe *r, const sdm_plan *p, int i, int shown)
{
    const sdm_plan_frame *f = &p->renders[p->sequence[i]];
    json_object *o = json_object_new_object();

    json_object_object_add(o, "frame", json_object_new_int(shown));
    json_object_object_add(o, "render", json_object_new_int(p->sequence[i]));
    json_object_object_add(o, "guidance", json_object_new_double(f->guidance));
    if (f->walk_k >= 0) {
        json_object_object_add(o, "walk_step", json_object_new_int(f->walk_k));
        json_object_object_add(o, "prompt", json_object_new_string(r->walk->prompt));
        json_object_object_add(o, "seed", u64(r->walk->seed));
        json_object_object_add(o, "noise_seed", u64(r->walk->noise_seed));
        return o;
    }
    const sdm_keyframe *a = &r->keyframes[f->key_a], *b = &r->keyframes[f->key_b];
    json_object_object_add(o, "from", json_object_new_int(f->key_a));
    json_object_object_add(o, "to", json_object_new_int(f->key_b));
    json_object_object_add(o, "t", json_object_new_double(f->t));
    json_object_object_add(o, "interp", json_object_new_string(sdm_interp_name(f->interp)));
    json_object_object_add(o, "prompt_from", json_object_new_string(a->prompt));
    json_object_object_add(o, "prompt_to", json_object_new_string(b->prompt));
    json_object_object_add(o, "seed_from", u64(a->seed));
    json_object_object_add(o, "seed_to", u64(b->seed));
    json_object_object_add(o, "seed_t", json_object_new_double(f->seed_t));
    return o;
}

int sdm_sidecar_write(const char *path, const sdm_recipe *r, const sdm_plan *p,
                      const sdm_sidecar_info *info, sdm_error *err)
{
    json_object *root = json_object_new_object(), *frames = json_object_new_array();
    char tmp[4200];
    int rc = -1;

    json_object_object_add(root, "sdmorph", json_object_new_string(SDM_VERSION));
    json_object_object_add(root, "recipe", json_object_new_string(r->path ? r->path : ""));
    json_object_object_add(root, "recipe_hash", json_object_new_string(info->recipe_hash));
    json_object_object_add(root, "model", json_object_new_string(info->model_dir));
    json_object_object_add(root, "width", json_object_new_int(info->width));
    json_object_object_add(root, "height", json_object_new_int(info->height));
    json_object_object_add(root, "steps", json_object_new_int(r->steps));
    json_object_object_add(root, "sampler", json_object_new_string(sdm_sampler_name(r->sampler)));
    json_object_object_add(root, "fps", json_object_new_double(r->fps));
    json_object_object_add(root, "loop", json_object_new_string(sdm_loop_name(r->loop)));
    for (int i = 0; i < p->n_sequence; i++)
        json_object_array_add(frames, frame_json(r, p, i, info->shown_index ? info->shown_index[i] : i));
    json_object_object_add(root, "frames", frames);

    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    if (json_object_to_file_ext(tmp, root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", path, json_util_get_last_err());
        unlink(tmp);
        goto end;
    }
    if (rename(tmp, path)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        goto end;
    }
    rc = 0;
end:
    json_object_put(root);
    return rc;
}
