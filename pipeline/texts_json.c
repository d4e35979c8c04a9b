#include "texts_json.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

static json_object *chunks_json(const sdm_prompt_chunks *c)
{
    json_object *list = json_object_new_array();

    for (int k = 0; list && k < c->n_chunks; k++) {
        json_object *chunk = json_object_new_object(), *ids = json_object_new_array(), *w = json_object_new_array();
        for (int i = 0; ids && w && i < c->length; i++) {
            size_t at = (size_t)k * c->length + i;
            json_object_array_add(ids, json_object_new_int64(c->ids[at]));
            json_object_array_add(w, json_object_new_double(c->weights[at]));
        }
        json_object_object_add(chunk, "ids", ids);
        json_object_object_add(chunk, "weights", w);
        json_object_array_add(list, chunk);
    }
    return list;
}

static int add_text(json_object *list, const sdm_text_encoder *te, const sdm_recipe *r, int k, int negative,
                    sdm_error *err)
{
    const sdm_keyframe *kf = &r->keyframes[k];
    const char *text = negative ? sdm_recipe_negative(r, kf->negative) : kf->prompt ? kf->prompt : "";
    sdm_prompt_chunks c;
    json_object *o;

    if (sdm_text_encoder_chunks(te, text, r->weighting == SDM_WEIGHTING_A1111, &c, err))
        return -1;
    o = json_object_new_object();
    json_object_object_add(o, "keyframe", json_object_new_int(k));
    json_object_object_add(o, "part", json_object_new_string(negative ? "negative" : "prompt"));
    json_object_object_add(o, "text", json_object_new_string(text));
    json_object_object_add(o, "clip_skip", json_object_new_int(kf->clip_skip > 1 ? kf->clip_skip : 1));
    json_object_object_add(o, "weighting", json_object_new_string(sdm_weighting_name(r->weighting)));
    json_object_object_add(o, "tokens", json_object_new_int(c.n_tokens));
    json_object_object_add(o, "chunks", chunks_json(&c));
    json_object_array_add(list, o);
    sdm_prompt_chunks_clear(&c);
    return 0;
}

int sdm_texts_json(const sdm_text_encoder *te, const sdm_recipe *r, const sdm_text_ids *ids, char **out, sdm_error *err)
{
    json_object *list = json_object_new_array();
    int rc = -1;

    *out = NULL;
    if (!list)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    for (int k = 0; k < r->n_keyframes; k++) {
        if ((ids->prompt[k] == k && add_text(list, te, r, k, 0, err)) ||
            (ids->negative[k] == k && add_text(list, te, r, k, 1, err)))
            goto end;
    }
    *out = strdup(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    if (!*out) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    rc = 0;
end:
    json_object_put(list);
    return rc;
}
