#include "image_params.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "recipe.h"

static int no_memory(sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
}

/* ---- A1111 ------------------------------------------------------------- */

/* Python's \w, near enough: ASCII letters, digits, '_', and any non-ASCII byte. */
static int is_word(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

static int is_key_char(unsigned char c)
{
    return is_word(c) || c == ' ' || c == '-' || c == '/';
}

typedef struct {
    const char *key, *value;
    size_t key_len, value_len;
    int quoted;
} param;

/* A1111's re_param, \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$),
 * matched at s[i]; the end of the match, or 0 where it does not match. */
static size_t match_param(const char *s, size_t i, param *p)
{
    size_t k, v;

    while (s[i] && isspace((unsigned char)s[i]))
        i++;
    if (!is_word((unsigned char)s[i]))
        return 0;
    for (k = i + 1; is_key_char((unsigned char)s[k]); k++)
        ;
    if (k - i < 2 || s[k] != ':')
        return 0;
    p->key = s + i;
    p->key_len = k - i;
    for (v = k + 1; s[v] && isspace((unsigned char)s[v]); v++)
        ;
    p->value = s + v;
    p->quoted = 0;
    if (s[v] == '"') {
        size_t j = v + 1;
        while (s[j] && s[j] != '"')
            j += s[j] == '\\' && s[j + 1] ? 2 : 1;
        if (s[j] == '"' && j > v + 1 && (s[j + 1] == ',' || !s[j + 1])) {
            p->quoted = 1;
            p->value_len = j + 1 - v;
            return s[j + 1] ? j + 2 : j + 1;
        }
    }
    k = v;
    while (s[v] && s[v] != ',')
        v++;
    p->value_len = v - k;
    return s[v] ? v + 1 : v;
}

/* Every match of re_param in line, as re.findall finds them (n of them,
 * at most max, stored where ps is not NULL). */
static int find_params(const char *line, param *ps, int max)
{
    size_t i = 0, end;
    int n = 0;
    param p;

    while (line[i]) {
        end = match_param(line, i, &p);
        if (!end) {
            i++;
            continue;
        }
        if (ps && n < max)
            ps[n] = p;
        n++;
        if (end == i)
            break;
        i = end;
    }
    return n;
}

static int key_is(const param *p, const char *k)
{
    return p->key_len == strlen(k) && !strncmp(p->key, k, p->key_len);
}

/* The value as text: a quoted one unescaped (\" and \\), else trimmed. */
static void value_text(const param *p, char *buf, size_t len)
{
    size_t n = 0, a = 0, b = p->value_len;

    if (p->quoted) {
        a = 1;
        b--;
    }
    while (!p->quoted && b > a && isspace((unsigned char)p->value[b - 1]))
        b--;
    for (size_t i = a; i < b && n + 1 < len; i++) {
        if (p->quoted && p->value[i] == '\\' && i + 1 < b)
            i++;
        buf[n++] = p->value[i];
    }
    buf[n] = '\0';
}

static void apply_param(const param *p, sdm_image_params *out)
{
    char v[256];
    int w = 0, h = 0;

    value_text(p, v, sizeof v);
    if (key_is(p, "Steps"))
        out->steps = atoi(v);
    else if (key_is(p, "Sampler"))
        snprintf(out->sampler, sizeof out->sampler, "%.63s", v);
    else if (key_is(p, "Schedule type"))
        snprintf(out->scheduler, sizeof out->scheduler, "%.31s", v);
    else if (key_is(p, "CFG scale"))
        out->cfg = strtod(v, NULL);
    else if (key_is(p, "Seed") && isdigit((unsigned char)v[0])) {
        out->seed = strtoull(v, NULL, 10);
        out->has_seed = 1;
    } else if (key_is(p, "Size") && sscanf(v, "%dx%d", &w, &h) == 2 && w > 0 && h > 0) {
        out->width = w;
        out->height = h;
    } else if (key_is(p, "Clip skip"))
        out->clip_skip = atoi(v);
    else if (key_is(p, "Refiner"))
        snprintf(out->refiner, sizeof out->refiner, "%.100s", v);
    else if (key_is(p, "Refiner switch at")) {
        size_t n = strlen(out->refiner);
        snprintf(out->refiner + n, sizeof out->refiner - n, "%sat %.32s of the steps", n ? ", " : "", v);
    }
}

/* s with its lines' leading and trailing white space dropped (as A1111's
 * line.strip()) appended to *dst, a newline between. */
static int append_line(char **dst, const char *s, size_t n)
{
    size_t old = *dst ? strlen(*dst) : 0;
    char *d;

    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    d = realloc(*dst, old + n + 2);
    if (!d)
        return -1;
    if (*dst && old)
        d[old++] = '\n';
    memcpy(d + old, s, n);
    d[old + n] = '\0';
    *dst = d;
    return 0;
}

int sdm_image_params_a1111(const char *text, sdm_image_params *out, sdm_error *err)
{
    const char *end = text + strlen(text), *last, *line;
    param ps[64];
    int n, negative = 0;

    memset(out, 0, sizeof *out);
    out->cfg = -1;
    out->tool = "A1111";
    while (end > text && isspace((unsigned char)end[-1]))
        end--;
    while (text < end && isspace((unsigned char)*text))
        text++;
    for (last = end; last > text && last[-1] != '\n'; last--)
        ;
    {
        char *tail = strndup(last, (size_t)(end - last));
        if (!tail)
            return no_memory(err);
        n = find_params(tail, ps, 64);
        if (n >= 3) {
            for (int i = 0; i < n && i < 64; i++)
                apply_param(&ps[i], out);
        } else {
            last = end;
        }
        free(tail);
    }
    for (line = text; line < last;) {
        const char *nl = memchr(line, '\n', (size_t)(last - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(last - line);
        const char *s = line;
        while (len && isspace((unsigned char)*s))
            s++, len--;
        if (len >= 16 && !strncmp(s, "Negative prompt:", 16)) {
            negative = 1;
            s += 16;
            len -= 16;
            if (!out->negative && !(out->negative = strdup("")))
                return no_memory(err);
        }
        if (append_line(negative ? &out->negative : &out->prompt, s, len))
            return no_memory(err);
        if (!nl)
            break;
        line = nl + 1;
    }
    if (!out->prompt && !(out->prompt = strdup("")))
        return no_memory(err);
    return 0;
}

/* ---- ComfyUI ------------------------------------------------------------- */

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* The id a link ["id", slot] names, else NULL. */
static const char *link_id(json_object *link)
{
    if (!link || !json_object_is_type(link, json_type_array) || json_object_array_length(link) < 1)
        return NULL;
    return json_object_get_string(json_object_array_get_idx(link, 0));
}

/* The node a link points at. */
static json_object *linked(json_object *graph, json_object *link)
{
    const char *id = link_id(link);

    return id ? get(graph, id) : NULL;
}

static int is_class(json_object *node, const char *cls)
{
    const char *c = json_object_get_string(get(node, "class_type"));
    return c && !strcmp(c, cls);
}

/* Input `key` of a node's inputs as a string written in, else NULL. */
static const char *input_string(json_object *node, const char *key)
{
    json_object *t = get(get(node, "inputs"), key);

    return t && json_object_is_type(t, json_type_string) ? json_object_get_string(t) : NULL;
}

/* Input `key` of a node as an int written in: 0 with *v set, else -1. */
static int input_int(json_object *node, const char *key, int *v)
{
    json_object *x = get(get(node, "inputs"), key);

    if (!x || !json_object_is_type(x, json_type_int))
        return -1;
    *v = json_object_get_int(x);
    return 0;
}

/* A CLIPTextEncode's text, or a CLIPTextEncodeSDXL's text_g (what the
 * second, larger encoder and the pooled embedding read) and, where it
 * differs, its text_l into *text_l; written in, not linked from another
 * node. 1 where the node is neither. */
static int node_text(json_object *node, char **out, char **text_l)
{
    const char *t = NULL, *l = NULL;

    if (is_class(node, "CLIPTextEncode"))
        t = input_string(node, "text");
    else if (is_class(node, "CLIPTextEncodeSDXL")) {
        t = input_string(node, "text_g");
        l = input_string(node, "text_l");
        if (t && !*t && l) /* text_l alone: that is the prompt */
            t = l;
    }
    if (!t)
        return 1;
    if (!(*out = strdup(t)))
        return -1;
    if (l && strcmp(l, t) && !(*text_l = strdup(l)))
        return -1;
    return 0;
}

/* A CLIPTextEncodeSDXL's size conditioning: width, height, crop_w,
 * crop_h, target_width, target_height (ComfyUI's names) as diffusers'
 * [height, width] pairs. */
static void comfy_size(json_object *node, sdm_image_params *out)
{
    static const char *keys[6] = { "height", "width", "crop_h", "crop_w", "target_height", "target_width" };
    int *dst[6] = { &out->original_size[0],         &out->original_size[1], &out->crops_coords_top_left[0],
                    &out->crops_coords_top_left[1], &out->target_size[0],   &out->target_size[1] };
    int v[6];

    if (!is_class(node, "CLIPTextEncodeSDXL"))
        return;
    for (int i = 0; i < 6; i++)
        if (input_int(node, keys[i], &v[i]) || v[i] < 0 || v[i] > 65536)
            return;
    for (int i = 0; i < 6; i++)
        *dst[i] = v[i];
    out->has_size = 1;
}

static void comfy_settings(json_object *graph, json_object *ks, sdm_image_params *out)
{
    json_object *in = get(ks, "inputs"), *lat = get(linked(graph, get(in, "latent_image")), "inputs"), *seed;
    const char *s;

    seed = get(in, "seed") ? get(in, "seed") : get(in, "noise_seed");
    if (seed && json_object_is_type(seed, json_type_int)) {
        out->seed = (uint64_t)json_object_get_int64(seed);
        out->has_seed = 1;
    }
    if (json_object_is_type(get(in, "steps"), json_type_int))
        out->steps = json_object_get_int(get(in, "steps"));
    if (get(in, "cfg") && !json_object_is_type(get(in, "cfg"), json_type_array))
        out->cfg = json_object_get_double(get(in, "cfg"));
    if ((s = json_object_get_string(get(in, "sampler_name"))))
        snprintf(out->sampler, sizeof out->sampler, "%s", s);
    if ((s = json_object_get_string(get(in, "scheduler"))))
        snprintf(out->scheduler, sizeof out->scheduler, "%s", s);
    if (lat && json_object_is_type(get(lat, "width"), json_type_int)) {
        out->width = json_object_get_int(get(lat, "width"));
        out->height = json_object_get_int(get(lat, "height"));
    }
    json_object_object_foreach(graph, id, node)
    {
        json_object *layer = get(get(node, "inputs"), "stop_at_clip_layer");
        (void)id;
        if (is_class(node, "CLIPSetLastLayer") && json_object_is_type(layer, json_type_int))
            out->clip_skip = -json_object_get_int(layer);
    }
}

/* SDXL's base and refiner: two KSamplerAdvanced, the base adding noise
 * from step 0, the refiner adding none and going on from the base's
 * latent. The base, with the step the refiner took over at in
 * out->refiner; NULL where the two are not so. */
static json_object *base_of_refined(json_object *const *ks, const char *const *ids, sdm_image_params *out)
{
    if (!is_class(ks[0], "KSamplerAdvanced") || !is_class(ks[1], "KSamplerAdvanced"))
        return NULL;
    for (int b = 0; b < 2; b++) {
        json_object *base = ks[b], *ref = ks[1 - b];
        const char *base_noise = input_string(base, "add_noise"), *ref_noise = input_string(ref, "add_noise");
        const char *from = link_id(get(get(ref, "inputs"), "latent_image"));
        int start, at, steps = 0;
        if (!base_noise || strcmp(base_noise, "enable") || !ref_noise || strcmp(ref_noise, "disable") ||
            input_int(base, "start_at_step", &start) || start != 0 || input_int(ref, "start_at_step", &at) || !from ||
            strcmp(from, ids[b]))
            continue;
        if (!input_int(ref, "steps", &steps) && steps > 0)
            snprintf(out->refiner, sizeof out->refiner, "at step %d of %d", at, steps);
        else
            snprintf(out->refiner, sizeof out->refiner, "at step %d", at);
        return base;
    }
    return NULL;
}

int sdm_image_params_comfyui(const char *json, sdm_image_params *out, sdm_error *err)
{
    json_object *graph = json_tokener_parse(json), *ks = NULL, *samplers[2] = { NULL, NULL };
    const char *ids[2] = { NULL, NULL };
    int n_samplers = 0, rc = -1;

    memset(out, 0, sizeof *out);
    out->cfg = -1;
    out->tool = "ComfyUI";
    if (!graph || !json_object_is_type(graph, json_type_object)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "ComfyUI's prompt is not a JSON object");
        goto end;
    }
    json_object_object_foreach(graph, id, node)
    {
        if (is_class(node, "KSampler") || is_class(node, "KSamplerAdvanced")) {
            if (n_samplers < 2)
                samplers[n_samplers] = node, ids[n_samplers] = id;
            n_samplers++;
        }
    }
    ks = n_samplers == 1 ? samplers[0] : n_samplers == 2 ? base_of_refined(samplers, ids, out) : NULL;
    if (!ks) {
        sdm_error_set(err, SDM_EXIT_USAGE,
                      "the ComfyUI graph has %d sampler nodes; only a graph with one is read (or SDXL's base "
                      "and refiner: two KSamplerAdvanced, the second going on from the first's latent)",
                      n_samplers);
        goto end;
    }
    rc = node_text(linked(graph, get(get(ks, "inputs"), "positive")), &out->prompt, &out->prompt_l);
    if (!rc)
        rc = node_text(linked(graph, get(get(ks, "inputs"), "negative")), &out->negative, &out->negative_l);
    if (rc) {
        if (rc > 0)
            sdm_error_set(err, SDM_EXIT_USAGE,
                          "the ComfyUI sampler's prompts are not CLIPTextEncode or CLIPTextEncodeSDXL nodes "
                          "with their text written in; only such a graph is read");
        else
            no_memory(err);
        rc = -1;
        goto end;
    }
    comfy_settings(graph, ks, out);
    comfy_size(linked(graph, get(get(ks, "inputs"), "positive")), out);
end:
    json_object_put(graph);
    if (rc)
        sdm_image_params_clear(out);
    return rc;
}

/* ---- the recipe ---------------------------------------------------------- */

/* A YAML double-quoted string. */
static void yaml_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Our sampler for the tool's name (any name or alias of recipe.h's), with
 * Karras sigmas where the name or the tool's scheduler says so and the
 * sampler takes them; NULL where we have none like it. */
static const char *our_sampler(const sdm_image_params *p, int *karras)
{
    sdm_sampler kind;
    bool named_karras = false;

    if (sdm_sampler_parse(p->sampler, &kind, &named_karras))
        return NULL;
    *karras = named_karras ||
              ((!strcmp(p->scheduler, "Karras") || !strcmp(p->scheduler, "karras")) && sdm_sampler_has_karras(kind));
    return sdm_sampler_name(kind);
}

/* The size keys where they are not the recipe's defaults (the frame's
 * size, no crop). */
static void print_size(const sdm_image_params *p, FILE *f)
{
    const int *o = p->original_size, *c = p->crops_coords_top_left, *t = p->target_size;

    if (!p->has_size ||
        (o[0] == p->height && o[1] == p->width && !c[0] && !c[1] && t[0] == p->height && t[1] == p->width))
        return;
    fprintf(f, "original_size: [%d, %d]\ncrops_coords_top_left: [%d, %d]\ntarget_size: [%d, %d]\n", o[0], o[1], c[0],
            c[1], t[0], t[1]);
}

/* A comment naming a CLIPTextEncodeSDXL's text_l that was not its text_g. */
static void print_text_l(const char *what, const char *text_l, FILE *f)
{
    if (!text_l)
        return;
    fprintf(f, "    # ComfyUI's text_l for the %s differed (sdmorph gives both encoders one text): ", what);
    yaml_string(f, text_l);
    fputc('\n', f);
}

void sdm_image_params_print(const sdm_image_params *p, const char *source, FILE *f)
{
    int karras = 0;
    const char *sampler = p->sampler[0] ? our_sampler(p, &karras) : NULL;

    fprintf(f, "# from %s (%s's settings)\n", source, p->tool);
    if (p->width > 0 && p->height > 0) {
        if (p->width % 8 || p->height % 8)
            fprintf(f, "# size %dx%d: sdmorph takes multiples of 8\n", p->width, p->height);
        else
            fprintf(f, "width: %d\nheight: %d\n", p->width, p->height);
    }
    if (p->steps > 0)
        fprintf(f, "steps: %d\n", p->steps);
    if (sampler)
        fprintf(f, "sampler: %s\n%s", sampler, karras ? "karras: true\n" : "");
    else if (p->sampler[0])
        fprintf(f, "# sampler \"%s\" has no equivalent here (sdmorph samplers lists them)\n", p->sampler);
    if (p->refiner[0])
        fprintf(f, "# %s's refiner took over (%s; another model): sdmorph runs every step with one\n", p->tool,
                p->refiner);
    print_size(p, f);
    fprintf(f, "keyframes:\n  - prompt: ");
    yaml_string(f, p->prompt ? p->prompt : "");
    fputc('\n', f);
    print_text_l("prompt", p->prompt_l, f);
    if (p->negative) {
        fprintf(f, "    negative: ");
        yaml_string(f, p->negative);
        fputc('\n', f);
        print_text_l("negative", p->negative_l, f);
    }
    if (p->has_seed)
        fprintf(f, "    seed: %" PRIu64 "    # noise is drawn otherwise than %s draws it: not the same picture\n",
                p->seed, p->tool);
    if (p->cfg >= 0)
        fprintf(f, "    guidance: %.17g\n", p->cfg);
    if (p->clip_skip > 1)
        fprintf(f, "    clip_skip: %d\n", p->clip_skip);
}

void sdm_image_params_clear(sdm_image_params *p)
{
    free(p->prompt);
    free(p->negative);
    free(p->prompt_l);
    free(p->negative_l);
    memset(p, 0, sizeof *p);
}
