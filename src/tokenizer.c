/* CLIP's byte-level BPE, step for step what Hugging Face tokenizers runs
 * for transformers' CLIPTokenizer (the one diffusers pipelines load):
 *
 *  1. "<|startoftext|>" and "<|endoftext|>" spelled exactly so in the text
 *     are the special ids themselves;
 *  2. each stretch between them is normalized on its own: NFC, every run of
 *     white space to one " ", lowercase (full mapping, so U+0130 becomes
 *     "i" U+0307);
 *  3. pre-tokenization keeps the matches of CLIP's pattern
 *       <|startoftext|> <|endoftext|> 's 't 're 've 'm 'll 'd
 *       [\p{L}]+  [\p{N}]  [^\s\p{L}\p{N}]+
 *     and drops the white space between them; GPT-2's byte-level pattern
 *     then splits a lowercased special spelling into "<|", name, "|>";
 *  4. each piece's UTF-8 bytes become printable code points, "</w>" is
 *     appended to the last one, and merges apply lowest rank first.
 *
 * Unicode data (NFC, categories, case) come from utf8proc; vocab.json is
 * parsed with json-c. Invalid UTF-8 is replaced by U+FFFD per maximal
 * ill-formed subpart, as Python's bytes.decode("utf-8", "replace") does. */
#include "tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <utf8proc.h>

#include "hash.h"

#define MAX_VOCAB_ID (1 << 24)

static const char BOS_TEXT[] = "<|startoftext|>";
static const char EOS_TEXT[] = "<|endoftext|>";
static const char END_OF_WORD[] = "</w>";

typedef struct {
    uint32_t hash;
    int32_t id; /* -1: empty */
} vocab_slot;

typedef struct {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX: empty */
    int32_t rank;
    int32_t id; /* the merged token */
} merge_slot;

struct sdm_tokenizer {
    sdm_tokenizer_params params;
    int bos, eos, pad, unk;
    int n_ids; /* largest id + 1 */
    char **piece; /* by id; NULL where vocab.json has no such id */
    int *piece_len;
    char *arena;
    vocab_slot *vocab;
    uint32_t vocab_mask;
    merge_slot *merges;
    uint32_t merge_mask;
    int n_merges;
    int32_t byte_sym[256]; /* symbol id of a byte inside a word */
    int32_t byte_sym_end[256]; /* ... and at a word's end ("</w>" appended) */
};

/* ------------------------------------------------------------------ */
/* hash maps                                                          */

/* FNV-1a 64 folded to 32 bits: the tables index by the low bits */
static uint32_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = sdm_fnv1a64(SDM_FNV1A64_OFFSET, s, n);
    return (uint32_t)(h ^ (h >> 32));
}

static uint32_t hash_pair(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (uint32_t)key;
}

static uint32_t table_size(size_t n)
{
    uint32_t size = 16;
    while (size < 2 * n)
        size <<= 1;
    return size;
}

static int vocab_find(const sdm_tokenizer *tok, const char *s, size_t n)
{
    uint32_t h = hash_bytes(s, n);
    for (uint32_t i = h & tok->vocab_mask;; i = (i + 1) & tok->vocab_mask) {
        const vocab_slot *slot = &tok->vocab[i];
        if (slot->id < 0)
            return -1;
        if (slot->hash == h && (size_t)tok->piece_len[slot->id] == n && memcmp(tok->piece[slot->id], s, n) == 0)
            return slot->id;
    }
}

static void vocab_insert(sdm_tokenizer *tok, int id)
{
    uint32_t h = hash_bytes(tok->piece[id], (size_t)tok->piece_len[id]);
    uint32_t i = h & tok->vocab_mask;
    while (tok->vocab[i].id >= 0)
        i = (i + 1) & tok->vocab_mask;
    tok->vocab[i].hash = h;
    tok->vocab[i].id = id;
}

static const merge_slot *merge_find(const sdm_tokenizer *tok, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = hash_pair(key) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        const merge_slot *slot = &tok->merges[i];
        if (slot->key == key)
            return slot;
        if (slot->key == UINT64_MAX)
            return NULL;
    }
}

/* A repeated pair takes the later rank, as tokenizers' map does. */
static void merge_insert(sdm_tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = hash_pair(key) & tok->merge_mask;
    while (tok->merges[i].key != UINT64_MAX && tok->merges[i].key != key)
        i = (i + 1) & tok->merge_mask;
    if (tok->merges[i].key == UINT64_MAX)
        tok->n_merges++;
    tok->merges[i].key = key;
    tok->merges[i].rank = rank;
    tok->merges[i].id = id;
}

/* ------------------------------------------------------------------ */
/* loading                                                            */

static int read_file(const char *path, char **out, size_t *len, sdm_error *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = -1;

    *out = NULL;
    if (!f) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
        goto end;
    }
    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap ? 2 * cap : 1 << 16;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory", path);
                goto end;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: read error", path);
        goto end;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
end:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

static void line_col(const char *buf, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* text (len bytes of path) parsed as one strict JSON object and nothing
 * after it; errors name the line and column. *root is the caller's to put. */
static int parse_object(const char *path, const char *text, size_t len, struct json_object **root, sdm_error *err)
{
    struct json_tokener *jt = json_tokener_new();
    int rc = -1, line, col;

    if (!jt)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory", path);
    json_tokener_set_flags(jt, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    *root = json_tokener_parse_ex(jt, text, (int)len);
    if (!*root) {
        enum json_tokener_error je = json_tokener_get_error(jt);
        line_col(text, json_tokener_get_parse_end(jt), &line, &col);
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%d:%d: not valid JSON: %s", path, line, col,
                      je == json_tokener_continue ? "unexpected end of file" : json_tokener_error_desc(je));
        goto end;
    }
    for (size_t i = json_tokener_get_parse_end(jt); i < len; i++) {
        if (!strchr(" \t\r\n", text[i])) {
            line_col(text, i, &line, &col);
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%d:%d: text after the JSON object", path, line, col);
            goto end;
        }
    }
    if (!json_object_is_type(*root, json_type_object)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: expected a JSON object of token -> id", path);
        goto end;
    }
    rc = 0;
end:
    json_tokener_free(jt);
    return rc;
}

/* Checks every token -> id pair; the count, the largest id and the bytes
 * the tokens take with their NULs. */
static int measure_vocab(struct json_object *root, const char *path, int *n_keys, int *max_id, size_t *arena_len,
                         sdm_error *err)
{
    json_object_object_foreach(root, key, val)
    {
        int64_t id;
        if (!json_object_is_type(val, json_type_int))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the id of \"%.80s\" is not an integer", path, key);
        id = json_object_get_int64(val);
        if (id < 0 || id >= MAX_VOCAB_ID)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the id of \"%.80s\" is %lld, outside 0..%d", path, key,
                                 (long long)id, MAX_VOCAB_ID - 1);
        if (!*key)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: an empty token (id %lld)", path, (long long)id);
        if (id > *max_id)
            *max_id = (int)id;
        *arena_len += strlen(key) + 1;
        (*n_keys)++;
    }
    if (*n_keys == 0)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the vocabulary is empty", path);
    return 0;
}

/* tok's pieces (id -> token) and its token -> id table, from the pairs
 * measure_vocab passed; an id given twice is refused. */
static int fill_vocab(sdm_tokenizer *tok, struct json_object *root, const char *path, int n_keys, int max_id,
                      size_t arena_len, sdm_error *err)
{
    size_t used = 0;

    tok->n_ids = max_id + 1;
    tok->piece = calloc((size_t)tok->n_ids, sizeof *tok->piece);
    tok->piece_len = calloc((size_t)tok->n_ids, sizeof *tok->piece_len);
    tok->arena = malloc(arena_len);
    tok->vocab_mask = table_size((size_t)n_keys) - 1;
    tok->vocab = malloc(sizeof *tok->vocab * ((size_t)tok->vocab_mask + 1));
    if (!tok->piece || !tok->piece_len || !tok->arena || !tok->vocab)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory", path);
    for (uint32_t i = 0; i <= tok->vocab_mask; i++)
        tok->vocab[i].id = -1;
    json_object_object_foreach(root, key, val)
    {
        int id = (int)json_object_get_int64(val);
        size_t n = strlen(key);
        if (tok->piece[id])
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: id %d is given to both \"%.80s\" and \"%.80s\"", path, id,
                                 tok->piece[id], key);
        memcpy(tok->arena + used, key, n + 1);
        tok->piece[id] = tok->arena + used;
        tok->piece_len[id] = (int)n;
        used += n + 1;
        vocab_insert(tok, id);
    }
    return 0;
}

static int load_vocab(sdm_tokenizer *tok, const char *path, sdm_error *err)
{
    char *text = NULL;
    size_t len = 0, arena_len = 0;
    struct json_object *root = NULL;
    int rc = -1, n_keys = 0, max_id = -1;

    if (read_file(path, &text, &len, err))
        goto end;
    if (len > INT_MAX) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: too large for a vocabulary (%zu bytes)", path, len);
        goto end;
    }
    if (parse_object(path, text, len, &root, err) || measure_vocab(root, path, &n_keys, &max_id, &arena_len, err) ||
        fill_vocab(tok, root, path, n_keys, max_id, arena_len, err))
        goto end;
    rc = 0;
end:
    json_object_put(root);
    free(text);
    return rc;
}

/* merges.txt: an optional "#version" line, then one "left right" pair a line,
 * highest priority first. */
static int load_merges(sdm_tokenizer *tok, const char *path, sdm_error *err)
{
    char *text = NULL, *joined = NULL;
    size_t len = 0, joined_cap = 0;
    int rc = -1, rank = 0, line_no = 0, n_lines = 0;
    char *p, *end;

    if (read_file(path, &text, &len, err))
        goto end;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    tok->merge_mask = table_size((size_t)n_lines + 1) - 1;
    tok->merges = malloc(sizeof *tok->merges * ((size_t)tok->merge_mask + 1));
    if (!tok->merges) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory", path);
        goto end;
    }
    for (uint32_t i = 0; i <= tok->merge_mask; i++)
        tok->merges[i].key = UINT64_MAX;
    if (memchr(text, '\0', len)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: holds a NUL byte; not a merges file", path);
        goto end;
    }
    for (p = text; p < text + len; p = end + 1) {
        char *sp, *left, *right;
        size_t n, ln, rn;
        int a, b, id;

        end = memchr(p, '\n', (size_t)(text + len - p));
        if (!end)
            end = text + len;
        line_no++;
        n = (size_t)(end - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        /* tokenizers skips "#version" lines; blank lines are skipped too */
        if (n == 0 || (n >= 8 && !memcmp(p, "#version", 8)))
            continue;
        sp = memchr(p, ' ', n);
        if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', (size_t)(p + n - sp - 1))) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%d: expected two tokens separated by one space, got \"%.*s\"",
                          path, line_no, (int)(n > 80 ? 80 : n), p);
            goto end;
        }
        left = p;
        ln = (size_t)(sp - p);
        right = sp + 1;
        rn = n - ln - 1;
        a = vocab_find(tok, left, ln);
        b = vocab_find(tok, right, rn);
        if (a < 0 || b < 0) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%d: \"%.*s\" is not in the vocabulary", path, line_no,
                          (int)(a < 0 ? (ln > 80 ? 80 : ln) : (rn > 80 ? 80 : rn)), a < 0 ? left : right);
            goto end;
        }
        if (ln + rn + 1 > joined_cap) {
            char *nj = realloc(joined, ln + rn + 1);
            if (!nj) {
                sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: out of memory", path);
                goto end;
            }
            joined = nj;
            joined_cap = ln + rn + 1;
        }
        memcpy(joined, left, ln);
        memcpy(joined + ln, right, rn);
        id = vocab_find(tok, joined, ln + rn);
        if (id < 0) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "%s:%d: the merged token \"%.*s\" is not in the vocabulary", path,
                          line_no, (int)(ln + rn > 80 ? 80 : ln + rn), joined);
            goto end;
        }
        merge_insert(tok, a, b, rank++, id);
    }
    rc = 0;
end:
    free(joined);
    free(text);
    return rc;
}

/* GPT-2's table: printable bytes stand for themselves, the others (controls,
 * space, 0x7f-0xa0, 0xad) for 256, 257, ... in byte order. */
static uint32_t byte_to_cp(int b)
{
    int n = 0;
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (uint32_t)b;
    for (int i = 0; i < b; i++) {
        if (!((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae && i <= 0xff)))
            n++;
    }
    return 256u + (uint32_t)n;
}

static void init_byte_symbols(sdm_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char s[16];
        utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)byte_to_cp(b), (utf8proc_uint8_t *)s);
        int id = vocab_find(tok, s, (size_t)n);
        /* a byte missing from the vocabulary is the unknown token, as in
         * tokenizers' BPE without fuse_unk */
        tok->byte_sym[b] = id >= 0 ? id : tok->unk;
        memcpy(s + n, END_OF_WORD, sizeof END_OF_WORD);
        id = vocab_find(tok, s, (size_t)n + sizeof END_OF_WORD - 1);
        tok->byte_sym_end[b] = id >= 0 ? id : tok->unk;
    }
}

sdm_tokenizer_params sdm_tokenizer_default_params(void)
{
    sdm_tokenizer_params p;
    memset(&p, 0, sizeof p);
    p.token_length = 77;
    p.pad_id = -1;
    p.bos_id = -1;
    p.eos_id = -1;
    return p;
}

int sdm_tokenizer_load(const char *vocab_json, const char *merges_txt, sdm_tokenizer_params params, sdm_tokenizer **out,
                       sdm_error *err)
{
    sdm_tokenizer *tok = NULL;
    int rc = -1;

    if (!out || !vocab_json || !merges_txt) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "tokenizer: no vocab.json or merges.txt given");
        goto end;
    }
    *out = NULL;
    if (params.token_length < 2 || params.token_length > 1 << 20) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "tokenizer: token length %d must be at least 2 (bos and eos)",
                      params.token_length);
        goto end;
    }
    tok = calloc(1, sizeof *tok);
    if (!tok) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    tok->params = params;
    if (load_vocab(tok, vocab_json, err))
        goto end;
    tok->bos = vocab_find(tok, BOS_TEXT, sizeof BOS_TEXT - 1);
    tok->eos = vocab_find(tok, EOS_TEXT, sizeof EOS_TEXT - 1);
    if (tok->bos < 0 || tok->eos < 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: no \"%s\" token", vocab_json, tok->bos < 0 ? BOS_TEXT : EOS_TEXT);
        goto end;
    }
    if ((params.bos_id >= 0 && params.bos_id != tok->bos) || (params.eos_id >= 0 && params.eos_id != tok->eos)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME,
                      "%s has %s = %d and %s = %d, but the model expects bos_id %d and eos_id %d", vocab_json, BOS_TEXT,
                      tok->bos, EOS_TEXT, tok->eos, params.bos_id, params.eos_id);
        goto end;
    }
    tok->unk = tok->eos; /* CLIP's unknown token is <|endoftext|> */
    tok->pad = params.pad_id >= 0 ? params.pad_id : tok->eos;
    if (tok->pad >= tok->n_ids || !tok->piece[tok->pad]) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: the pad id %d is not in the vocabulary", vocab_json, tok->pad);
        goto end;
    }
    if (load_merges(tok, merges_txt, err))
        goto end;
    init_byte_symbols(tok);
    *out = tok;
    tok = NULL;
    rc = 0;
end:
    sdm_tokenizer_free(&tok);
    return rc;
}

void sdm_tokenizer_free(sdm_tokenizer **tok)
{
    if (!tok || !*tok)
        return;
    free((*tok)->piece);
    free((*tok)->piece_len);
    free((*tok)->arena);
    free((*tok)->vocab);
    free((*tok)->merges);
    free(*tok);
    *tok = NULL;
}

const char *sdm_tokenizer_piece(const sdm_tokenizer *tok, int64_t id)
{
    if (!tok || id < 0 || id >= tok->n_ids)
        return NULL;
    return tok->piece[id];
}

int sdm_tokenizer_token_length(const sdm_tokenizer *tok)
{
    return tok ? tok->params.token_length : 0;
}

int sdm_tokenizer_bos_id(const sdm_tokenizer *tok)
{
    return tok ? tok->bos : -1;
}

int sdm_tokenizer_eos_id(const sdm_tokenizer *tok)
{
    return tok ? tok->eos : -1;
}

int sdm_tokenizer_pad_id(const sdm_tokenizer *tok)
{
    return tok ? tok->pad : -1;
}

/* ------------------------------------------------------------------ */
/* encoding                                                           */

/* Code points with the byte offset in the caller's text each came from. */
typedef struct {
    int32_t *cp;
    int *off;
    size_t n, cap;
} cp_buf;

typedef struct {
    int32_t id, prev, next, len;
} symbol;

typedef struct {
    const sdm_tokenizer *tok;
    int64_t *ids; /* the caller's row; tokens go to ids[1..keep] */
    int keep; /* tokens that fit between bos and eos */
    int grow; /* ids is ours: it grows instead of dropping */
    int oom;
    int n; /* tokens made so far */
    int dropped_at;
    cp_buf text, nfc, norm;
    int32_t *scratch; /* NFC of one chunk */
    size_t scratch_cap;
    uint8_t *bytes; /* one piece: its UTF-8 bytes, */
    int *byte_off; /* where each came from, */
    symbol *sym; /* its symbols */
    uint64_t *heap; /* its pending merges */
    size_t piece_cap;
} encoder;

static int cp_reserve(cp_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra)
        cap *= 2;
    int32_t *cp = realloc(b->cp, sizeof *cp * cap);
    if (!cp)
        return -1;
    b->cp = cp;
    int *off = realloc(b->off, sizeof *off * cap);
    if (!off)
        return -1;
    b->off = off;
    b->cap = cap;
    return 0;
}

static void cp_free(cp_buf *b)
{
    free(b->cp);
    free(b->off);
}

/* A growing row doubles; where memory fails, the rest is dropped (e->oom). */
static void grow_ids(encoder *e)
{
    int cap = e->keep ? 2 * e->keep : 64;
    int64_t *ids = cap < (1 << 28) ? realloc(e->ids, sizeof *ids * ((size_t)cap + 1)) : NULL;

    if (!ids) {
        e->oom = 1;
        return;
    }
    e->ids = ids;
    e->keep = cap;
}

static void emit(encoder *e, int id, int off)
{
    if (e->grow && e->n == e->keep && !e->oom)
        grow_ids(e);
    if (e->n < e->keep)
        e->ids[1 + e->n] = id;
    else if (e->n == e->keep)
        e->dropped_at = off;
    e->n++;
}

static int reserve_piece(encoder *e, size_t n)
{
    if (n <= e->piece_cap)
        return 0;
    size_t cap = e->piece_cap ? e->piece_cap : 64;
    while (cap < n)
        cap *= 2;
    free(e->bytes);
    free(e->byte_off);
    free(e->sym);
    free(e->heap);
    e->bytes = malloc(cap);
    e->byte_off = malloc(sizeof *e->byte_off * cap);
    e->sym = malloc(sizeof *e->sym * cap);
    e->heap = malloc(sizeof *e->heap * 3 * cap); /* n-1 pairs, then at most 2 per merge */
    e->piece_cap = (e->bytes && e->byte_off && e->sym && e->heap) ? cap : 0;
    return e->piece_cap ? 0 : -1;
}

/* UTF-8 to code points; each maximal ill-formed subpart becomes U+FFFD
 * (Unicode's recommended practice, Python's errors="replace"). */
static int decode_utf8(encoder *e, const char *text, int *n_invalid)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t len = strlen(text), i = 0;

    *n_invalid = 0;
    if (len > INT_MAX / 2) {
        /* offsets are ints; beyond 1 GiB nothing could be kept anyway */
        sdm_warn("tokenizer: prompt of %zu bytes read only up to 1 GiB", len);
        len = INT_MAX / 2;
    }
    if (cp_reserve(&e->text, len + 1))
        return -1;
    while (i < len) {
        uint8_t b0 = s[i];
        int need = 0;
        uint8_t lo = 0x80, hi = 0xbf;
        int32_t cp;
        size_t k;

        if (b0 < 0x80) {
            e->text.cp[e->text.n] = b0;
            e->text.off[e->text.n++] = (int)i;
            i++;
            continue;
        }
        if (b0 >= 0xc2 && b0 <= 0xdf) {
            need = 1;
            cp = b0 & 0x1f;
        } else if (b0 >= 0xe0 && b0 <= 0xef) {
            need = 2;
            cp = b0 & 0x0f;
            if (b0 == 0xe0)
                lo = 0xa0;
            if (b0 == 0xed)
                hi = 0x9f; /* no surrogates */
        } else if (b0 >= 0xf0 && b0 <= 0xf4) {
            need = 3;
            cp = b0 & 0x07;
            if (b0 == 0xf0)
                lo = 0x90;
            if (b0 == 0xf4)
                hi = 0x8f;
        } else {
            cp = -1;
        }
        for (k = 1; cp >= 0 && k <= (size_t)need; k++) {
            uint8_t c = i + k < len ? s[i + k] : 0;
            if (c < lo || c > hi) {
                cp = -1;
                break;
            }
            cp = cp << 6 | (c & 0x3f);
            lo = 0x80;
            hi = 0xbf;
        }
        e->text.off[e->text.n] = (int)i;
        if (cp < 0) {
            e->text.cp[e->text.n++] = 0xfffd;
            /* k: the bytes of the ill-formed subpart */
            (*n_invalid) += (int)k;
            i += k;
        } else {
            e->text.cp[e->text.n++] = cp;
            i += (size_t)need + 1;
        }
    }
    return 0;
}

/* NFC of text[a, b) into e->nfc. It is done per chunk: a chunk starts at an
 * ASCII character, which never reorders or composes with what precedes it,
 * so the chunks' NFC forms concatenate to the text's, and each output code
 * point keeps the offset of (about) where it came from. */
static int nfc(encoder *e, size_t a, size_t b)
{
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    size_t i = a;

    e->nfc.n = 0;
    while (i < b) {
        size_t j = i + 1, nb = 0;
        utf8proc_ssize_t m;

        while (j < b && e->text.cp[j] >= 0x80)
            j++;
        if (j == i + 1 && e->text.cp[i] < 0x80) {
            if (cp_reserve(&e->nfc, 1))
                return -1;
            e->nfc.cp[e->nfc.n] = e->text.cp[i];
            e->nfc.off[e->nfc.n++] = e->text.off[i];
            i = j;
            continue;
        }
        if (reserve_piece(e, 4 * (j - i)))
            return -1;
        for (size_t k = i; k < j; k++)
            nb += (size_t)utf8proc_encode_char(e->text.cp[k], e->bytes + nb);
        for (;;) {
            m = utf8proc_decompose(e->bytes, (utf8proc_ssize_t)nb, e->scratch, (utf8proc_ssize_t)e->scratch_cap, opt);
            if (m < 0)
                return -1;
            if ((size_t)m <= e->scratch_cap)
                break;
            int32_t *ns = realloc(e->scratch, sizeof *ns * (size_t)m);
            if (!ns)
                return -1;
            e->scratch = ns;
            e->scratch_cap = (size_t)m;
        }
        m = utf8proc_normalize_utf32(e->scratch, m, opt);
        if (m < 0 || cp_reserve(&e->nfc, (size_t)m))
            return -1;
        for (utf8proc_ssize_t k = 0; k < m; k++) {
            size_t src = (size_t)m == j - i ? i + (size_t)k : i;
            e->nfc.cp[e->nfc.n] = e->scratch[k];
            e->nfc.off[e->nfc.n++] = e->text.off[src];
        }
        i = j;
    }
    return 0;
}

/* \s of the Oniguruma regexes tokenizers uses: White_Space. */
static int is_space(int32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= '\t' && c <= '\r');
    if (c == 0x85)
        return 1;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return 1;
    default:
        return 0;
    }
}

static int is_letter(int32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return 1;
    default:
        return 0;
    }
}

static int is_number(int32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* e->nfc to e->norm: white space runs to one space, then lowercase. */
static int collapse_and_lower(encoder *e)
{
    e->norm.n = 0;
    if (cp_reserve(&e->norm, 2 * e->nfc.n))
        return -1;
    for (size_t i = 0; i < e->nfc.n; i++) {
        int32_t c = e->nfc.cp[i];
        int off = e->nfc.off[i];
        if (is_space(c)) {
            while (i + 1 < e->nfc.n && is_space(e->nfc.cp[i + 1]))
                i++;
            c = ' ';
        } else if (c == 0x130) {
            /* the one code point whose full lowercase is two: "i" U+0307 */
            e->norm.cp[e->norm.n] = 'i';
            e->norm.off[e->norm.n++] = off;
            c = 0x307;
        } else if (c < 0x80) {
            if (c >= 'A' && c <= 'Z')
                c += 'a' - 'A';
        } else {
            c = utf8proc_tolower(c);
        }
        e->norm.cp[e->norm.n] = c;
        e->norm.off[e->norm.n++] = off;
    }
    return 0;
}

/* Pending merges are rank << 32 | position: the heap orders them by rank,
 * then leftmost first, as tokenizers' queue does. A 4-ary min-heap: half
 * the levels of a binary one, the children in one cache line. */
static void heap_push(uint64_t *h, size_t *n, uint64_t m)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (m >= h[parent])
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = m;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= *n)
            break;
        for (size_t k = c + 1; k < c + 4 && k < *n; k++) {
            if (h[k] < h[best])
                best = k;
        }
        if (h[best] >= last)
            break;
        h[i] = h[best];
        i = best;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static void push_pair(const sdm_tokenizer *tok, const symbol *sym, int32_t pos, uint64_t *heap, size_t *n)
{
    const merge_slot *m = merge_find(tok, sym[pos].id, sym[sym[pos].next].id);
    if (m)
        heap_push(heap, n, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos);
}

/* BPE of norm[a, b): the merge of lowest rank first, leftmost among equals,
 * exactly tokenizers' order (stale queue entries are skipped the same way). */
static int bpe_piece(encoder *e, size_t a, size_t b)
{
    const sdm_tokenizer *tok = e->tok;
    size_t nb = 0, n_heap = 0;

    for (size_t i = a; i < b; i++) {
        int32_t c = e->norm.cp[i];
        nb += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    if (reserve_piece(e, nb))
        return -1;
    nb = 0;
    for (size_t i = a; i < b; i++) {
        utf8proc_ssize_t k = utf8proc_encode_char(e->norm.cp[i], e->bytes + nb);
        for (utf8proc_ssize_t j = 0; j < k; j++)
            e->byte_off[nb + (size_t)j] = e->norm.off[i];
        nb += (size_t)k;
    }
    if (nb == 1) {
        emit(e, tok->byte_sym_end[e->bytes[0]], e->byte_off[0]);
        return 0;
    }
    for (size_t i = 0; i < nb; i++) {
        symbol *s = &e->sym[i];
        s->id = i + 1 < nb ? tok->byte_sym[e->bytes[i]] : tok->byte_sym_end[e->bytes[i]];
        s->prev = (int32_t)i - 1;
        s->next = i + 1 < nb ? (int32_t)i + 1 : -1;
        s->len = 1;
    }
    for (size_t i = 0; i + 1 < nb; i++)
        push_pair(tok, e->sym, (int32_t)i, e->heap, &n_heap);
    while (n_heap > 0) {
        uint64_t top = heap_pop(e->heap, &n_heap);
        int32_t pos = (int32_t)(uint32_t)top;
        symbol *cur = &e->sym[pos];
        const merge_slot *m;
        if (cur->len == 0 || cur->next < 0)
            continue;
        symbol *right = &e->sym[cur->next];
        /* A stale entry: the pair at pos changed since. Its text only grows,
         * so an unchanged rank means an unchanged pair. */
        m = merge_find(tok, cur->id, right->id);
        if (!m || (uint32_t)m->rank != (uint32_t)(top >> 32))
            continue;
        cur->id = m->id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0)
            e->sym[cur->next].prev = pos;
        if (cur->prev >= 0)
            push_pair(tok, e->sym, cur->prev, e->heap, &n_heap);
        if (cur->next >= 0)
            push_pair(tok, e->sym, pos, e->heap, &n_heap);
    }
    for (int32_t i = 0; i >= 0; i = e->sym[i].next)
        emit(e, e->sym[i].id, e->byte_off[i]);
    return 0;
}

static size_t match_ascii(const int32_t *cp, size_t i, size_t n, const char *s)
{
    size_t k = 0;
    for (; s[k]; k++) {
        if (i + k >= n || cp[i + k] != (unsigned char)s[k])
            return 0;
    }
    return k;
}

/* CLIP's pre-tokenization pattern over e->norm; BPE of each match. */
static int pretokenize(encoder *e)
{
    static const char *const contractions[] = { "'s", "'t", "'re", "'ve", "'m", "'ll", "'d" };
    const int32_t *cp = e->norm.cp;
    size_t n = e->norm.n, i = 0;

    while (i < n) {
        int32_t c = cp[i];
        size_t j = 0;

        if (c == '<') {
            j = match_ascii(cp, i, n, BOS_TEXT);
            if (!j)
                j = match_ascii(cp, i, n, EOS_TEXT);
            if (j) {
                /* a lowercased special spelling is plain text: GPT-2's split
                 * makes it "<|", the name, "|>" */
                if (bpe_piece(e, i, i + 2) || bpe_piece(e, i + 2, i + j - 2) || bpe_piece(e, i + j - 2, i + j))
                    return -1;
                i += j;
                continue;
            }
        }
        if (c == '\'') {
            for (size_t k = 0; k < sizeof contractions / sizeof *contractions && !j; k++)
                j = match_ascii(cp, i, n, contractions[k]);
            if (j) {
                if (bpe_piece(e, i, i + j))
                    return -1;
                i += j;
                continue;
            }
        }
        if (is_letter(c)) {
            j = i + 1;
            while (j < n && is_letter(cp[j]))
                j++;
        } else if (is_number(c)) {
            j = i + 1;
        } else if (is_space(c)) {
            i++;
            continue;
        } else {
            j = i + 1;
            while (j < n && !is_letter(cp[j]) && !is_number(cp[j]) && !is_space(cp[j]))
                j++;
        }
        if (bpe_piece(e, i, j))
            return -1;
        i = j;
    }
    return 0;
}

static int encode_segment(encoder *e, size_t a, size_t b)
{
    if (a == b)
        return 0;
    if (nfc(e, a, b) || collapse_and_lower(e) || pretokenize(e))
        return -1;
    return 0;
}

static int encode_text(encoder *e, const char *text, int *n_invalid)
{
    size_t seg = 0, i = 0;

    if (decode_utf8(e, text, n_invalid))
        return -1;
    /* special tokens are matched in the raw text, before normalization */
    while (i < e->text.n) {
        size_t j = 0;
        int id = -1;
        if (e->text.cp[i] == '<') {
            j = match_ascii(e->text.cp, i, e->text.n, BOS_TEXT);
            id = e->tok->bos;
            if (!j) {
                j = match_ascii(e->text.cp, i, e->text.n, EOS_TEXT);
                id = e->tok->eos;
            }
        }
        if (!j) {
            i++;
            continue;
        }
        if (encode_segment(e, seg, i))
            return -1;
        emit(e, id, e->text.off[i]);
        i += j;
        seg = i;
    }
    return encode_segment(e, seg, e->text.n);
}

static void encoder_free(encoder *e)
{
    cp_free(&e->text);
    cp_free(&e->nfc);
    cp_free(&e->norm);
    free(e->scratch);
    free(e->bytes);
    free(e->byte_off);
    free(e->sym);
    free(e->heap);
}

int sdm_tokenizer_tokens(const sdm_tokenizer *tok, const char *text, int64_t **ids, int *n, int *invalid_utf8)
{
    encoder e;
    int n_invalid = 0, rc = -1;

    *ids = NULL;
    *n = 0;
    memset(&e, 0, sizeof e);
    e.tok = tok;
    e.grow = 1;
    e.dropped_at = -1;
    if (encode_text(&e, text, &n_invalid) || e.oom)
        goto end;
    /* the row was laid out as bos, tokens: the caller gets the tokens */
    if (e.ids)
        memmove(e.ids, e.ids + 1, sizeof *e.ids * (size_t)e.n);
    *ids = e.ids;
    *n = e.n;
    e.ids = NULL;
    if (invalid_utf8)
        *invalid_utf8 = n_invalid;
    rc = 0;
end:
    free(e.ids);
    encoder_free(&e);
    return rc;
}

int sdm_tokenizer_find(const sdm_tokenizer *tok, const char *piece)
{
    return vocab_find(tok, piece, strlen(piece));
}

void sdm_tokenizer_encode(const sdm_tokenizer *tok, const char *text, int64_t *ids, sdm_tokenize_info *info)
{
    encoder e;
    int L, kept, n_invalid = 0;

    if (!tok || !ids)
        return;
    L = tok->params.token_length;
    memset(&e, 0, sizeof e);
    e.tok = tok;
    e.ids = ids;
    e.keep = L - 2;
    e.dropped_at = -1;
    if (text && encode_text(&e, text, &n_invalid)) {
        /* only memory can fail here; keep what was made */
        sdm_log(SDM_LOG_ERROR, "tokenizer: out of memory; the prompt is cut after %d tokens", e.n);
    }
    kept = e.n < e.keep ? e.n : e.keep;
    ids[0] = tok->bos;
    ids[1 + kept] = tok->eos;
    for (int i = 2 + kept; i < L; i++)
        ids[i] = tok->pad;
    if (info) {
        info->n_tokens = e.n;
        info->n_dropped = e.n - kept;
        info->invalid_utf8 = n_invalid;
        info->dropped_at = e.n > kept ? e.dropped_at : -1;
    }
    encoder_free(&e);
}
