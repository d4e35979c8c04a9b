/* libFuzzer target: the CLIP tokenizer's encoder on any byte string, with a
 * small vocabulary made at start-up (every byte symbol, alone and with
 * "</w>", a few merges, bos and eos), so it needs no files. The input is
 * the prompt for a 77-id tokenizer padded with eos; one that starts with
 * byte 0x01 is, after it, the prompt for an 8-id tokenizer padded with id 0
 * (truncation on almost every input). Checks the header's
 * promises: bos first, the text's tokens (cut so eos stays), eos, padding;
 * every id in the vocabulary; the info counts agree with the ids. The same
 * text is then cut into A1111's chunks (prompt_chunks.h, with its weight
 * syntax and an embedding named "city" of 3 vectors): every chunk framed by
 * bos and eos, its places' ids in the vocabulary or an embedding's row,
 * weights finite, the token count within the chunks' room; the raw token
 * list (sdm_tokenizer_tokens) agrees with the ids the encoder keeps; a
 * refusal (a bad weight, too many chunks) is a usage error with a message.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "prompt_chunks.h"
#include "tokenizer.h"

/* Merges, highest priority first; each left+right is added to the vocabulary. */
static const char *const MERGES[][2] = {
    { "t", "h" },       { "th", "e</w>" }, { "i", "n" },     { "in", "g</w>" }, { "a", "n" },
    { "an", "d</w>" },  { "o", "r" },      { "e", "r</w>" }, { "c", "i" },      { "ci", "t" },
    { "cit", "y</w>" }, { "f", "or" },     { "for", "e" },   { "fore", "s" },   { "fores", "t</w>" },
    { "o", "f</w>" },   { "Ã", "©</w>" },  { "!", "!</w>" }, { "1", "2" },      { "12", "3</w>" },
};

static sdm_tokenizer *toks[2];

/* GPT-2's byte -> code point table (as the tokenizer's byte_to_cp). */
static unsigned byte_cp(int b)
{
    int n = 0;
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (unsigned)b;
    for (int i = 0; i < b; i++) {
        if (!((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae && i <= 0xff)))
            n++;
    }
    return 256u + (unsigned)n;
}

static void put_utf8(FILE *f, unsigned cp)
{
    if (cp == '"' || cp == '\\')
        fprintf(f, "\\%c", (char)cp);
    else if (cp < 0x80)
        fputc((int)cp, f);
    else if (cp < 0x800)
        fprintf(f, "%c%c", (char)(0xc0 | cp >> 6), (char)(0x80 | (cp & 0x3f)));
    else
        fprintf(f, "%c%c%c", (char)(0xe0 | cp >> 12), (char)(0x80 | ((cp >> 6) & 0x3f)), (char)(0x80 | (cp & 0x3f)));
}

static void write_vocab(FILE *f)
{
    int id = 0;

    fputs("{", f);
    for (int b = 0; b < 256; b++) {
        for (int end = 0; end < 2; end++) {
            fputs(id ? ",\n\"" : "\"", f);
            put_utf8(f, byte_cp(b));
            fprintf(f, "%s\": %d", end ? "</w>" : "", id++);
        }
    }
    for (size_t i = 0; i < sizeof MERGES / sizeof MERGES[0]; i++)
        fprintf(f, ",\n\"%s%s\": %d", MERGES[i][0], MERGES[i][1], id++);
    fprintf(f, ",\n\"<|startoftext|>\": %d,\n\"<|endoftext|>\": %d\n}\n", id, id + 1);
}

static sdm_tokenizer *load(const char *vocab, const char *merges, int token_length, int pad_id)
{
    sdm_tokenizer_params p = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };

    p.token_length = token_length;
    p.pad_id = pad_id;
    if (sdm_tokenizer_load(vocab, merges, p, &tok, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    return tok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/sdm-fuzz-tok-XXXXXX", vocab[64], merges[64];
    FILE *f;

    if (!mkdtemp(dir))
        abort();
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    f = fopen(vocab, "w");
    if (!f)
        abort();
    write_vocab(f);
    fclose(f);
    f = fopen(merges, "w");
    if (!f)
        abort();
    fputs("#version: 0.2\n", f);
    for (size_t i = 0; i < sizeof MERGES / sizeof MERGES[0]; i++)
        fprintf(f, "%s %s\n", MERGES[i][0], MERGES[i][1]);
    fclose(f);
    toks[0] = load(vocab, merges, 77, -1);
    toks[1] = load(vocab, merges, 8, 0);
    remove(vocab);
    remove(merges);
    rmdir(dir);
    sdm_log_set_level(SDM_LOG_COUNT);
    return 0;
}

static void check_chunks(const sdm_tokenizer *tok, const char *text, const int64_t *ids, int kept)
{
    int64_t city_ids[4], *all = NULL;
    int n_city = 0, n_all = 0, L = sdm_tokenizer_token_length(tok);
    sdm_prompt_embedding emb = { "city", city_ids, 0, 3, 0 };
    sdm_prompt_chunks c;
    sdm_error err = { 0 };

    if (sdm_tokenizer_tokens(tok, "city", &all, &n_city, NULL) || n_city < 1 || n_city > 4)
        abort();
    memcpy(city_ids, all, sizeof *all * (size_t)n_city);
    emb.n_name_ids = n_city;
    free(all);
    all = NULL;
    if (sdm_tokenizer_tokens(tok, text, &all, &n_all, NULL))
        abort();
    for (int i = 0; i < kept; i++)
        if (i >= n_all || all[i] != ids[1 + i])
            abort();
    free(all);
    for (int parse = 0; parse < 2; parse++) {
        if (sdm_prompt_chunks_make(tok, text, parse, L > 5 ? &emb : NULL, L > 5, &c, &err)) {
            if (err.code != SDM_EXIT_USAGE || !err.msg[0])
                abort();
            memset(&err, 0, sizeof err);
            continue;
        }
        if (c.n_chunks < 1 || c.n_chunks > SDM_MAX_CHUNKS || c.length != L || c.n_tokens < 0 ||
            c.n_tokens > c.n_chunks * (L - 2))
            abort();
        for (int k = 0; k < c.n_chunks; k++) {
            const int64_t *ci = c.ids + (size_t)k * L;
            if (ci[0] != sdm_tokenizer_bos_id(tok))
                abort();
            for (int i = 0; i < L; i++) {
                float w = c.weights[(size_t)k * L + i];
                int v = c.vec[(size_t)k * L + i];
                if (!(w == w) || (v < 0 && !sdm_tokenizer_piece(tok, ci[i])) || v >= 3)
                    abort();
            }
        }
        sdm_prompt_chunks_clear(&c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const sdm_tokenizer *tok;
    sdm_tokenize_info info;
    int64_t ids[77], again[77];
    char *text;
    int L, bos, eos, pad, kept;
    size_t len;

    tok = toks[0];
    if (size > 0 && data[0] == 1) {
        tok = toks[1];
        data++;
        size--;
    }
    text = malloc(size + 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';
    len = strlen(text); /* the prompt ends at the first NUL */
    L = sdm_tokenizer_token_length(tok);
    bos = sdm_tokenizer_bos_id(tok);
    eos = sdm_tokenizer_eos_id(tok);
    pad = sdm_tokenizer_pad_id(tok);
    memset(&info, 0x5a, sizeof info);
    sdm_tokenizer_encode(tok, text, ids, &info);

    kept = info.n_tokens - info.n_dropped;
    if (info.n_tokens < 0 || info.n_dropped < 0 || kept < 0 || kept > L - 2)
        abort();
    if (info.n_dropped > 0 && kept != L - 2)
        abort();
    if ((info.n_dropped == 0) != (info.dropped_at == -1))
        abort();
    if (info.dropped_at != -1 && (info.dropped_at < 0 || (size_t)info.dropped_at >= len))
        abort();
    if (info.invalid_utf8 < 0 || (size_t)info.invalid_utf8 > len)
        abort();
    if (ids[0] != bos || ids[1 + kept] != eos)
        abort();
    for (int i = 0; i < L; i++) {
        if (!sdm_tokenizer_piece(tok, ids[i]))
            abort();
        if (i > 1 + kept && ids[i] != pad)
            abort();
    }
    /* encoding only reads the tokenizer: the same text gives the same ids */
    sdm_tokenizer_encode(tok, text, again, NULL);
    if (memcmp(ids, again, (size_t)L * sizeof ids[0]))
        abort();
    check_chunks(tok, text, ids, kept);
    free(text);
    return 0;
}
