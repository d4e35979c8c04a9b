#include "sidecar.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "condition.h"
#include "sampler.h"
#include "version.h"

/* The "render" object: json-c quotes the paths. NULL when out of memory. */
static json_object *used_json(const sdm_recipe *r, const sdm_sidecar_used *u)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "sdmorph", json_object_new_string(SDM_VERSION));
    json_object_object_add(o, "model", json_object_new_string(u->model_dir ? u->model_dir : ""));
    json_object_object_add(o, "model_fingerprint", json_object_new_string(u->fingerprint ? u->fingerprint : ""));
    json_object_object_add(o, "device", json_object_new_string(u->device ? u->device : ""));
    json_object_object_add(o, "dtype", json_object_new_string(u->dtype ? u->dtype : ""));
    json_object_object_add(o, "width", json_object_new_int(u->width));
    json_object_object_add(o, "height", json_object_new_int(u->height));
    json_object_object_add(o, "steps", json_object_new_int(r->steps));
    json_object_object_add(o, "sampler", json_object_new_string(sdm_sampler_name(r->sampler)));
    if (u->sampler_auto)
        json_object_object_add(o, "sampler_auto", json_object_new_string(u->sampler_auto));
    json_object_object_add(o, "batch", json_object_new_int(u->batch));
    if (u->vae_dtype)
        json_object_object_add(o, "vae_dtype", json_object_new_string(u->vae_dtype));
    if (u->time_ids) {
        json_object *ids = json_object_new_array();
        for (int i = 0; ids && i < 6; i++)
            json_object_array_add(ids, json_object_new_int((int)u->time_ids[i]));
        json_object_object_add(o, "time_ids", ids);
    }
    json_object_object_add(o, "load_seconds", json_object_new_double(u->load_seconds));
    json_object_object_add(o, "seconds", json_object_new_double(u->seconds));
    return o;
}

void sdm_sidecar_model_facts(sdm_sidecar_used *u, sdm_sidecar_facts *f, const sdm_recipe *r, const sdm_bundle *b,
                             int width, int height)
{
    int karras = 0;

    if (r->sampler == SDM_SAMPLER_AUTO) {
        sdm_sampler kind = sdm_sampler_auto(b, &karras);
        snprintf(f->sampler, sizeof f->sampler, "%s%s", sdm_sampler_name(kind), karras || r->karras ? " karras" : "");
        u->sampler_auto = f->sampler;
    }
    if (sdm_bundle_is_xl(b)) {
        sdm_time_ids(r, width, height, f->time_ids);
        u->time_ids = f->time_ids;
        u->vae_dtype = b->vae_dtype;
    }
}

int sdm_sidecar_write(const char *path, const char *target, const sdm_recipe *r, const sdm_plan *p,
                      const sdm_sidecar_used *u, sdm_error *err)
{
    sdm_plan_json_extra x = { NULL, 0, 0, NULL, NULL };
    json_object *used = u ? used_json(r, u) : NULL;
    FILE *f = NULL;
    int bad, e, rc = -1;

    if (u && !used) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (u) {
        x.model = u->model_dir;
        x.width = u->width;
        x.height = u->height;
        x.texts = u->texts;
        x.render = json_object_to_json_string_ext(used, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    }
    f = fopen(path, "w");
    if (!f) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target, strerror(errno));
        goto end;
    }
    errno = 0;
    bad = sdm_plan_write_json_with(p, r, u ? &x : NULL, f) != 0;
    e = errno;
    bad |= fclose(f) != 0;
    if (bad) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", target, strerror(e ? e : errno ? errno : EIO));
        goto end;
    }
    rc = 0;
end:
    json_object_put(used);
    return rc;
}
