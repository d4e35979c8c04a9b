#include "enum_table.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Entry i is an alias when an earlier entry has its value. */
static int is_alias(const sdm_enum_table *t, int i)
{
    for (int j = 0; j < i; j++)
        if (t->entries[j].value == t->entries[i].value)
            return 1;
    return 0;
}

const char *sdm_enum_name(const sdm_enum_table *t, int v)
{
    for (int i = 0; i < t->n; i++)
        if (t->entries[i].value == v)
            return t->entries[i].name;
    return t->unknown;
}

int sdm_enum_parse(const sdm_enum_table *t, const char *s, int *out)
{
    for (int i = 0; s && i < t->n; i++) {
        if (!strcmp(s, t->entries[i].name)) {
            *out = t->entries[i].value;
            return 0;
        }
    }
    return -1;
}

int sdm_enum_parse_nocase(const sdm_enum_table *t, const char *s, int *out)
{
    for (int i = 0; s && i < t->n; i++) {
        if (!strcasecmp(s, t->entries[i].name)) {
            *out = t->entries[i].value;
            return 0;
        }
    }
    return -1;
}

void sdm_enum_list(const sdm_enum_table *t, char *buf, size_t len)
{
    int names = 0, k = 0;
    size_t used = 0;

    if (!len)
        return;
    buf[0] = 0;
    for (int i = 0; i < t->n; i++)
        names += !is_alias(t, i);
    for (int i = 0; i < t->n && used < len; i++) {
        if (is_alias(t, i))
            continue;
        k++;
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 k == 1       ? ""
                                 : k == names ? " or "
                                              : ", ",
                                 t->entries[i].name);
    }
}
