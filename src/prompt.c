/* A1111's attention syntax, read the way its parse_prompt_attention reads
 * it: the text is cut, left to right, into the first of these that fits
 *   \( \) \[ \] \\   an escaped character, literal
 *   \                a lone backslash: an empty run
 *   ( [              open a bracket (its run position is remembered)
 *   :NUMBER)         close the innermost "(" with weight NUMBER
 *   ) ]              close the innermost "(" ×1.1, "[" ×(1/1.1)
 *   text             a stretch without \ ( ) [ ] :
 *   :                itself
 * A closing bracket with nothing open is text; text is split at
 * "\s*\bBREAK\b\s*" (Python's Unicode \s and \w); brackets left open at
 * the end weigh everything after them; adjacent runs of equal weight are
 * joined. Multiplications happen in A1111's order, so weights are the same
 * doubles it computes. */
#include "prompt.h"

#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

typedef struct {
    sdm_prompt_run *runs;
    int n, cap;
} run_list;

static int push_run(run_list *l, const char *s, size_t len, double weight)
{
    char *text;

    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        sdm_prompt_run *r = realloc(l->runs, sizeof *r * (size_t)cap);
        if (!r)
            return -1;
        l->runs = r;
        l->cap = cap;
    }
    text = malloc(len + 1);
    if (!text)
        return -1;
    memcpy(text, s, len);
    text[len] = '\0';
    l->runs[l->n].text = text;
    l->runs[l->n].weight = weight;
    l->n++;
    return 0;
}

static void multiply_from(run_list *l, int start, double m)
{
    for (int p = start; p < l->n; p++)
        l->runs[p].weight *= m;
}

/* ------------------------------------------------------------------ */
/* Python's character classes                                          */

static int32_t decode_at(const char *s, size_t end, size_t i, size_t *len)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(end - i), &c);

    if (n <= 0) {
        *len = 1;
        return 0xfffd;
    }
    *len = (size_t)n;
    return c;
}

/* The code point that ends just before byte i (start: where the text begins). */
static int32_t decode_before(const char *s, size_t start, size_t i)
{
    size_t j = i - 1, len;
    int32_t c;

    while (j > start && i - j < 4 && ((unsigned char)s[j] & 0xc0) == 0x80)
        j--;
    c = decode_at(s, i, j, &len);
    return j + len == i ? c : 0xfffd;
}

/* str.isspace(): bidirectional class WS, B or S, or category Zs. */
static int py_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* re's \w on str: letters, numbers, underscore. */
static int py_word(int32_t c)
{
    if (c == '_')
        return 1;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* The value of a decimal digit (re's \d, which float() reads too), -1 for
 * anything else. Unicode encodes every decimal digit in runs of ten from
 * 0 to 9, so the value is the distance from its run's start, mod 10. */
static int digit_value(int32_t c)
{
    int32_t z = c;

    if (c >= '0' && c <= '9')
        return c - '0';
    if (utf8proc_category(c) != UTF8PROC_CATEGORY_ND)
        return -1;
    while (z > 0 && utf8proc_category(z - 1) == UTF8PROC_CATEGORY_ND)
        z--;
    return (int)((c - z) % 10);
}

/* ------------------------------------------------------------------ */
/* BREAK                                                                */

/* Whether "\s*\bBREAK\b\s*" matches at byte i of the text [a, b); *end
 * is where the match ends. */
static int break_at(const char *s, size_t a, size_t b, size_t i, size_t *end)
{
    size_t j = i, k, len;

    while (j < b && py_space(decode_at(s, b, j, &len)))
        j += len;
    if (b - j < 5 || memcmp(s + j, "BREAK", 5))
        return 0;
    /* with white space before it, the \b before BREAK holds */
    if (j == i && i > a && py_word(decode_before(s, a, i)))
        return 0;
    k = j + 5;
    if (k < b && py_word(decode_at(s, b, k, &len)))
        return 0;
    while (k < b && py_space(decode_at(s, b, k, &len)))
        k += len;
    *end = k;
    return 1;
}

/* Text of weight 1, split at BREAK as re.split does (empty parts kept). */
static int push_text(run_list *l, const char *s, size_t a, size_t b)
{
    size_t part = a, i = a, end;

    while (i < b) {
        if (!break_at(s, a, b, i, &end)) {
            i++;
            continue;
        }
        if (push_run(l, s + part, i - part, 1.0) || push_run(l, "BREAK", 5, -1.0))
            return -1;
        part = i = end;
    }
    return push_run(l, s + part, b - part, 1.0);
}

/* ------------------------------------------------------------------ */
/* weights                                                              */

/* ":([+-]?[.\d]+)\)" at byte i (a ':'): the end of the match, 0 if none. */
static size_t weight_at(const char *s, size_t n, size_t i)
{
    size_t j = i + 1, k, len;

    if (j < n && (s[j] == '+' || s[j] == '-'))
        j++;
    k = j;
    while (k < n) {
        if (s[k] == '.') {
            k++;
            continue;
        }
        if (digit_value(decode_at(s, n, k, &len)) < 0)
            break;
        k += len;
    }
    return k > j && k < n && s[k] == ')' ? k + 1 : 0;
}

/* float() of the number in [a, b): its digits as ASCII, then strtod, which
 * rounds as Python does. 1 where float() would raise ("1.2.3", "."), -1
 * out of memory. */
static int parse_weight(const char *s, size_t a, size_t b, double *out)
{
    char *buf = malloc(b - a + 1), *endp;
    size_t n = 0, len;
    int rc;

    if (!buf)
        return -1;
    for (size_t i = a; i < b; i += len) {
        int d = digit_value(decode_at(s, b, i, &len));
        buf[n++] = d >= 0 ? (char)('0' + d) : s[i];
    }
    buf[n] = '\0';
    *out = strtod(buf, &endp);
    rc = endp != buf && *endp == '\0' ? 0 : 1;
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ */

static void free_runs(sdm_prompt_run *runs, int n)
{
    for (int i = 0; i < n; i++)
        free(runs[i].text);
    free(runs);
}

/* Adjacent runs of equal weight become one (A1111's last step). */
static int merge_runs(run_list *l)
{
    int w = 0;

    for (int r = 1; r < l->n; r++) {
        sdm_prompt_run *a = &l->runs[w], *b = &l->runs[r];
        if (a->weight == b->weight) {
            size_t na = strlen(a->text), nb = strlen(b->text);
            char *t = realloc(a->text, na + nb + 1);
            if (!t)
                return -1;
            memcpy(t + na, b->text, nb + 1);
            a->text = t;
            free(b->text);
            b->text = NULL;
        } else {
            l->runs[++w] = *b;
            if (w != r)
                b->text = NULL; /* one owner, should a later realloc fail */
        }
    }
    if (l->n)
        l->n = w + 1;
    return 0;
}

static int is_special(char c)
{
    return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':';
}

static int no_memory(sdm_error *err)
{
    return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory reading a prompt");
}

/* The open brackets: the run each started at, innermost last. */
typedef struct {
    int *round, *square;
    int n_round, n_square;
} brackets;

/* ":NUMBER)" at byte at, ending at end: closes a "(" with that weight. */
static int close_weighted(const char *s, size_t at, size_t end, run_list *l, brackets *br, sdm_error *err)
{
    double w;
    int rc = parse_weight(s, at + 1, end - 1, &w);

    if (rc < 0)
        return no_memory(err);
    if (rc > 0)
        return sdm_error_set(err, SDM_EXIT_USAGE, "the weight \"%.*s\" at byte %zu of the prompt is not a number",
                             (int)(end - 1 - (at + 1)), s + at + 1, at + 1);
    multiply_from(l, br->round[--br->n_round], w);
    return 0;
}

/* One match of the pattern at byte *i; moves *i past it. */
static int parse_one(const char *s, size_t n, size_t *i, run_list *l, brackets *br, sdm_error *err)
{
    size_t at = *i, end = at + 1;
    int rc = 0;

    switch (s[at]) {
    case '\\':
        if (at + 1 < n && strchr("()[]\\", s[at + 1])) {
            rc = push_run(l, s + at + 1, 1, 1.0);
            end = at + 2;
        } else {
            rc = push_run(l, "", 0, 1.0);
        }
        break;
    case '(':
        br->round[br->n_round++] = l->n;
        break;
    case '[':
        br->square[br->n_square++] = l->n;
        break;
    case ':':
        end = weight_at(s, n, at);
        if (end && br->n_round) {
            *i = end;
            return close_weighted(s, at, end, l, br, err);
        }
        end = end ? end : at + 1;
        rc = push_text(l, s, at, end);
        break;
    case ')':
        if (br->n_round)
            multiply_from(l, br->round[--br->n_round], 1.1);
        else
            rc = push_text(l, s, at, end);
        break;
    case ']':
        if (br->n_square)
            multiply_from(l, br->square[--br->n_square], 1 / 1.1);
        else
            rc = push_text(l, s, at, end);
        break;
    default:
        while (end < n && !is_special(s[end]))
            end++;
        rc = push_text(l, s, at, end);
        break;
    }
    *i = end;
    return rc ? no_memory(err) : 0;
}

int sdm_prompt_parse(const char *text, sdm_prompt_runs *out, sdm_error *err)
{
    run_list l = { 0 };
    brackets br = { 0 };
    size_t n = text ? strlen(text) : 0, i = 0;
    int rc = -1;

    out->runs = NULL;
    out->n = 0;
    if (n > SDM_PROMPT_MAX_BYTES) {
        sdm_error_set(err, SDM_EXIT_USAGE, "the prompt is %zu bytes long; at most %d are read", n,
                      SDM_PROMPT_MAX_BYTES);
        goto end;
    }
    br.round = malloc(sizeof *br.round * (n + 1));
    br.square = malloc(sizeof *br.square * (n + 1));
    if (!br.round || !br.square) {
        no_memory(err);
        goto end;
    }
    while (i < n) {
        if (parse_one(text, n, &i, &l, &br, err))
            goto end;
    }
    for (int k = 0; k < br.n_round; k++)
        multiply_from(&l, br.round[k], 1.1);
    for (int k = 0; k < br.n_square; k++)
        multiply_from(&l, br.square[k], 1 / 1.1);
    if ((!l.n && push_run(&l, "", 0, 1.0)) || merge_runs(&l)) {
        no_memory(err);
        goto end;
    }
    out->runs = l.runs;
    out->n = l.n;
    l.runs = NULL;
    rc = 0;
end:
    if (l.runs)
        free_runs(l.runs, l.n);
    free(br.round);
    free(br.square);
    return rc;
}

int sdm_prompt_run_is_break(const sdm_prompt_run *r)
{
    return r && r->weight == -1.0 && !strcmp(r->text, "BREAK");
}

void sdm_prompt_runs_clear(sdm_prompt_runs *runs)
{
    if (!runs)
        return;
    free_runs(runs->runs, runs->n);
    runs->runs = NULL;
    runs->n = 0;
}
