/* The recipe loader. libyaml's document API, read by one table per mapping
 * (recipe, keyframe, walk): {key, handler, offset, range, flags}. Unknown and
 * duplicate keys are errors; every error is "FILE:LINE:COL: message", the
 * position being the offending node's start mark (+1). A first pass over the
 * events bounds nesting and size, so no input can exhaust memory or crash. */
#include "recipe.h"

#include "enum_table.h"
#include "output_name.h"
#include "prompt.h"
#include "spacing.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_RECIPE_BYTES (4u << 20)
#define MAX_DEPTH 64 /* a recipe needs 4; deeper is a mistake or an attack */
#define MAX_EVENTS 2000000
/* An MP4 holds frames up to 1000 s long: its timestamps overflow below that. */
#define SDM_MIN_FPS 0.001

/* --- enum names ----------------------------------------------------------- */

static const sdm_enum_entry interp_entries[] = { { "lerp", SDM_INTERP_LERP }, { "slerp", SDM_INTERP_SLERP } };
static const sdm_enum_entry ease_entries[] = { { "linear", SDM_EASE_LINEAR },
                                               { "smoothstep", SDM_EASE_SMOOTHSTEP },
                                               { "cosine", SDM_EASE_COSINE } };
static const sdm_enum_entry loop_entries[] = { { "none", SDM_LOOP_NONE },
                                               { "pingpong", SDM_LOOP_PINGPONG },
                                               { "cycle", SDM_LOOP_CYCLE } };
/* Names first, then the aliases users type: A1111's, ComfyUI's and
 * diffusers' class names. KARRAS marks a name that asks for Karras sigmas. */
#define KARRAS 0x100
static const sdm_enum_entry sampler_entries[] = {
    { "ddim", SDM_SAMPLER_DDIM },
    { "euler", SDM_SAMPLER_EULER },
    { "euler_a", SDM_SAMPLER_EULER_A },
    { "dpmpp_2m", SDM_SAMPLER_DPMPP_2M },
    { "dpmpp_2m_sde", SDM_SAMPLER_DPMPP_2M_SDE },
    { "pndm", SDM_SAMPLER_PNDM },
    { "lms", SDM_SAMPLER_LMS },
    { "heun", SDM_SAMPLER_HEUN },
    { "unipc", SDM_SAMPLER_UNIPC },
    { "lcm", SDM_SAMPLER_LCM },
    { "auto", SDM_SAMPLER_AUTO },
    /* A1111 */
    { "Euler a", SDM_SAMPLER_EULER_A },
    { "DPM++ 2M", SDM_SAMPLER_DPMPP_2M },
    { "DPM++ 2M Karras", SDM_SAMPLER_DPMPP_2M | KARRAS },
    { "DPM++ 2M SDE", SDM_SAMPLER_DPMPP_2M_SDE },
    { "DPM++ 2M SDE Karras", SDM_SAMPLER_DPMPP_2M_SDE | KARRAS },
    { "LMS Karras", SDM_SAMPLER_LMS | KARRAS },
    { "PLMS", SDM_SAMPLER_PNDM },
    { "Euler Karras", SDM_SAMPLER_EULER | KARRAS },
    /* ComfyUI */
    { "euler_ancestral", SDM_SAMPLER_EULER_A },
    { "dpmpp_2m_sde_gpu", SDM_SAMPLER_DPMPP_2M_SDE },
    { "uni_pc", SDM_SAMPLER_UNIPC },
    { "uni_pc_bh2", SDM_SAMPLER_UNIPC },
    /* diffusers' scheduler classes */
    { "DDIMScheduler", SDM_SAMPLER_DDIM },
    { "EulerDiscreteScheduler", SDM_SAMPLER_EULER },
    { "EulerAncestralDiscreteScheduler", SDM_SAMPLER_EULER_A },
    { "DPMSolverMultistepScheduler", SDM_SAMPLER_DPMPP_2M },
    { "PNDMScheduler", SDM_SAMPLER_PNDM },
    { "LMSDiscreteScheduler", SDM_SAMPLER_LMS },
    { "HeunDiscreteScheduler", SDM_SAMPLER_HEUN },
    { "UniPCMultistepScheduler", SDM_SAMPLER_UNIPC },
    { "LCMScheduler", SDM_SAMPLER_LCM },
    /* other spellings */
    { "euler_ancestral_discrete", SDM_SAMPLER_EULER_A },
    { "dpm++_2m", SDM_SAMPLER_DPMPP_2M },
    { "dpm++_2m_karras", SDM_SAMPLER_DPMPP_2M | KARRAS },
    { "dpmpp_2m_karras", SDM_SAMPLER_DPMPP_2M | KARRAS },
    { "dpmpp_2m_sde_karras", SDM_SAMPLER_DPMPP_2M_SDE | KARRAS },
    { "lms_karras", SDM_SAMPLER_LMS | KARRAS },
    { "euler_karras", SDM_SAMPLER_EULER | KARRAS },
};
static const sdm_enum_entry retime_entries[] = { { "none", SDM_RETIME_NONE }, { "even", SDM_RETIME_EVEN } };
static const sdm_enum_table interp_names = SDM_ENUM_TABLE(interp_entries);
static const sdm_enum_table ease_names = SDM_ENUM_TABLE(ease_entries);
static const sdm_enum_table loop_names = SDM_ENUM_TABLE(loop_entries);
static const sdm_enum_table sampler_names = SDM_ENUM_TABLE(sampler_entries);
static const sdm_enum_entry weighting_entries[] = { { "a1111", SDM_WEIGHTING_A1111 }, { "none", SDM_WEIGHTING_NONE } };
static const sdm_enum_table weighting_names = SDM_ENUM_TABLE(weighting_entries);
static const sdm_enum_table retime_names = SDM_ENUM_TABLE(retime_entries);

SDM_ENUM_FUNCTIONS(sdm_interp, interp_names) /* sdm_interp_name, sdm_interp_from_str */
SDM_ENUM_FUNCTIONS(sdm_ease, ease_names) /* sdm_ease_name, sdm_ease_from_str */
SDM_ENUM_FUNCTIONS(sdm_loop, loop_names) /* sdm_loop_name, sdm_loop_from_str */
const char *sdm_sampler_name(sdm_sampler v)
{
    return sdm_enum_name(&sampler_names, (int)v);
}

int sdm_sampler_parse(const char *s, sdm_sampler *out, bool *karras)
{
    int v;

    if (sdm_enum_parse_nocase(&sampler_names, s, &v))
        return -1;
    *out = (sdm_sampler)(v & ~KARRAS);
    if (karras)
        *karras = (v & KARRAS) != 0;
    return 0;
}

int sdm_sampler_from_str(const char *s, sdm_sampler *out)
{
    return sdm_sampler_parse(s, out, NULL);
}

bool sdm_sampler_has_karras(sdm_sampler s)
{
    return s == SDM_SAMPLER_EULER || s == SDM_SAMPLER_DPMPP_2M || s == SDM_SAMPLER_DPMPP_2M_SDE ||
           s == SDM_SAMPLER_LMS || s == SDM_SAMPLER_HEUN || s == SDM_SAMPLER_UNIPC || s == SDM_SAMPLER_AUTO;
}

const char *sdm_sampler_alias(int i, sdm_sampler *kind, bool *karras)
{
    if (i < 0 || i >= sampler_names.n)
        return NULL;
    *kind = (sdm_sampler)(sampler_names.entries[i].value & ~KARRAS);
    *karras = (sampler_names.entries[i].value & KARRAS) != 0;
    return sampler_names.entries[i].name;
}

SDM_ENUM_FUNCTIONS(sdm_weighting, weighting_names) /* sdm_weighting_name, sdm_weighting_from_str */
SDM_ENUM_FUNCTIONS(sdm_retime_mode, retime_names) /* sdm_retime_mode_name, sdm_retime_mode_from_str */

/* --- the loader's state and its errors ------------------------------------ */

typedef struct {
    const char *name; /* for messages */
    yaml_document_t *doc;
    sdm_recipe *r;
    sdm_keyframe def; /* recipe-level defaults of keyframe keys */
    bool karras_by_name; /* the sampler's name asks for Karras sigmas */
    sdm_error *err;
    const sdm_recipe_override *ov; /* the command line's changes */
    int n_ov;
} loader;

/* The nodes an override puts into the document carry this mark index plus
 * the override's number (libyaml's own are byte offsets, far below), so a
 * message about them names the option, not a place in the file. */
#define OVERRIDE_MARK ((size_t)-1 - 4096)

/* Where mark m is, as messages name it: file:line:col, or the command
 * line's option for a node an override put there. */
static void where_of(const loader *L, yaml_mark_t m, char *buf, size_t len)
{
    if (m.index >= OVERRIDE_MARK && m.index - OVERRIDE_MARK < (size_t)L->n_ov)
        snprintf(buf, len, "%s", L->ov[m.index - OVERRIDE_MARK].option);
    else
        snprintf(buf, len, "%s:%lu:%lu", L->name, (unsigned long)m.line + 1, (unsigned long)m.column + 1);
}

static int fail_mark(loader *L, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_mark(loader *L, yaml_mark_t m, const char *fmt, ...)
{
    char what[1536], where[PATH_MAX + 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    where_of(L, m, where, sizeof where);
    return sdm_error_set(L->err, SDM_EXIT_USAGE, "%s: %s", where, what);
}

/* Keeps where a key's value is in *dst (freed first), for refusals that
 * come later, against the model. */
static int keep_where(loader *L, yaml_node_t *v, char **dst)
{
    char where[PATH_MAX + 64];

    where_of(L, v->start_mark, where, sizeof where);
    free(*dst);
    *dst = strdup(where);
    return *dst ? 0 : sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
}

#define fail_at(L, node, ...) fail_mark((L), (node)->start_mark, __VA_ARGS__)

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return "a single value";
    default:
        return "nothing";
    }
}

/* Copies a scalar for a message: short, printable. */
static const char *quote(const yaml_node_t *n, char *buf, size_t size)
{
    size_t len = n->data.scalar.length, i;
    const unsigned char *s = n->data.scalar.value;

    for (i = 0; i < len && i + 4 < size; i++)
        buf[i] = s[i] >= 0x20 && s[i] != 0x7f ? (char)s[i] : '?';
    if (i < len)
        memcpy(buf + i, "...", 4);
    else
        buf[i] = 0;
    return buf;
}

static int is_null(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* libyaml's reader reports invalid UTF-8 by byte offset only: turn it into
 * line:col as its other marks count them (characters, 0-based). */
static yaml_mark_t mark_of_offset(const unsigned char *text, size_t len, size_t offset)
{
    yaml_mark_t m = { 0, 0, 0 };

    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if ((text[i] & 0xC0) != 0x80) {
            m.column++;
        }
    }
    m.index = offset;
    return m;
}

static int fail_parser(loader *L, const yaml_parser_t *p, const unsigned char *text, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    size_t offset;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "%s: out of memory while reading the recipe", L->name);
    case YAML_READER_ERROR:
        offset = p->problem_offset;
        /* a bad trailing octet: point at the character it belongs to */
        if (!strcmp(problem, "invalid trailing UTF-8 octet")) {
            while (offset > 0 && offset <= len && (text[offset - 1] & 0xC0) == 0x80)
                offset--;
            if (offset > 0)
                offset--;
        }
        if (p->problem_value >= 0)
            return fail_mark(L, mark_of_offset(text, len, offset),
                             "not valid UTF-8 text (%s 0x%02x); recipes must be UTF-8", problem,
                             (unsigned)p->problem_value & 0xffu);
        return fail_mark(L, mark_of_offset(text, len, offset), "not valid UTF-8 text (%s); recipes must be UTF-8",
                         problem);
    default:
        if (p->context)
            return fail_mark(L, p->problem_mark, "invalid YAML: %s (%s at %lu:%lu)", problem, p->context,
                             (unsigned long)p->context_mark.line + 1, (unsigned long)p->context_mark.column + 1);
        return fail_mark(L, p->problem_mark, "invalid YAML: %s", problem);
    }
}

/* --- the key tables -------------------------------------------------------- */

enum {
    K_REQUIRED = 1 << 0,
    K_LATE = 1 << 1, /* handled after the other keys of its mapping (needs their values) */
    K_DEFAULTS = 1 << 2, /* recipe level: stored in the keyframe defaults */
    K_MULT8 = 1 << 3,
    K_LO_OPEN = 1 << 4, /* range excludes lo */
    K_NOTNULL = 1 << 5, /* a string that must be given (empty quotes allowed) */
};

typedef struct key_spec key_spec;
typedef int (*key_fn)(loader *L, yaml_node_t *v, void *dst, const key_spec *k);

struct key_spec {
    const char *key;
    key_fn fn;
    size_t offset;
    double lo, hi;
    const sdm_enum_table *names; /* enums */
    unsigned flags;
};

typedef struct {
    yaml_node_t *key, *value;
} seen_pair;

static int scalar_or_fail(loader *L, yaml_node_t *v, const key_spec *k, const char *expected)
{
    if (v->type == YAML_SCALAR_NODE && !is_null(v))
        return 0;
    return fail_at(L, v, "'%s': expected %s, found %s", k->key, expected, is_null(v) ? "nothing" : node_kind(v));
}

static int h_int(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    char expected[128], buf[64];
    const char *s;
    char *end = NULL;
    long long x;

    snprintf(expected, sizeof expected, "an integer in %.0f..%.0f%s", k->lo, k->hi,
             k->flags & K_MULT8 ? ", a multiple of 8" : "");
    if (scalar_or_fail(L, v, k, expected))
        return -1;
    s = (const char *)v->data.scalar.value;
    errno = 0;
    x = strtoll(s, &end, 10);
    if (end == s || *end || strlen(s) != v->data.scalar.length)
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    if (errno == ERANGE || (double)x < k->lo || (double)x > k->hi)
        return fail_at(L, v, "'%s': %s is out of range; expected %s", k->key, quote(v, buf, sizeof buf), expected);
    if ((k->flags & K_MULT8) && x % 8)
        return fail_at(L, v, "'%s': %lld is not a multiple of 8; expected %s", k->key, x, expected);
    *(int *)dst = (int)x;
    return 0;
}

static int h_double(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    char expected[128], buf[64];
    const char *s;
    char *end = NULL;
    double x;

    if (k->flags & K_LO_OPEN)
        snprintf(expected, sizeof expected, "a number above %g, at most %g", k->lo, k->hi);
    else
        snprintf(expected, sizeof expected, "a number in %g..%g", k->lo, k->hi);
    if (scalar_or_fail(L, v, k, expected))
        return -1;
    s = (const char *)v->data.scalar.value;
    /* Plain decimal notation only: strtod also takes hex, inf and nan. */
    if (strspn(s, "0123456789+-.eE") != strlen(s))
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    errno = 0;
    x = strtod(s, &end);
    if (end == s || *end)
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    if (errno == ERANGE || !isfinite(x) || x < k->lo || x > k->hi || ((k->flags & K_LO_OPEN) && x <= k->lo))
        return fail_at(L, v, "'%s': %s is out of range; expected %s", k->key, quote(v, buf, sizeof buf), expected);
    *(double *)dst = x;
    return 0;
}

static int h_u64(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    static const char expected[] = "an integer in 0..18446744073709551615";
    char buf[64];
    const char *s;
    char *end = NULL;
    unsigned long long x;

    if (scalar_or_fail(L, v, k, expected))
        return -1;
    s = (const char *)v->data.scalar.value;
    if (*s < '0' || *s > '9') {
        if (*s == '-' && s[1] >= '0' && s[1] <= '9')
            return fail_at(L, v, "'%s': %s is out of range; expected %s", k->key, quote(v, buf, sizeof buf), expected);
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    }
    errno = 0;
    x = strtoull(s, &end, 10);
    if (*end)
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    if (errno == ERANGE)
        return fail_at(L, v, "'%s': %s is out of range; expected %s", k->key, quote(v, buf, sizeof buf), expected);
    *(uint64_t *)dst = (uint64_t)x;
    return 0;
}

static int h_bool(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
    const char *s;
    char buf[64];

    if (scalar_or_fail(L, v, k, "true or false"))
        return -1;
    s = (const char *)v->data.scalar.value;
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i]) || !strcasecmp(s, no[i])) {
            *(bool *)dst = !strcasecmp(s, yes[i]);
            return 0;
        }
    }
    return fail_at(L, v, "'%s': expected true or false, not '%s'", k->key, quote(v, buf, sizeof buf));
}

/* A text value; a YAML escape can put a NUL inside it, which C strings cannot hold. */
static int take_string(loader *L, yaml_node_t *v, const char *key, char **dst)
{
    char *s;

    if (v->type != YAML_SCALAR_NODE)
        return fail_at(L, v, "'%s': expected a string, found %s", key, node_kind(v));
    if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length)
        return fail_at(L, v, "'%s': the string contains a NUL character", key);
    s = strdup(is_null(v) ? "" : (const char *)v->data.scalar.value);
    if (!s)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    free(*dst);
    *dst = s;
    return 0;
}

static int h_string(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    if ((k->flags & K_NOTNULL) && is_null(v))
        return fail_at(L, v, "'%s': expected a string, found nothing", k->key);
    return take_string(L, v, k->key, (char **)dst);
}

/* The embeddings folder: checked against the model later, so where it is
 * written is kept. */
static int h_embeddings(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    return h_string(L, v, dst, k) || keep_where(L, v, &L->r->embeddings_where) ? -1 : 0;
}

static int h_enum(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    char expected[256], buf[64];
    int value;

    sdm_enum_list(k->names, expected, sizeof expected);
    if (scalar_or_fail(L, v, k, expected))
        return -1;
    if (sdm_enum_parse(k->names, (const char *)v->data.scalar.value, &value))
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    *(int *)dst = value;
    return 0;
}

/* A sampler's name or alias; a name that says Karras sets karras_by_name. */
static int h_sampler(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    const char *expected =
        "a sampler (auto, ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_sde, pndm, lms, heun, unipc or "
        "lcm; `sdmorph samplers` lists them and their aliases)";
    char buf[64];
    bool karras = false;

    if (scalar_or_fail(L, v, k, expected))
        return -1;
    if (sdm_sampler_parse((const char *)v->data.scalar.value, (sdm_sampler *)dst, &karras))
        return fail_at(L, v, "'%s': expected %s, not '%s'", k->key, expected, quote(v, buf, sizeof buf));
    L->karras_by_name = karras;
    return 0;
}

static int h_spacing(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    char buf[64];
    sdm_spacing s;

    if (scalar_or_fail(L, v, k, "leading, trailing or linspace"))
        return -1;
    if (sdm_spacing_from_str((const char *)v->data.scalar.value, &s))
        return fail_at(L, v, "'%s': expected leading, trailing or linspace, not '%s'", k->key,
                       quote(v, buf, sizeof buf));
    *(int *)dst = (int)s;
    return 0;
}

/* Which names are formats is output_name.c's to say; the recipe adds where. */
static int check_output_path(loader *L, yaml_node_t *v, const char *key, const char *path, int sheet)
{
    sdm_error e = { 0 };

    if (!*path)
        return fail_at(L, v, "'%s': expected a file name, found an empty string", key);
    if (sdm_output_check(path, sheet, &e))
        return fail_at(L, v, "'%s': %s", key, e.msg);
    return 0;
}

static int h_outputs(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    sdm_recipe *r = dst;
    yaml_node_item_t *it;
    int n;

    if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
        r->outputs = calloc(1, sizeof *r->outputs);
        if (!r->outputs)
            return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
        if (take_string(L, v, k->key, &r->outputs[0]))
            return -1;
        r->n_outputs = 1;
        return check_output_path(L, v, k->key, r->outputs[0], 0);
    }
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start)
        return fail_at(L, v, "'%s': expected a file name or a list of file names, found %s", k->key,
                       v->type == YAML_SEQUENCE_NODE ? "an empty list"
                       : is_null(v)                  ? "nothing"
                                                     : node_kind(v));
    n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > SDM_MAX_OUTPUTS)
        return fail_at(L, v, "'%s': %d outputs; expected at most %d", k->key, n, SDM_MAX_OUTPUTS);
    r->outputs = calloc((size_t)n, sizeof *r->outputs);
    if (!r->outputs)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(L->doc, *it);
        if (!e || e->type != YAML_SCALAR_NODE || is_null(e))
            return fail_at(L, e ? e : v, "'%s': expected a file name, found %s", k->key,
                           !e || is_null(e) ? "nothing" : node_kind(e));
        if (take_string(L, e, k->key, &r->outputs[r->n_outputs]))
            return -1;
        r->n_outputs++;
        if (check_output_path(L, e, k->key, r->outputs[r->n_outputs - 1], 0))
            return -1;
    }
    return 0;
}

/* [height, width] (diffusers' order), each an integer in lo..hi: SDXL's
 * size and crop conditioning. Marks the recipe as asking for it. */
static int h_pair(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    yaml_node_item_t *it;
    int *pair = dst, i = 0;
    key_spec one = *k;

    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
        return fail_at(L, v, "'%s': expected [height, width], two integers in %.0f..%.0f, found %s", k->key, k->lo,
                       k->hi, is_null(v) ? "nothing" : node_kind(v));
    one.flags &= ~(unsigned)K_MULT8;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++, i++) {
        yaml_node_t *e = yaml_document_get_node(L->doc, *it);
        if (!e || h_int(L, e, &pair[i], &one))
            return e ? -1 : fail_at(L, v, "'%s': expected [height, width]%s", k->key, "");
    }
    L->r->size_conditioning = true;
    /* the first one given is where a model without size conditioning is refused */
    return L->r->size_where ? 0 : keep_where(L, v, &L->r->size_where);
}

static int h_sheet(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    if (is_null(v))
        return fail_at(L, v, "'%s': expected a .png file name, found nothing", k->key);
    if (take_string(L, v, k->key, (char **)dst))
        return -1;
    return check_output_path(L, v, k->key, *(char **)dst, 1);
}

static int h_keyframes(loader *L, yaml_node_t *v, void *dst, const key_spec *k);
static int h_walk(loader *L, yaml_node_t *v, void *dst, const key_spec *k);

#define R(m) offsetof(sdm_recipe, m)
#define KF(m) offsetof(sdm_keyframe, m)
#define W(m) offsetof(sdm_walk, m)
#define FRAMES_MAX 100000
/* More than any CLIP has layers; the model's own count is checked by preflight. */
#define SDM_MAX_CLIP_SKIP 48
#define BEATS_MAX 100000

static const key_spec recipe_keys[] = {
    { "model", h_string, R(model), 0, 0, NULL, K_NOTNULL },
    { "width", h_int, R(width), 64, 4096, NULL, K_MULT8 },
    { "height", h_int, R(height), 64, 4096, NULL, K_MULT8 },
    { "steps", h_int, R(steps), 1, 1000, NULL, 0 },
    { "guidance", h_double, R(guidance), 0, 100, NULL, 0 },
    { "negative", h_string, R(negative), 0, 0, NULL, 0 },
    { "seed", h_u64, R(seed), 0, 0, NULL, 0 },
    { "weighting", h_enum, R(weighting), 0, 0, &weighting_names, 0 },
    { "embeddings", h_embeddings, R(embeddings), 0, 0, NULL, K_NOTNULL },
    { "clip_skip", h_int, KF(clip_skip), 1, SDM_MAX_CLIP_SKIP, NULL, K_DEFAULTS },
    { "fps", h_double, R(fps), SDM_MIN_FPS, 240, NULL, 0 },
    { "bpm", h_double, R(bpm), 1, 1000, NULL, 0 },
    { "sampler", h_sampler, R(sampler), 0, 0, NULL, 0 },
    { "eta", h_double, R(eta), 0, 1, NULL, 0 },
    { "karras", h_bool, R(karras), 0, 0, NULL, 0 },
    { "timestep_spacing", h_spacing, R(timestep_spacing), 0, 0, NULL, 0 },
    { "guidance_rescale", h_double, R(guidance_rescale), 0, 1, NULL, 0 },
    { "original_size", h_pair, R(original_size), 1, 16384, NULL, 0 },
    { "crops_coords_top_left", h_pair, R(crops_coords_top_left), 0, 16384, NULL, 0 },
    { "target_size", h_pair, R(target_size), 1, 16384, NULL, 0 },
    { "batch", h_int, R(batch), 0, 1024, NULL, 0 },
    { "output", h_outputs, 0, 0, 0, NULL, 0 },
    { "contact_sheet", h_sheet, R(contact_sheet), 0, 0, NULL, 0 },
    { "gif_palette", h_enum, R(gif_palette), 0, 0, &sdm_gif_palette_names, 0 },
    { "gif_dither", h_enum, R(gif_dither), 0, 0, &sdm_gif_dither_names, 0 },
    { "loop", h_enum, R(loop), 0, 0, &loop_names, 0 },
    { "frames", h_int, KF(frames), 1, FRAMES_MAX, NULL, K_DEFAULTS },
    { "interp", h_enum, KF(interp), 0, 0, &interp_names, K_DEFAULTS },
    { "ease", h_enum, KF(ease), 0, 0, &ease_names, K_DEFAULTS },
    { "hold", h_int, KF(hold), 0, FRAMES_MAX, NULL, K_DEFAULTS },
    { "retime", h_enum, KF(retime), 0, 0, &retime_names, K_DEFAULTS },
    { "beats", h_double, KF(beats), 0, BEATS_MAX, NULL, K_DEFAULTS | K_LO_OPEN },
    { "image", h_string, KF(image), 0, 0, NULL, K_DEFAULTS | K_NOTNULL },
    { "strength", h_double, KF(strength), 0, 1, NULL, K_DEFAULTS },
    { "fit", h_enum, KF(fit), 0, 0, &sdm_image_fit_names, K_DEFAULTS },
    { "keyframes", h_keyframes, 0, 0, 0, NULL, K_LATE },
    { "walk", h_walk, 0, 0, 0, NULL, K_LATE },
};

static const key_spec keyframe_keys[] = {
    { "prompt", h_string, KF(prompt), 0, 0, NULL, K_REQUIRED | K_NOTNULL },
    { "negative", h_string, KF(negative), 0, 0, NULL, 0 },
    { "seed", h_u64, KF(seed), 0, 0, NULL, 0 },
    { "guidance", h_double, KF(guidance), 0, 100, NULL, 0 },
    { "clip_skip", h_int, KF(clip_skip), 1, SDM_MAX_CLIP_SKIP, NULL, 0 },
    { "hold", h_int, KF(hold), 0, FRAMES_MAX, NULL, 0 },
    { "frames", h_int, KF(frames), 1, FRAMES_MAX, NULL, 0 },
    { "interp", h_enum, KF(interp), 0, 0, &interp_names, 0 },
    { "ease", h_enum, KF(ease), 0, 0, &ease_names, 0 },
    { "retime", h_enum, KF(retime), 0, 0, &retime_names, 0 },
    { "beats", h_double, KF(beats), 0, BEATS_MAX, NULL, K_LO_OPEN },
    { "image", h_string, KF(image), 0, 0, NULL, K_NOTNULL },
    { "strength", h_double, KF(strength), 0, 1, NULL, 0 },
    { "fit", h_enum, KF(fit), 0, 0, &sdm_image_fit_names, 0 },
};

static const key_spec walk_keys[] = {
    { "prompt", h_string, W(prompt), 0, 0, NULL, K_REQUIRED | K_NOTNULL },
    { "negative", h_string, W(negative), 0, 0, NULL, 0 },
    { "seed", h_u64, W(seed), 0, 0, NULL, 0 },
    { "guidance", h_double, W(guidance), 0, 100, NULL, 0 },
    { "clip_skip", h_int, W(clip_skip), 1, SDM_MAX_CLIP_SKIP, NULL, 0 },
    { "frames", h_int, W(frames), 1, FRAMES_MAX, NULL, 0 },
    { "sigma", h_double, W(sigma), 0, 10, NULL, 0 },
    { "anchor", h_double, W(anchor), 0, 1, NULL, 0 },
    { "noise_seed", h_u64, W(noise_seed), 0, 0, NULL, 0 },
    { "closed", h_bool, W(closed), 0, 0, NULL, 0 },
    { "image", h_string, W(image), 0, 0, NULL, K_NOTNULL },
    { "strength", h_double, W(strength), 0, 1, NULL, 0 },
    { "fit", h_enum, W(fit), 0, 0, &sdm_image_fit_names, 0 },
};

#define COUNT(t) (sizeof t / sizeof t[0])
#define MAX_KEYS COUNT(recipe_keys)

static const struct {
    const char *what;
    const key_spec *keys;
    size_t n;
} tables[] = {
    { "recipe", recipe_keys, COUNT(recipe_keys) },
    { "keyframe", keyframe_keys, COUNT(keyframe_keys) },
    { "walk", walk_keys, COUNT(walk_keys) },
};

/* Levenshtein distance, for "did you mean"; keys are short. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64], i, j;

    if (la >= 63 || lb >= 63)
        return (size_t)-1;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int fail_unknown(loader *L, yaml_node_t *key, const char *what, const key_spec *t, size_t n)
{
    const char *name = (const char *)key->data.scalar.value, *best = NULL;
    size_t best_d = (size_t)-1, len = strlen(name);
    char list[512] = "", buf[64];

    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(name, t[i].key);
        if (d < best_d) {
            best_d = d;
            best = t[i].key;
        }
    }
    quote(key, buf, sizeof buf);
    if (best && best_d <= 2 && best_d < len)
        return fail_at(L, key, "unknown key '%s' in %s; did you mean '%s'?", buf, what, best);
    /* A key of another mapping: say where it belongs. */
    for (size_t ti = 0; ti < COUNT(tables); ti++) {
        if (!strcmp(tables[ti].what, what))
            continue;
        for (size_t i = 0; i < tables[ti].n; i++)
            if (!strcmp(name, tables[ti].keys[i].key))
                return fail_at(L, key, "unknown key '%s' in %s; '%s' belongs in %s", buf, what, name, tables[ti].what);
    }
    for (size_t i = 0; i < n; i++) {
        strncat(list, t[i].key, sizeof list - strlen(list) - 1);
        if (i + 1 < n)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return fail_at(L, key, "unknown key '%s' in %s; expected one of: %s", buf, what, list);
}

/* Reads one mapping through its table: every key checked first, then the
 * handlers run, K_LATE ones last. seen[] gets each key's nodes. */
static int parse_mapping(loader *L, yaml_node_t *map, const char *what, const key_spec *t, size_t n, void *base,
                         seen_pair *seen)
{
    yaml_node_pair_t *p;

    if (map->type != YAML_MAPPING_NODE)
        return fail_at(L, map, "expected the %s's keys (a mapping), found %s", what,
                       is_null(map) ? "nothing" : node_kind(map));
    memset(seen, 0, n * sizeof *seen);
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        size_t i;

        if (!k || !v)
            return fail_at(L, map, "malformed mapping in %s", what);
        if (k->type != YAML_SCALAR_NODE)
            return fail_at(L, k, "expected a key name in %s, found %s", what, node_kind(k));
        for (i = 0; i < n; i++)
            if (!strcmp((const char *)k->data.scalar.value, t[i].key))
                break;
        if (i == n)
            return fail_unknown(L, k, what, t, n);
        if (seen[i].key)
            return fail_at(L, k, "duplicate key '%s' in %s (first given at %lu:%lu)", t[i].key, what,
                           (unsigned long)seen[i].key->start_mark.line + 1,
                           (unsigned long)seen[i].key->start_mark.column + 1);
        seen[i].key = k;
        seen[i].value = v;
    }
    for (int late = 0; late < 2; late++) {
        for (size_t i = 0; i < n; i++) {
            void *obj = (t[i].flags & K_DEFAULTS) ? (void *)&L->def : base;
            if (!seen[i].key || !!(t[i].flags & K_LATE) != late)
                continue;
            if (t[i].fn(L, seen[i].value, (char *)obj + t[i].offset, &t[i]))
                return -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if ((t[i].flags & K_REQUIRED) && !seen[i].key)
            return fail_at(L, map, "missing key '%s' in %s; every %s needs one", t[i].key, what, what);
    return 0;
}

static yaml_node_t *seen_key(const key_spec *t, size_t n, const seen_pair *seen, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].key, key))
            return seen[i].key;
    return NULL;
}

/* With bpm a transition is given in beats, without it in frames: the other
 * key is refused where it is written. */
static int check_timing(loader *L, const key_spec *t, size_t n, const seen_pair *seen)
{
    yaml_node_t *frames = seen_key(t, n, seen, "frames"), *beats = seen_key(t, n, seen, "beats");

    if (L->r->bpm > 0 && frames)
        return fail_at(L, frames, "'frames': with 'bpm' a transition is given in beats; write 'beats:' instead");
    if (!(L->r->bpm > 0) && beats)
        return fail_at(L, beats,
                       "'beats' needs 'bpm' (beats per minute) at the top of the recipe; "
                       "or give the transition in 'frames'");
    return 0;
}

static int beside_recipe(const loader *L, const char *key, char **path);

static int overridden(const loader *L, const char *key);

/* A keyframe's (or the walk's) picture: its own, relative to the recipe
 * (unless `key` came from the command line), else the recipe's. The
 * command line's image, strength and fit replace every keyframe's own. */
static int own_image(loader *L, const char *key, char **image, double *strength, sdm_image_fit *fit)
{
    if (overridden(L, "strength"))
        *strength = L->def.strength;
    if (overridden(L, "fit"))
        *fit = L->def.fit;
    if (overridden(L, "image")) {
        free(*image);
        *image = NULL;
    }
    if (!*image && L->def.image)
        *image = strdup(L->def.image);
    else if (*image && beside_recipe(L, key, image))
        *image = NULL;
    else
        return 0;
    return *image ? 0 : sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
}

static int h_keyframes(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    sdm_recipe *r = L->r;
    yaml_node_item_t *it;
    size_t n;

    (void)dst; /* the table's signature: these write L->r */
    (void)k;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(L, v, "'keyframes': expected a list of keyframes, found %s",
                       is_null(v) ? "nothing" : node_kind(v));
    n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0)
        return fail_at(L, v, "'keyframes': the list is empty; expected at least one keyframe");
    r->keyframes = calloc(n, sizeof *r->keyframes);
    if (!r->keyframes)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    /* recipe-level seed and guidance are read by now: keyframes are K_LATE */
    L->def.seed = r->seed;
    L->def.guidance = r->guidance;
    if (beside_recipe(L, "image", &L->def.image))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(L->doc, *it);
        sdm_keyframe *kf = &r->keyframes[r->n_keyframes];
        seen_pair seen[COUNT(keyframe_keys)];

        if (!e)
            return fail_at(L, v, "malformed keyframe list");
        *kf = L->def;
        kf->prompt = NULL;
        kf->negative = NULL;
        kf->image = NULL;
        kf->mark.line = (int)e->start_mark.line + 1;
        kf->mark.col = (int)e->start_mark.column + 1;
        r->n_keyframes++;
        if (e->type == YAML_SCALAR_NODE) {
            if (is_null(e))
                return fail_at(L, e, "keyframe %d: expected a prompt or a mapping with 'prompt', found nothing",
                               r->n_keyframes - 1);
            if (take_string(L, e, "prompt", &kf->prompt) ||
                own_image(L, "keyframes", &kf->image, &kf->strength, &kf->fit))
                return -1;
            continue;
        }
        if (e->type != YAML_MAPPING_NODE)
            return fail_at(L, e, "keyframe %d: expected a prompt or a mapping with 'prompt', found %s",
                           r->n_keyframes - 1, node_kind(e));
        if (parse_mapping(L, e, "keyframe", keyframe_keys, COUNT(keyframe_keys), kf, seen) ||
            check_timing(L, keyframe_keys, COUNT(keyframe_keys), seen) ||
            own_image(L, "keyframes", &kf->image, &kf->strength, &kf->fit))
            return -1;
    }
    return 0;
}

static int h_walk(loader *L, yaml_node_t *v, void *dst, const key_spec *k)
{
    sdm_recipe *r = L->r;
    seen_pair seen[COUNT(walk_keys)];
    sdm_walk *w;
    sdm_keyframe *kf;

    (void)dst; /* the table's signature: these write L->r */
    (void)k;
    if (r->keyframes)
        return fail_at(L, v, "'walk' and 'keyframes' given together; a recipe has exactly one of them");
    w = calloc(1, sizeof *w);
    if (!w)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    r->walk = w;
    w->seed = r->seed;
    w->guidance = r->guidance;
    w->frames = L->def.frames;
    w->clip_skip = L->def.clip_skip;
    w->sigma = 0.02;
    w->anchor = 0.5;
    w->strength = L->def.strength;
    w->fit = L->def.fit;
    if (beside_recipe(L, "image", &L->def.image))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    w->mark.line = (int)v->start_mark.line + 1;
    w->mark.col = (int)v->start_mark.column + 1;
    if (parse_mapping(L, v, "walk", walk_keys, COUNT(walk_keys), w, seen) ||
        own_image(L, "walk", &w->image, &w->strength, &w->fit))
        return -1;
    /* noise_seed: by default the walk's seed, so one number picks one walk */
    if (!seen_key(walk_keys, COUNT(walk_keys), seen, "noise_seed"))
        w->noise_seed = w->seed;
    /* The walk is keyframe 0 for the renderer: its prompt, seed, guidance. */
    r->keyframes = calloc(1, sizeof *r->keyframes);
    if (!r->keyframes)
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    r->n_keyframes = 1;
    kf = &r->keyframes[0];
    kf->seed = w->seed;
    kf->guidance = w->guidance;
    kf->clip_skip = w->clip_skip;
    kf->frames = w->frames;
    kf->mark = w->mark;
    kf->strength = w->strength;
    kf->fit = w->fit;
    kf->prompt = strdup(w->prompt);
    if (w->negative)
        kf->negative = strdup(w->negative);
    if (w->image)
        kf->image = strdup(w->image);
    if (!kf->prompt || (w->negative && !kf->negative) || (w->image && !kf->image))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    return 0;
}

bool sdm_recipe_has_images(const sdm_recipe *r)
{
    for (int i = 0; r && i < r->n_keyframes; i++)
        if (r->keyframes[i].image)
            return true;
    return false;
}

double sdm_keyframe_strength(const sdm_keyframe *kf)
{
    return kf->image ? kf->strength : 1.0;
}

int64_t sdm_recipe_shown_frames(const sdm_recipe *r)
{
    int64_t fwd = 0;
    int n;

    if (!r || !r->n_keyframes)
        return 0;
    if (r->walk) {
        fwd = r->walk->frames;
        return r->loop == SDM_LOOP_PINGPONG && fwd > 1 ? 2 * fwd - 2 : fwd;
    }
    n = r->n_keyframes;
    for (int i = 0; i < n; i++) {
        const sdm_keyframe *kf = &r->keyframes[i];
        fwd += 1 + (int64_t)kf->hold;
        if (i + 1 < n || r->loop == SDM_LOOP_CYCLE)
            fwd += kf->frames - 1;
    }
    if (r->loop == SDM_LOOP_PINGPONG && n > 1)
        return 2 * fwd - (2 + (int64_t)r->keyframes[0].hold + r->keyframes[n - 1].hold);
    return fwd;
}

int sdm_recipe_embeddings_dir(const sdm_recipe *r, char *buf, size_t len)
{
    const char *slash = r->path ? strrchr(r->path, '/') : NULL;
    struct stat st;
    int n;

    if (!r->embeddings)
        return -1;
    if (r->embeddings[0] == '/' || !slash || !stat(r->embeddings, &st))
        n = snprintf(buf, len, "%s", r->embeddings);
    else
        n = snprintf(buf, len, "%.*s/%s", (int)(slash - r->path), r->path, r->embeddings);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

const char *sdm_recipe_negative(const sdm_recipe *r, const char *own)
{
    if (own)
        return own;
    return r->negative ? r->negative : "";
}

/* The sampler's own options, as the samplers take them (sampler.h). */
static int check_sampler(loader *L, seen_pair *seen)
{
    sdm_recipe *r = L->r;
    yaml_node_t *karras = seen_key(recipe_keys, COUNT(recipe_keys), seen, "karras");
    yaml_node_t *eta = seen_key(recipe_keys, COUNT(recipe_keys), seen, "eta");

    r->karras = r->karras || L->karras_by_name;
    if (r->karras && karras && !sdm_sampler_has_karras(r->sampler))
        return fail_at(L, karras,
                       "'karras': Karras sigmas apply to the euler, dpmpp_2m, dpmpp_2m_sde, lms, heun and "
                       "unipc samplers, not %s%s",
                       sdm_sampler_name(r->sampler), r->sampler == SDM_SAMPLER_EULER_A ? " (as in diffusers)" : "");
    if (r->eta > 0 && r->sampler != SDM_SAMPLER_DDIM && r->sampler != SDM_SAMPLER_AUTO)
        return fail_at(L, eta, "'eta': applies to the ddim sampler only, not %s", sdm_sampler_name(r->sampler));
    return 0;
}

/* A1111's syntax can fail (a weight that is not a number): say so now,
 * where the keyframe is, not when the model has loaded. */
static int check_prompt(loader *L, const sdm_mark *m, const char *what, int k, const char *text)
{
    sdm_prompt_runs runs = { 0 };
    sdm_error e = { 0 };
    yaml_mark_t ym = { 0, 0, 0 };

    if (!text || !sdm_prompt_parse(text, &runs, &e)) {
        sdm_prompt_runs_clear(&runs);
        return 0;
    }
    ym.line = m ? (size_t)(m->line - 1) : 0;
    ym.column = m ? (size_t)(m->col - 1) : 0;
    if (k >= 0)
        return fail_mark(L, ym, "keyframe %d: '%s': %s (or set 'weighting: none')", k, what, e.msg);
    return fail_mark(L, ym, "'%s': %s (or set 'weighting: none')", what, e.msg);
}

static int check_prompts(loader *L)
{
    const sdm_recipe *r = L->r;

    if (r->weighting != SDM_WEIGHTING_A1111)
        return 0;
    if (check_prompt(L, NULL, "negative", -1, r->negative))
        return -1;
    for (int i = 0; i < r->n_keyframes; i++) {
        const sdm_keyframe *kf = &r->keyframes[i];
        int k = r->walk ? -1 : i;
        if (check_prompt(L, &kf->mark, "prompt", k, kf->prompt) ||
            check_prompt(L, &kf->mark, "negative", k, kf->negative))
            return -1;
    }
    return 0;
}

/* Checks across keys, once everything is read. */
/* Beats to whole frames with the rounding carried over: keyframe i starts
 * at frame round(B_i * fps * 60 / bpm), B_i the beats before it, so no
 * keyframe is more than half a frame off its beat however many there are,
 * and a loop of B beats is round(B * fps * 60 / bpm) frames. A keyframe's
 * hold is part of its beats. */
static int beats_to_frames(loader *L)
{
    sdm_recipe *r = L->r;
    double per_beat = r->fps * 60.0 / r->bpm, at = 0;
    int segments = r->loop == SDM_LOOP_CYCLE ? r->n_keyframes : r->n_keyframes - 1;

    if (!(r->bpm > 0) || r->walk) {
        for (int i = 0; i < r->n_keyframes; i++)
            r->keyframes[i].beats = 0;
        return 0;
    }
    for (int i = 0; i < segments; i++) {
        sdm_keyframe *k = &r->keyframes[i];
        double start = floor(at * per_beat + 0.5), end = floor((at + k->beats) * per_beat + 0.5);
        double frames = end - start - k->hold;
        yaml_mark_t m = { 0, (size_t)k->mark.line - 1, (size_t)k->mark.col - 1 };

        if (!(frames >= 1 && frames <= FRAMES_MAX)) /* NaN too */
            return fail_mark(L, m,
                             "keyframe %d: %g beats at %g bpm and %g fps are %.0f frames%s; expected "
                             "1..%d for the transition",
                             i, k->beats, r->bpm, r->fps, end - start, k->hold ? " with its hold" : "", FRAMES_MAX);
        k->frames = (int)frames;
        at += k->beats;
    }
    return 0;
}

static int check_recipe(loader *L, yaml_node_t *root, seen_pair *seen)
{
    sdm_recipe *r = L->r;
    yaml_node_t *body = NULL, *loop = NULL;
    int64_t shown;

    for (size_t i = 0; i < COUNT(recipe_keys); i++) {
        if (!strcmp(recipe_keys[i].key, "keyframes") || !strcmp(recipe_keys[i].key, "walk"))
            body = seen[i].value ? seen[i].value : body;
        if (!strcmp(recipe_keys[i].key, "loop"))
            loop = seen[i].value;
    }
    if (!r->keyframes)
        return fail_at(L, root, "the recipe has neither 'keyframes' (a list) nor 'walk' (a mapping); expected one");
    if (r->walk && r->loop == SDM_LOOP_CYCLE)
        return fail_at(L, loop,
                       "'loop': cycle does not apply to a walk; expected none or pingpong "
                       "(for a walk that returns to its start, set 'closed: true' in walk)");
    if (!r->walk && r->loop == SDM_LOOP_CYCLE && r->n_keyframes < 2)
        return fail_at(L, loop, "'loop': cycle needs at least 2 keyframes; this recipe has 1");
    if (check_sampler(L, seen) || check_prompts(L) || check_timing(L, recipe_keys, COUNT(recipe_keys), seen) ||
        beats_to_frames(L))
        return -1;
    shown = sdm_recipe_shown_frames(r);
    if (shown > SDM_MAX_SHOWN_FRAMES)
        return fail_at(L, body, "the recipe shows %" PRId64 " frames; expected at most %d", shown,
                       SDM_MAX_SHOWN_FRAMES);
    return 0;
}

static int default_output(sdm_recipe *r, const char *name)
{
    const char *base = sdm_output_base_name(name), *dot = sdm_output_extension(name);
    size_t len = dot ? (size_t)(dot - base) : strlen(base);

    if (!len) {
        base = "recipe";
        len = strlen(base);
    }
    r->outputs = calloc(1, sizeof *r->outputs);
    if (!r->outputs)
        return -1;
    r->outputs[0] = malloc(len + 9);
    if (!r->outputs[0])
        return -1;
    snprintf(r->outputs[0], len + 9, "out/%.*s.mp4", (int)len, base);
    r->n_outputs = 1;
    return 0;
}

/* Pass over the events: one document, nesting and size bounded. The
 * document loader then works on input known to be small and shallow. */
static int precheck(loader *L, const unsigned char *text, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, docs = 0, rc = -1;
    long events = 0;

    if (!yaml_parser_initialize(&p))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    yaml_parser_set_input_string(&p, text, len);
    for (;;) {
        yaml_event_type_t type;
        yaml_mark_t mark;

        if (!yaml_parser_parse(&p, &ev)) {
            fail_parser(L, &p, text, len);
            goto end;
        }
        type = ev.type;
        mark = ev.start_mark;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
        if (++events > MAX_EVENTS) {
            fail_mark(L, mark, "the recipe is too large (more than %d YAML nodes)", MAX_EVENTS);
            goto end;
        }
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            fail_mark(L, mark, "a second YAML document; expected one recipe per file");
            goto end;
        }
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                fail_mark(L, mark, "nested more than %d levels deep; a recipe needs at most 4", MAX_DEPTH);
                goto end;
            }
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
    }
    rc = 0;
end:
    yaml_parser_delete(&p);
    return rc;
}

/* --- the command line's overrides ------------------------------------------ */

#define MAX_OVERRIDE_BYTES 65536

int sdm_recipe_is_key(const char *key)
{
    for (size_t i = 0; i < COUNT(recipe_keys); i++)
        if (!strcmp(recipe_keys[i].key, key))
            return 1;
    return 0;
}

static void mark_override(yaml_document_t *doc, int node, int k)
{
    yaml_node_t *n = yaml_document_get_node(doc, node);

    n->start_mark.index = n->end_mark.index = OVERRIDE_MARK + (size_t)k;
    n->start_mark.line = n->start_mark.column = 0;
}

/* Copies node `from` of src into dst, marked as override k; its index in
 * dst, or 0 when out of memory. Depth is bounded by precheck. */
static int copy_node(yaml_document_t *dst, yaml_document_t *src, yaml_node_t *from, int k)
{
    int to = 0;

    if (from->type == YAML_SCALAR_NODE) {
        to = yaml_document_add_scalar(dst, NULL, from->data.scalar.value, (int)from->data.scalar.length,
                                      from->data.scalar.style);
    } else if (from->type == YAML_SEQUENCE_NODE) {
        to = yaml_document_add_sequence(dst, NULL, YAML_FLOW_SEQUENCE_STYLE);
        for (yaml_node_item_t *it = from->data.sequence.items.start; to && it < from->data.sequence.items.top; it++) {
            int c = copy_node(dst, src, yaml_document_get_node(src, *it), k);
            if (!c || !yaml_document_append_sequence_item(dst, to, c))
                return 0;
        }
    } else if (from->type == YAML_MAPPING_NODE) {
        to = yaml_document_add_mapping(dst, NULL, YAML_FLOW_MAPPING_STYLE);
        for (yaml_node_pair_t *p = from->data.mapping.pairs.start; to && p < from->data.mapping.pairs.top; p++) {
            int ck = copy_node(dst, src, yaml_document_get_node(src, p->key), k);
            int cv = ck ? copy_node(dst, src, yaml_document_get_node(src, p->value), k) : 0;
            if (!cv || !yaml_document_append_mapping_pair(dst, to, ck, cv))
                return 0;
        }
    }
    if (to)
        mark_override(dst, to, k);
    return to;
}

/* Reads override k's value as YAML and puts it in place of its key's value
 * in the recipe's root mapping (or adds the key). */
static int apply_override(loader *L, int k)
{
    const sdm_recipe_override *o = &L->ov[k];
    size_t len = strlen(o->value);
    yaml_parser_t parser;
    yaml_document_t val;
    yaml_node_t *root, *v;
    int have_parser = 0, have_doc = 0, key, node, rc = -1;
    const char *name = L->name;

    L->name = o->option; /* a message about the value's YAML names the option */
    if (!sdm_recipe_is_key(o->key)) {
        yaml_mark_t m = { OVERRIDE_MARK + (size_t)k, 0, 0 };
        char list[512] = "";
        for (size_t i = 0; i < COUNT(recipe_keys); i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", recipe_keys[i].key);
        fail_mark(L, m, "unknown recipe key '%s'; expected one of: %s", o->key, list);
        goto end;
    }
    if (len > MAX_OVERRIDE_BYTES) {
        sdm_error_set(L->err, SDM_EXIT_USAGE, "%s: the value is more than %d bytes", o->option, MAX_OVERRIDE_BYTES);
        goto end;
    }
    if (precheck(L, (const unsigned char *)o->value, len))
        goto end;
    if (!yaml_parser_initialize(&parser)) {
        sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)o->value, len);
    if (!yaml_parser_load(&parser, &val)) {
        fail_parser(L, &parser, (const unsigned char *)o->value, len);
        goto end;
    }
    have_doc = 1;
    v = yaml_document_get_root_node(&val);
    key = yaml_document_add_scalar(L->doc, NULL, (yaml_char_t *)o->key, -1, YAML_PLAIN_SCALAR_STYLE);
    node = !key ? 0
           : v  ? copy_node(L->doc, &val, v, k)
                : yaml_document_add_scalar(L->doc, NULL, (yaml_char_t *)"", 0, YAML_PLAIN_SCALAR_STYLE);
    if (!node) {
        sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    mark_override(L->doc, key, k);
    mark_override(L->doc, node, k);
    root = yaml_document_get_root_node(L->doc);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        if (kn && kn->type == YAML_SCALAR_NODE && !strcmp((const char *)kn->data.scalar.value, o->key)) {
            p->value = node;
            rc = 0;
            goto end;
        }
    }
    if (!yaml_document_append_mapping_pair(L->doc, (int)(root - L->doc->nodes.start) + 1, key, node)) {
        sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    rc = 0;
end:
    if (have_doc)
        yaml_document_delete(&val);
    if (have_parser)
        yaml_parser_delete(&parser);
    L->name = name;
    return rc;
}

/* The overrides as "key=value", for the sidecar. */
static int keep_overrides(loader *L)
{
    sdm_recipe *r = L->r;

    if (!L->n_ov)
        return 0;
    r->overrides = calloc((size_t)L->n_ov, sizeof *r->overrides);
    if (!r->overrides)
        return -1;
    for (int k = 0; k < L->n_ov; k++) {
        size_t n = strlen(L->ov[k].key) + strlen(L->ov[k].value) + 2;
        r->overrides[k] = malloc(n);
        if (!r->overrides[k])
            return -1;
        snprintf(r->overrides[k], n, "%s=%s", L->ov[k].key, L->ov[k].value);
        r->n_overrides++;
    }
    return 0;
}

/* --- paths relative to the recipe ------------------------------------------ */

static int overridden(const loader *L, const char *key)
{
    for (int k = 0; k < L->n_ov; k++)
        if (!strcmp(L->ov[k].key, key))
            return 1;
    return 0;
}

/* A relative path in the file is relative to the file's folder. */
static int beside_recipe(const loader *L, const char *key, char **path)
{
    const char *slash = strrchr(L->name, '/');
    size_t dir = slash ? (size_t)(slash - L->name) + 1 : 0, n;
    char *joined;

    if (!*path || !dir || (*path)[0] == '/' || overridden(L, key))
        return 0;
    n = dir + strlen(*path) + 1;
    joined = malloc(n);
    if (!joined)
        return -1;
    snprintf(joined, n, "%.*s%s", (int)dir, L->name, *path);
    free(*path);
    *path = joined;
    return 0;
}

static int resolve_paths(loader *L)
{
    sdm_recipe *r = L->r;

    for (int i = 0; i < r->n_outputs; i++)
        if (beside_recipe(L, "output", &r->outputs[i]))
            return -1;
    return beside_recipe(L, "contact_sheet", &r->contact_sheet) || beside_recipe(L, "model", &r->model) ? -1 : 0;
}

/* A recipe with every default a recipe may leave out, named name; the
 * keyframes' defaults in L->def. NULL when out of memory. */
static sdm_recipe *recipe_defaults(loader *L, const char *name)
{
    sdm_recipe *r = calloc(1, sizeof *r);

    if (r)
        r->path = strdup(name);
    if (!r || !r->path) {
        free(r);
        return NULL;
    }
    r->steps = 30;
    r->guidance = 7.5;
    r->fps = 12;
    r->sampler = SDM_SAMPLER_AUTO;
    r->loop = SDM_LOOP_NONE;
    r->gif_palette = SDM_GIF_PALETTE_DEFAULT;
    r->gif_dither = SDM_GIF_DITHER_DEFAULT;
    L->def.frames = 16;
    L->def.clip_skip = 1;
    L->def.beats = 4;
    L->def.interp = SDM_INTERP_LERP;
    L->def.ease = SDM_EASE_LINEAR;
    L->def.strength = SDM_DEFAULT_STRENGTH;
    L->def.fit = SDM_FIT_CROP;
    return r;
}

/* The parsed document into L->r: the overrides applied, every key read
 * and checked, paths made relative to the recipe, outputs defaulted. */
static int read_document(loader *L)
{
    yaml_node_t *root = yaml_document_get_root_node(L->doc);
    seen_pair seen[MAX_KEYS];
    sdm_recipe *r = L->r;

    if (!root || is_null(root)) {
        yaml_mark_t m = { 0, 0, 0 };
        return fail_mark(L, m, "the recipe is empty; expected a mapping with 'keyframes' or 'walk'");
    }
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(L, root, "expected the recipe's keys (a mapping) at the top level, found %s", node_kind(root));
    for (int k = 0; k < L->n_ov; k++)
        if (apply_override(L, k))
            return -1;
    root = yaml_document_get_root_node(L->doc);
    if (parse_mapping(L, root, "recipe", recipe_keys, COUNT(recipe_keys), r, seen) || check_recipe(L, root, seen))
        return -1;
    if (resolve_paths(L) || keep_overrides(L) || (!r->outputs && default_output(r, L->name)) ||
        (!r->negative && !(r->negative = strdup(""))))
        return sdm_error_set(L->err, SDM_EXIT_RUNTIME, "out of memory");
    return 0;
}

int sdm_recipe_load_string_with(const char *name, const char *text, size_t len, const sdm_recipe_override *ov, int n_ov,
                                sdm_recipe **out, sdm_error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0, rc = -1;
    sdm_recipe *r = NULL;
    loader L;

    *out = NULL;
    if (!name)
        name = "<recipe>";
    memset(&L, 0, sizeof L);
    L.name = name;
    L.doc = &doc;
    L.err = err;
    L.ov = ov;
    L.n_ov = n_ov;
    if (!text) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: no recipe text", name);
        goto end;
    }
    if (len > MAX_RECIPE_BYTES) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: the recipe is %zu bytes; expected at most %u", name, len,
                      MAX_RECIPE_BYTES);
        goto end;
    }
    L.r = r = recipe_defaults(&L, name);
    if (!r) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (precheck(&L, (const unsigned char *)text, len))
        goto end;
    if (!yaml_parser_initialize(&parser)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        fail_parser(&L, &parser, (const unsigned char *)text, len);
        goto end;
    }
    have_doc = 1;
    if (read_document(&L))
        goto end;
    *out = r;
    r = NULL;
    rc = 0;
end:
    free(L.def.image);
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    sdm_recipe_free(&r);
    if (rc && err && !err->code)
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: invalid recipe", name);
    return rc;
}

int sdm_recipe_load_string(const char *name, const char *text, size_t len, sdm_recipe **out, sdm_error *err)
{
    return sdm_recipe_load_string_with(name, text, len, NULL, 0, out, err);
}

int sdm_recipe_load(const char *path, sdm_recipe **out, sdm_error *err)
{
    return sdm_recipe_load_with(path, NULL, 0, out, err);
}

int sdm_recipe_load_with(const char *path, const sdm_recipe_override *ov, int n_ov, sdm_recipe **out, sdm_error *err)
{
    FILE *f = NULL;
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;

    *out = NULL;
    if (!path) {
        sdm_error_set(err, SDM_EXIT_USAGE, "no recipe file given");
        goto end;
    }
    f = fopen(path, "rb");
    if (!f) {
        sdm_error_set(err, SDM_EXIT_USAGE, "cannot open recipe %s: %s", path, strerror(errno));
        goto end;
    }
    /* Read in chunks: works for pipes too, and stops past the size limit. */
    for (;;) {
        size_t got;
        if (len == cap) {
            char *grown;
            if (cap > MAX_RECIPE_BYTES) {
                sdm_error_set(err, SDM_EXIT_USAGE, "%s: the recipe is larger than %u bytes", path, MAX_RECIPE_BYTES);
                goto end;
            }
            cap = cap ? cap * 2 : 65536;
            grown = realloc(text, cap);
            if (!grown) {
                sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
                goto end;
            }
            text = grown;
        }
        got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "cannot read recipe %s: %s", path, strerror(errno));
        goto end;
    }
    rc = sdm_recipe_load_string_with(path, text, len, ov, n_ov, out, err);
end:
    if (f)
        fclose(f);
    free(text);
    return rc;
}

void sdm_recipe_free(sdm_recipe **pr)
{
    sdm_recipe *r;

    if (!pr || !*pr)
        return;
    r = *pr;
    for (int i = 0; i < r->n_keyframes; i++) {
        free(r->keyframes[i].prompt);
        free(r->keyframes[i].negative);
        free(r->keyframes[i].image);
    }
    free(r->keyframes);
    if (r->walk) {
        free(r->walk->prompt);
        free(r->walk->negative);
        free(r->walk->image);
        free(r->walk);
    }
    for (int i = 0; i < r->n_outputs; i++)
        free(r->outputs[i]);
    free(r->outputs);
    for (int i = 0; i < r->n_overrides; i++)
        free(r->overrides[i]);
    free(r->overrides);
    free(r->path);
    free(r->model);
    free(r->negative);
    free(r->embeddings);
    free(r->embeddings_where);
    free(r->size_where);
    free(r->contact_sheet);
    free(r);
    *pr = NULL;
}
