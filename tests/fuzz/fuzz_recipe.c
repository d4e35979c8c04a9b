/* libFuzzer target: the recipe loader, and the planner on what it accepts.
 * Any byte string must load or fail with a message, never crash; a loaded
 * recipe must plan, print and write its JSON. A first line "# frames: SPEC"
 * (a YAML comment, so the loader ignores it) also runs sdm_plan_select(SPEC).
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "plan.h"
#include "recipe.h"

/* Planning is linear in the frames shown; a recipe may show 1,000,000,
 * which would make each such input take seconds. */
#define MAX_PLANNED_FRAMES 20000
/* sdm_plan_print writes a line per frame: only for small plans. */
#define MAX_PRINTED_FRAMES 2000

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    sdm_log_set_level(SDM_LOG_COUNT); /* the planner's warnings would flood the log */
    return 0;
}

/* The spec of a first line "# frames: SPEC", copied into buf; NULL if none. */
static const char *select_spec(const uint8_t *data, size_t size, char *buf, size_t len)
{
    static const char tag[] = "# frames: ";
    const uint8_t *nl;
    size_t n;

    if (size < sizeof tag - 1 || memcmp(data, tag, sizeof tag - 1))
        return NULL;
    data += sizeof tag - 1;
    size -= sizeof tag - 1;
    nl = memchr(data, '\n', size);
    n = nl ? (size_t)(nl - data) : size;
    if (n >= len || memchr(data, '\0', n))
        return NULL;
    memcpy(buf, data, n);
    buf[n] = '\0';
    return buf;
}

static void check_plan(const sdm_plan *p, const sdm_recipe *r)
{
    /* the header's promises: n_sequence is the recipe's frame count, and
     * every output frame points at a render */
    if (p->n_sequence != sdm_recipe_shown_frames(r) || p->n_renders < 1 || p->n_renders > p->n_sequence)
        abort();
    for (int i = 0; i < p->n_sequence; i++) {
        if (p->sequence[i] < 0 || p->sequence[i] >= p->n_renders)
            abort();
    }
    for (int i = 0; i < p->n_renders; i++) {
        const sdm_plan_frame *f = &p->renders[i];
        if (f->key_a < 0 || f->key_a >= r->n_keyframes || f->key_b < 0 || f->key_b >= r->n_keyframes)
            abort();
        if (!(f->t >= 0 && f->t <= 1))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_recipe *r = NULL;
    sdm_plan plan;
    sdm_error err = { 0 };
    char spec[256];
    const char *sel = select_spec(data, size, spec, sizeof spec);

    memset(&plan, 0, sizeof plan);
    /* "\x01KEY=VALUE\n" first: the rest is the recipe, changed as `--set KEY=VALUE` would */
    if (size > 1 && data[0] == 1 && memchr(data, '\n', size) && memchr(data, '=', size)) {
        const char *nl = memchr(data, '\n', size), *eq = memchr(data, '=', (size_t)(nl - (const char *)data));
        if (eq) {
            size_t kl = (size_t)(eq - (const char *)data) - 1, vl = (size_t)(nl - eq) - 1;
            char *key = strndup((const char *)data + 1, kl), *val = strndup(eq + 1, vl);
            sdm_recipe_override ov = { "--set", key, val };
            if (key && val && strlen(key) == kl && strlen(val) == vl &&
                sdm_recipe_load_string_with("fuzz.yaml", nl + 1, size - (size_t)(nl + 1 - (const char *)data), &ov, 1,
                                            &r, &err) &&
                (r || !err.code || !err.msg[0]))
                abort();
            sdm_recipe_free(&r);
            free(key);
            free(val);
            return 0;
        }
    }
    if (sdm_recipe_load_string("fuzz.yaml", (const char *)data, size, &r, &err)) {
        /* a failure always says why */
        if (r || !err.code || !err.msg[0])
            abort();
        return 0;
    }
    if (!r)
        abort();
    if (sdm_recipe_shown_frames(r) <= MAX_PLANNED_FRAMES) {
        memset(&err, 0, sizeof err);
        if (sdm_plan_make(r, &plan, &err)) {
            if (!err.msg[0])
                abort();
        } else {
            check_plan(&plan, r);
            if (plan.n_sequence <= MAX_PRINTED_FRAMES && devnull) {
                sdm_plan_print(&plan, r, devnull);
                sdm_plan_write_json(&plan, r, devnull);
            }
            memset(&err, 0, sizeof err);
            if (sel && sdm_plan_select(&plan, sel, &err) && !err.msg[0])
                abort();
        }
        sdm_plan_free(&plan);
    }
    sdm_recipe_free(&r);
    return 0;
}
