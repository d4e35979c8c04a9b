/* sdmorph tokenize: the chunks of ids a prompt becomes (A1111's 75-token
 * chunks, prompt_chunks.h) with their weights, and with --tokens the
 * vocabulary pieces, so a user can see how the model reads a prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bundle.h"
#include "commands.h"
#include "embeddings.h"
#include "options.h"
#include "prompt_chunks.h"
#include "recipe.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph tokenize [--model DIR] [--tokens] [--weighting a1111|none]\n"
            "                        [--embeddings DIR] [--] TEXT...\n"
            "  --model DIR        model bundle whose vocab.json/merges.txt to use (default:\n"
            "                     $SDMORPH_MODEL, else the built-in build/models/analytic)\n"
            "  --tokens           one line per token: position, id, vocabulary piece, weight\n"
            "  --weighting W      a1111 (default): (word:1.3), (word), [word], BREAK as A1111\n"
            "                     reads them; none: the text as it is\n"
            "  --embeddings DIR   textual-inversion embeddings (*.safetensors) prompts may name\n"
            "                     (default: the bundle's embeddings/ folder, if any; for SDXL,\n"
            "                     files with a clip_l and a clip_g tensor, as A1111's)\n"
            "  TEXT               the prompt (several arguments are joined by spaces; - reads\n"
            "                     stdin); at most 1 MiB of text, no NUL byte\n"
            "Prints one line per chunk: the token_length ids the text encoder reads (bos, up to\n"
            "75 of the prompt's tokens, eos, padding); a prompt longer than 75 tokens makes\n"
            "several chunks, encoded apart and joined (A1111's way). Where a weight is not 1,\n"
            "each chunk's line is followed by \"weights:\" and its token_length weights.\n"
            "Warns on stderr when the prompt is not valid UTF-8 (invalid bytes are read as\n"
            "U+FFFD).\n"
            "Exit status: 0 done, 1 the bundle could not be loaded, 2 bad usage.\n");
}

/* The model reads 75 tokens of a prompt, a few hundred bytes: past this a
 * text is a mistake (a file piped in), and the tokenizer's memory grows with it. */
#define MAX_TEXT_BYTES (1 << 20)

/* stdin, up to MAX_TEXT_BYTES of text; NULL with *why set if it is more or not text. */
static char *read_stdin(const char **why, size_t *at)
{
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap), *nul;

    *why = "out of memory";
    while (buf) {
        got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0)
            break;
        if (n > MAX_TEXT_BYTES) {
            *why = "more than 1 MiB (1048576 bytes), the most a prompt may be";
            free(buf);
            return NULL;
        }
        if (n + 1 == cap) {
            char *nb = realloc(buf, 2 * cap);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf)
        return NULL;
    buf[n] = '\0';
    nul = memchr(buf, '\0', n);
    if (nul) {
        *why = "a NUL byte; a prompt is text";
        *at = (size_t)(nul - buf);
        free(buf);
        return NULL;
    }
    return buf;
}

static char *join_args(int argc, char **argv)
{
    size_t len = 1;
    char *s;

    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    s = malloc(len);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

/* --embeddings DIR, else the bundle's embeddings/ folder where it has one;
 * an SDXL bundle's hold a tensor per encoder, as render reads them. */
static int load_embeddings(const char *dir, const sdm_bundle *b, const sdm_tokenizer *tok, sdm_embeddings *out,
                           sdm_error *err)
{
    char own[1100];
    struct stat st;

    if (!dir) {
        snprintf(own, sizeof own, "%s/embeddings", b->dir);
        if (stat(own, &st) || !S_ISDIR(st.st_mode))
            return 0;
        dir = own;
    }
    if (sdm_bundle_is_xl(b))
        return sdm_embeddings_load2(dir, tok, b->hidden_size, b->text2.hidden_size, out, err);
    return sdm_embeddings_load(dir, tok, b->hidden_size, out, err);
}

static void print_ids(const sdm_prompt_chunks *c, int k)
{
    const int64_t *ids = c->ids + (size_t)k * c->length;
    const float *w = c->weights + (size_t)k * c->length;

    for (int i = 0; i < c->length; i++)
        printf("%s%lld", i ? " " : "", (long long)ids[i]);
    printf("\n");
    if (!c->weighted)
        return;
    printf("weights:");
    for (int i = 0; i < c->length; i++)
        printf(" %.9g", w[i]);
    printf("\n");
}

/* The embedding whose vectors hold row `row` (and which of them). */
static const sdm_prompt_embedding *embedding_of(const sdm_embeddings *e, int row, int *j)
{
    for (int i = 0; i < e->n; i++)
        if (row >= e->list[i].first_row && row < e->list[i].first_row + e->list[i].n_vectors) {
            *j = row - e->list[i].first_row;
            return &e->list[i];
        }
    return NULL;
}

/* pad2 >= 0: SDXL's second encoder, which reads the same tokens padded
 * with its own id. */
static void print_tokens(const sdm_tokenizer *tok, const sdm_prompt_chunks *c, const sdm_embeddings *e, int k, int pad2)
{
    const int64_t *ids = c->ids + (size_t)k * c->length;
    const float *w = c->weights + (size_t)k * c->length;
    const int *vec = c->vec + (size_t)k * c->length;
    int end = 1;

    while (end < c->length - 1 && !(ids[end] == sdm_tokenizer_eos_id(tok) && vec[end] < 0))
        end++;
    if (c->n_chunks > 1)
        printf("chunk %d of %d\n", k + 1, c->n_chunks);
    for (int i = 0; i <= end; i++) {
        int j = 0;
        const sdm_prompt_embedding *pe = vec[i] >= 0 ? embedding_of(e, vec[i], &j) : NULL;
        const char *p = sdm_tokenizer_piece(tok, ids[i]);
        if (pe)
            printf("%3d %6s  %s (embedding, vector %d of %d)", i, "-", pe->name, j + 1, pe->n_vectors);
        else
            printf("%3d %6lld  %s", i, (long long)ids[i], p ? p : "?");
        if (w[i] != 1.0f)
            printf("  x%.9g", w[i]);
        printf("\n");
    }
    if (end + 1 < c->length && pad2 >= 0)
        printf("%3d-%d %lld  (padding; the second text encoder's: %d)\n", end + 1, c->length - 1,
               (long long)ids[end + 1], pad2);
    else if (end + 1 < c->length)
        printf("%3d-%d %lld  (padding)\n", end + 1, c->length - 1, (long long)ids[end + 1]);
}

/* What the command line asks for; parts are the arguments that make TEXT. */
typedef struct {
    const char *model, *embeddings, *weighting_name;
    int show_tokens, n_parts;
    char **parts;
    sdm_weighting weighting;
} tokenize_options;

/* Reads the command line into o. 0 to go on, 1 when done (--help), -1
 * after a message. */
static int parse_options(int argc, char **argv, tokenize_options *o)
{
    int after_dashes = 0;

    for (int i = 1; i < argc; i++) {
        int value = after_dashes ? 0 : sdm_option_value(argc, argv, &i, "--model", &o->model);

        if (!value && !after_dashes)
            value = sdm_option_value(argc, argv, &i, "--embeddings", &o->embeddings);
        if (!value && !after_dashes)
            value = sdm_option_value(argc, argv, &i, "--weighting", &o->weighting_name);
        if (value < 0) {
            fprintf(stderr, "sdmorph tokenize: %s needs a value\n", argv[i]);
            return -1;
        } else if (value > 0) {
            continue;
        } else if (after_dashes || argv[i][0] != '-' || argv[i][1] == '\0') {
            o->parts[o->n_parts++] = argv[i];
        } else if (!strcmp(argv[i], "--")) {
            after_dashes = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(argv[i], "--tokens")) {
            o->show_tokens = 1;
        } else {
            fprintf(stderr, "sdmorph tokenize: unknown option '%s' (a prompt that starts with '-' goes after --)\n",
                    argv[i]);
            usage(stderr);
            return -1;
        }
    }
    if (o->weighting_name && sdm_weighting_from_str(o->weighting_name, &o->weighting)) {
        fprintf(stderr, "sdmorph tokenize: --weighting must be a1111 or none, not '%s'\n", o->weighting_name);
        return -1;
    }
    if (o->n_parts == 0) {
        fprintf(stderr, "sdmorph tokenize: no TEXT given\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* TEXT: stdin for a lone -, else the arguments joined; NULL after a
 * message, *rc the exit status. */
static char *read_text(const tokenize_options *o, int *rc)
{
    char *text;

    *rc = SDM_EXIT_RUNTIME;
    if (o->n_parts == 1 && !strcmp(o->parts[0], "-")) {
        const char *why = NULL;
        size_t at = (size_t)-1;
        text = read_stdin(&why, &at);
        if (!text) {
            if (at != (size_t)-1)
                fprintf(stderr, "sdmorph tokenize: stdin has %s (at byte %zu)\n", why, at);
            else
                fprintf(stderr, "sdmorph tokenize: stdin is %s\n", why);
            *rc = strcmp(why, "out of memory") ? SDM_EXIT_USAGE : SDM_EXIT_RUNTIME;
            return NULL;
        }
        return text;
    }
    text = join_args(o->n_parts, o->parts);
    if (text && strlen(text) > MAX_TEXT_BYTES) {
        fprintf(stderr, "sdmorph tokenize: TEXT is more than 1 MiB (1048576 bytes), the most a prompt may be\n");
        *rc = SDM_EXIT_USAGE;
        free(text);
        return NULL;
    }
    if (!text)
        fprintf(stderr, "sdmorph tokenize: out of memory\n");
    return text;
}

/* The bundle (--model, else as render finds it) and its tokenizer. */
static int load_tokenizer(const char *model, sdm_bundle *bundle, sdm_tokenizer **tok, sdm_error *err)
{
    char model_dir[1024];

    if (sdm_bundle_dir_for(model, NULL, model_dir, sizeof model_dir))
        return sdm_error_set(err, SDM_EXIT_USAGE, "the model's path is too long");
    if (sdm_bundle_load(model_dir, bundle, err))
        return -1;
    return sdm_bundle_tokenizer(bundle, tok, err);
}

static void print_chunks(const sdm_tokenizer *tok, const sdm_prompt_chunks *chunks, const sdm_embeddings *embs,
                         int show_tokens, int pad2)
{
    if (chunks->invalid_utf8)
        sdm_warn("%d byte%s of the prompt %s not valid UTF-8, read as U+FFFD", chunks->invalid_utf8,
                 chunks->invalid_utf8 == 1 ? "" : "s", chunks->invalid_utf8 == 1 ? "is" : "are");
    if (chunks->n_chunks > 1)
        sdm_info("the prompt is %d tokens: %d chunks of up to %d, each encoded apart and joined", chunks->n_tokens,
                 chunks->n_chunks, chunks->length - 2);
    for (int k = 0; k < chunks->n_chunks; k++) {
        if (show_tokens)
            print_tokens(tok, chunks, embs, k, pad2);
        else
            print_ids(chunks, k);
    }
}

int sdm_cmd_tokenize(int argc, char **argv)
{
    tokenize_options o = { 0 };
    int rc = SDM_EXIT_USAGE, parsed;
    char *text = NULL;
    sdm_bundle bundle;
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };
    sdm_embeddings embs = { 0 };
    sdm_prompt_chunks chunks = { 0 };

    o.weighting = SDM_WEIGHTING_A1111;
    o.parts = calloc((size_t)argc, sizeof *o.parts);
    if (!o.parts) {
        fprintf(stderr, "sdmorph tokenize: out of memory\n");
        goto end;
    }
    parsed = parse_options(argc, argv, &o);
    if (parsed) {
        rc = parsed > 0 ? SDM_EXIT_OK : SDM_EXIT_USAGE;
        goto end;
    }
    text = read_text(&o, &rc);
    if (!text)
        goto end;
    if (load_tokenizer(o.model, &bundle, &tok, &err) || load_embeddings(o.embeddings, &bundle, tok, &embs, &err) ||
        sdm_prompt_chunks_make(tok, text, o.weighting == SDM_WEIGHTING_A1111, embs.list, embs.n, &chunks, &err))
        goto fail;
    print_chunks(tok, &chunks, &embs, o.show_tokens, sdm_bundle_is_xl(&bundle) ? bundle.text2.pad_id : -1);
    rc = SDM_EXIT_OK;
    goto end;
fail:
    fprintf(stderr, "sdmorph tokenize: %s\n", err.msg);
    rc = SDM_EXIT_RUNTIME;
end:
    sdm_prompt_chunks_clear(&chunks);
    sdm_embeddings_free(&embs);
    sdm_tokenizer_free(&tok);
    free(text);
    free(o.parts);
    return rc;
}
