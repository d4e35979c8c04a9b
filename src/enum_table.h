/* Names for the values of an enum that users spell (recipe keys,
 * model.yaml, command-line flags): one table per enum gives both
 * directions, so a name and its parse cannot drift apart. */
#ifndef SDM_ENUM_TABLE_H
#define SDM_ENUM_TABLE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;
    int value;
} sdm_enum_entry;

/* The first entry of a value is its name; later ones are aliases, parsed
 * but never printed ("fp16" for "float16"). */
typedef struct {
    const sdm_enum_entry *entries;
    int n;
    const char *unknown; /* the name of a value without one: "?" */
} sdm_enum_table;

#define SDM_ENUM_TABLE(entries)                                       \
    {                                                                 \
        (entries), (int)(sizeof(entries) / sizeof((entries)[0])), "?" \
    }

/* The name of v, or t->unknown. */
const char *sdm_enum_name(const sdm_enum_table *t, int v);
/* 0 with *out set if s is one of the names or aliases (exactly), else -1
 * (NULL s too). */
int sdm_enum_parse(const sdm_enum_table *t, const char *s, int *out);
/* The same, ignoring ASCII case. */
int sdm_enum_parse_nocase(const sdm_enum_table *t, const char *s, int *out);
/* "a, b or c": every value's name, aliases left out, for messages. */
void sdm_enum_list(const sdm_enum_table *t, char *buf, size_t len);

/* Defines the public pair of an enum over its table:
 *     const char *TYPE_name(TYPE v);
 *     int TYPE_from_str(const char *s, TYPE *out);    0, or -1 if unknown
 * (each use names the two functions in a comment, for grep). */
#define SDM_ENUM_FUNCTIONS(type, table)           \
    const char *type##_name(type v)               \
    {                                             \
        return sdm_enum_name(&(table), (int)v);   \
    }                                             \
    int type##_from_str(const char *s, type *out) \
    {                                             \
        int v;                                    \
        if (sdm_enum_parse(&(table), s, &v))      \
            return -1;                            \
        *out = (type)v;                           \
        return 0;                                 \
    }

#ifdef __cplusplus
}
#endif

#endif
