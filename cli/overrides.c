#include "overrides.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int sdm_overrides_init(sdm_overrides *o, int argc)
{
    memset(o, 0, sizeof *o);
    o->cap = 2 * (argc > 0 ? argc : 1);
    o->items = calloc((size_t)o->cap, sizeof *o->items);
    o->owned = calloc((size_t)o->cap * 2, sizeof *o->owned);
    return o->items && o->owned ? 0 : -1;
}

void sdm_overrides_free(sdm_overrides *o)
{
    for (int i = 0; i < o->n_owned; i++)
        free(o->owned[i]);
    free(o->owned);
    free(o->items);
    memset(o, 0, sizeof *o);
}

/* A copy of the first n bytes of s kept until sdm_overrides_free. */
static const char *keep(sdm_overrides *o, const char *s, size_t n)
{
    char *c = malloc(n + 1);

    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    o->owned[o->n_owned++] = c;
    return c;
}

static int add(sdm_overrides *o, const char *option, const char *key, size_t key_len, const char *value,
               size_t value_len)
{
    sdm_recipe_override *it = &o->items[o->n];

    it->option = option;
    it->key = keep(o, key, key_len);
    it->value = keep(o, value, value_len);
    if (!it->key || !it->value)
        return -1;
    o->n++;
    return 0;
}

/* A path as a YAML double-quoted string: whatever it holds, it stays a string. */
static int add_path(sdm_overrides *o, const char *option, const char *key, const char *path)
{
    size_t n = strlen(path), k = 0;
    char *q = malloc(2 * n + 3);
    int rc;

    if (!q)
        return -1;
    q[k++] = '"';
    for (const char *p = path; *p; p++) {
        if (*p == '"' || *p == '\\')
            q[k++] = '\\';
        q[k++] = *p;
    }
    q[k++] = '"';
    rc = add(o, option, key, strlen(key), q, k);
    free(q);
    return rc;
}

int sdm_overrides_take(sdm_overrides *o, int argc, char **argv, int *i, const char *cmd)
{
    static const char *const simple[][2] = { { "--steps", "steps" },     { "--seed", "seed" },
                                             { "--sampler", "sampler" }, { "--strength", "strength" },
                                             { "--image", NULL },        { "--size", NULL },
                                             { "--set", NULL } };
    const char *value = NULL, *option, *x;
    char shown[512];

    for (size_t k = 0; k < sizeof simple / sizeof *simple; k++) {
        int got = sdm_option_value(argc, argv, i, simple[k][0], &value);
        if (got == 0)
            continue;
        if (got < 0) {
            fprintf(stderr, "%s: %s needs a value\n", cmd, simple[k][0]);
            return -1;
        }
        snprintf(shown, sizeof shown, "%s %s", simple[k][0], value);
        option = keep(o, shown, strlen(shown));
        if (!option)
            goto oom;
        if (simple[k][1]) {
            if (add(o, option, simple[k][1], strlen(simple[k][1]), value, strlen(value)))
                goto oom;
            return 1;
        }
        if (!strcmp(simple[k][0], "--image")) {
            if (add_path(o, option, "image", value))
                goto oom;
            return 1;
        }
        if (!strcmp(simple[k][0], "--size")) {
            x = strchr(value, 'x');
            if (!x || x == value || !x[1]) {
                fprintf(stderr, "%s: --size must be WIDTHxHEIGHT (e.g. 512x768), not '%s'\n", cmd, value);
                return -1;
            }
            if (add(o, option, "width", 5, value, (size_t)(x - value)) ||
                add(o, option, "height", 6, x + 1, strlen(x + 1)))
                goto oom;
            return 1;
        }
        x = strchr(value, '=');
        if (!x || x == value) {
            fprintf(stderr, "%s: --set must be KEY=VALUE with a top-level recipe key, not '%s'\n", cmd, value);
            return -1;
        }
        if (add(o, option, value, (size_t)(x - value), x + 1, strlen(x + 1)))
            goto oom;
        return 1;
    }
    return 0;
oom:
    fprintf(stderr, "%s: out of memory\n", cmd);
    return -1;
}
