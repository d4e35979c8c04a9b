/* sdmorph tokenize: the ids a prompt becomes, and with --tokens the
 * vocabulary pieces, so a user can see where the model stops reading. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "commands.h"
#include "model_dir.h"
#include "options.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph tokenize [--model DIR] [--tokens] [--] TEXT...\n"
            "  --model DIR   model bundle whose vocab.json/merges.txt to use (default:\n"
            "                $SDMORPH_MODEL, else the built-in build/models/analytic)\n"
            "  --tokens      one line per token: position, id, vocabulary piece\n"
            "  TEXT          the prompt (several arguments are joined by spaces; - reads stdin);\n"
            "                at most 1 MiB of text, no NUL byte\n"
            "Prints the token_length ids the text encoder reads: bos, the prompt's tokens,\n"
            "eos, padding. Warns on stderr when the prompt is cut or is not valid UTF-8\n"
            "(invalid bytes are read as U+FFFD).\n"
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

/* up to max bytes of s for a message, not cutting a UTF-8 sequence */
static int excerpt_len(const char *s, int max)
{
    int n = (int)strnlen(s, (size_t)max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

int sdm_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    int show_tokens = 0, after_dashes = 0, n_parts = 0, rc = SDM_EXIT_USAGE, L, end;
    char **parts = NULL;    /* the arguments that make TEXT */
    char model_dir[1024];
    char *text = NULL;
    sdm_bundle bundle;
    sdm_tokenizer_params tp = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_tokenize_info info;
    sdm_error err = { 0 };
    int64_t *ids = NULL;

    parts = calloc((size_t)argc, sizeof *parts);
    if (!parts) {
        fprintf(stderr, "sdmorph tokenize: out of memory\n");
        goto end;
    }
    for (int i = 1; i < argc; i++) {
        int value = after_dashes ? 0 : sdm_option_value(argc, argv, &i, "--model", &model);

        if (value < 0) {
            fprintf(stderr, "sdmorph tokenize: --model needs a directory\n");
            goto end;
        } else if (value > 0) {
            continue;
        } else if (after_dashes || argv[i][0] != '-' || argv[i][1] == '\0') {
            parts[n_parts++] = argv[i];
        } else if (!strcmp(argv[i], "--")) {
            after_dashes = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            rc = SDM_EXIT_OK;
            goto end;
        } else if (!strcmp(argv[i], "--tokens")) {
            show_tokens = 1;
        } else {
            fprintf(stderr, "sdmorph tokenize: unknown option '%s' (a prompt that starts with '-' goes after --)\n",
                    argv[i]);
            usage(stderr);
            goto end;
        }
    }
    if (n_parts == 0) {
        fprintf(stderr, "sdmorph tokenize: no TEXT given\n");
        usage(stderr);
        goto end;
    }
    rc = SDM_EXIT_RUNTIME;
    if (n_parts == 1 && !strcmp(parts[0], "-")) {
        const char *why = NULL;
        size_t at = (size_t)-1;
        text = read_stdin(&why, &at);
        if (!text) {
            if (at != (size_t)-1)
                fprintf(stderr, "sdmorph tokenize: stdin has %s (at byte %zu)\n", why, at);
            else
                fprintf(stderr, "sdmorph tokenize: stdin is %s\n", why);
            rc = strcmp(why, "out of memory") ? SDM_EXIT_USAGE : SDM_EXIT_RUNTIME;
            goto end;
        }
    } else {
        text = join_args(n_parts, parts);
        if (text && strlen(text) > MAX_TEXT_BYTES) {
            fprintf(stderr, "sdmorph tokenize: TEXT is more than 1 MiB (1048576 bytes), the most a prompt "
                    "may be\n");
            rc = SDM_EXIT_USAGE;
            goto end;
        }
    }
    if (!text) {
        fprintf(stderr, "sdmorph tokenize: out of memory\n");
        goto end;
    }

    if (model)
        snprintf(model_dir, sizeof model_dir, "%s", model);
    else
        sdm_default_model(model_dir, sizeof model_dir);
    if (sdm_bundle_load(model_dir, &bundle, &err))
        goto fail;
    tp.token_length = bundle.token_length;
    tp.pad_id = bundle.pad_id;
    tp.bos_id = bundle.bos_id;
    tp.eos_id = bundle.eos_id;
    if (sdm_tokenizer_load(bundle.vocab, bundle.merges, tp, &tok, &err))
        goto fail;

    L = sdm_tokenizer_token_length(tok);
    ids = malloc(sizeof *ids * (size_t)L);
    if (!ids) {
        fprintf(stderr, "sdmorph tokenize: out of memory\n");
        goto end;
    }
    sdm_tokenizer_encode(tok, text, ids, &info);
    if (info.invalid_utf8)
        sdm_warn("%d byte%s of the prompt %s not valid UTF-8, read as U+FFFD", info.invalid_utf8,
                 info.invalid_utf8 == 1 ? "" : "s", info.invalid_utf8 == 1 ? "is" : "are");
    if (info.n_dropped > 0) {
        const char *cut = text + info.dropped_at;
        int n = excerpt_len(cut, 120);
        sdm_warn("the prompt is %d tokens, the model reads %d (%d with bos and eos): %d dropped, from \"%.*s%s\"",
                 info.n_tokens, L - 2, L, info.n_dropped, n, cut, cut[n] ? "..." : "");
    }

    end = info.n_tokens - info.n_dropped + 1;     /* where eos is */
    if (show_tokens) {
        for (int i = 0; i <= end; i++) {
            const char *p = sdm_tokenizer_piece(tok, ids[i]);
            printf("%3d %6lld  %s\n", i, (long long)ids[i], p ? p : "?");
        }
        if (end + 1 < L)
            printf("%3d-%d %lld  (padding)\n", end + 1, L - 1, (long long)ids[end + 1]);
    } else {
        for (int i = 0; i < L; i++)
            printf("%s%lld", i ? " " : "", (long long)ids[i]);
        printf("\n");
    }
    rc = SDM_EXIT_OK;
    goto end;
fail:
    fprintf(stderr, "sdmorph tokenize: %s\n", err.msg);
    rc = SDM_EXIT_RUNTIME;
end:
    sdm_tokenizer_free(&tok);
    free(ids);
    free(text);
    free(parts);
    return rc;
}
