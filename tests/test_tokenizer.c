/* The CLIP tokenizer: the golden prompts made by transformers'
 * CLIPTokenizer on the real vocabulary (../shared/clip), edge cases on the
 * same vocabulary, and load errors and BPE order on tiny generated files. */
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "commands.h"
#include "test.h"
#include "tokenizer.h"

#define CLIP_DIR "../shared/clip"
#define L 77

static char tmpdir[] = "/tmp/sdm_tok_XXXXXX";

static const char *write_tmp(const char *name, const char *text)
{
    static char path[64][256]; /* enough for every file this test writes */
    static int slot;
    char *p = path[slot++ % 64];
    FILE *f;

    snprintf(p, sizeof path[0], "%s/%s", tmpdir, name);
    f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

static sdm_tokenizer *load_clip(int pad_id, int token_length)
{
    sdm_tokenizer_params p = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };

    p.pad_id = pad_id;
    p.token_length = token_length;
    if (sdm_tokenizer_load(CLIP_DIR "/vocab.json", CLIP_DIR "/merges.txt", p, &tok, &err))
        fprintf(stderr, "load: %s\n", err.msg);
    return tok;
}

/* ids of text, bos..eos without padding, into out; returns their count */
static int encode_row(const sdm_tokenizer *tok, const char *text, int64_t *row, sdm_tokenize_info *info)
{
    int n = sdm_tokenizer_token_length(tok);
    sdm_tokenizer_encode(tok, text, row, info);
    for (int i = 0; i < n; i++) {
        if (row[i] == sdm_tokenizer_eos_id(tok))
            return i + 1;
    }
    return -1;
}

static int same_ids(const sdm_tokenizer *tok, const char *a, const char *b)
{
    int64_t ra[L], rb[L];
    sdm_tokenizer_encode(tok, a, ra, NULL);
    sdm_tokenizer_encode(tok, b, rb, NULL);
    return memcmp(ra, rb, sizeof ra) == 0;
}

static void test_golden(const sdm_tokenizer *tok)
{
    FILE *f = fopen(CLIP_DIR "/golden_dev.jsonl", "r");
    char line[65536];
    int n_lines = 0, n_match = 0;

    CHECK(f != NULL);
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        struct json_object *o = json_tokener_parse(line), *prompt, *ids;
        int64_t row[L];
        sdm_tokenize_info info;
        int n, ok = 1;

        if (!o)
            continue;
        n_lines++;
        if (json_object_object_get_ex(o, "prompt", &prompt) && json_object_object_get_ex(o, "ids", &ids)) {
            n = (int)json_object_array_length(ids);
            sdm_tokenizer_encode(tok, json_object_get_string(prompt), row, &info);
            for (int i = 0; i < L; i++) {
                int64_t want = i < n ? json_object_get_int64(json_object_array_get_idx(ids, (size_t)i)) : 49407;
                if (row[i] != want) {
                    fprintf(stderr, "golden %d \"%s\": id %d is %lld, want %lld\n", n_lines,
                            json_object_get_string(prompt), i, (long long)row[i], (long long)want);
                    ok = 0;
                    break;
                }
            }
            if (n < L)
                ok = ok && info.n_tokens == n - 2 && info.n_dropped == 0 && info.dropped_at == -1;
            else
                ok = ok && info.n_dropped > 0 && info.n_tokens == L - 2 + info.n_dropped;
            n_match += ok;
        }
        json_object_put(o);
    }
    fclose(f);
    CHECK(n_lines >= 20);
    CHECK_INT(n_match, n_lines);
}

static void test_edges(const sdm_tokenizer *tok)
{
    int64_t row[L], row2[L];
    sdm_tokenize_info info;
    char *big;
    int n;

    /* empty: bos, eos, padding */
    n = encode_row(tok, "", row, &info);
    CHECK_INT(n, 2);
    CHECK_INT(row[0], 49406);
    CHECK_INT(row[1], 49407);
    CHECK_INT(row[L - 1], 49407);
    CHECK_INT(info.n_tokens, 0);
    CHECK_INT(info.dropped_at, -1);
    CHECK(same_ids(tok, "", "   \t\n  "));
    sdm_tokenizer_encode(tok, NULL, row2, NULL);
    CHECK(memcmp(row, row2, sizeof row) == 0);

    /* invalid UTF-8: each maximal ill-formed subpart becomes one U+FFFD */
    sdm_tokenizer_encode(tok, "caf\xe9 au lait", row, &info);
    CHECK_INT(info.invalid_utf8, 1);
    CHECK(same_ids(tok, "caf\xe9 au lait", "caf\xef\xbf\xbd au lait"));
    sdm_tokenizer_encode(tok, "abc\xe2\x82", row, &info); /* cut 3-byte sequence: one */
    CHECK_INT(info.invalid_utf8, 2);
    CHECK(same_ids(tok, "abc\xe2\x82", "abc\xef\xbf\xbd"));
    sdm_tokenizer_encode(tok, "\xed\xa0\x80", row, &info); /* a surrogate: three */
    CHECK_INT(info.invalid_utf8, 3);
    CHECK(same_ids(tok, "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    CHECK(same_ids(tok, "\xc0\xaf x \xff", "\xef\xbf\xbd\xef\xbf\xbd x \xef\xbf\xbd"));
    n = encode_row(tok, "\xff", row, &info);
    {
        /* U+FFFD's bytes EF BF BD stand for U+00EF U+00BF U+00BD */
        char joined[64] = "";
        for (int i = 1; i < n - 1; i++)
            strncat(joined, sdm_tokenizer_piece(tok, row[i]), sizeof joined - strlen(joined) - 1);
        CHECK_STR(joined, "\xc3\xaf\xc2\xbf\xc2\xbd</w>");
    }

    /* normalization: NFC, white space runs, case */
    CHECK(same_ids(tok, "cafe\xcc\x81", "caf\xc3\xa9"));
    CHECK(same_ids(tok, "  A\tPHOTO \xc2\xa0\xe3\x80\x80 of\n\na Cat  ", "a photo of a cat"));
    CHECK(!same_ids(tok, "na\xc3\xafve", "naive")); /* accents stay */
    CHECK(same_ids(tok, "\xc4\xb0stanbul", "i \xcc\x87 stanbul")); /* U+0130 lowercases to i U+0307 */
    /* pre-tokenization: contractions, digits one by one, punctuation runs */
    CHECK(same_ids(tok, "'sun", "'s un"));
    CHECK(same_ids(tok, "2024", "2 0 2 4"));
    CHECK(same_ids(tok, "wow!!!?", "wow !!!?"));
    CHECK(!same_ids(tok, "wow!!!?", "wow ! ! ! ?"));
    /* CJK letters make one run, as any letters (the ftfy-less slow
     * tokenizer split them one by one) */
    CHECK(!same_ids(tok, "\xe5\xb1\xb1\xe6\xb0\xb4", "\xe5\xb1\xb1 \xe6\xb0\xb4"));

    /* special tokens: exact spelling in the raw text; other cases are text */
    sdm_tokenizer_encode(tok, "a<|endoftext|>b", row, &info);
    CHECK_INT(row[1], 320);
    CHECK_INT(row[2], 49407);
    CHECK_INT(row[3], 321); /* b</w> */
    CHECK_INT(row[4], 49407);
    CHECK_INT(info.n_tokens, 3);
    CHECK(same_ids(tok, "<|EndOfText|>", "<| endoftext |>"));
    CHECK(same_ids(tok, "<|ENDOFTEXT|>,", "<| endoftext |> ,"));
    CHECK_STR(sdm_tokenizer_piece(tok, 320), "a</w>");
    CHECK_STR(sdm_tokenizer_piece(tok, 49406), "<|startoftext|>");
    CHECK(sdm_tokenizer_piece(tok, 49408) == NULL);
    CHECK(sdm_tokenizer_piece(tok, -1) == NULL);

    /* truncation at exactly 77: 75 tokens fit, the 76th is dropped */
    big = calloc(1, 200 * 2 + 1);
    for (int i = 0; i < 75; i++)
        strcat(big, "a ");
    n = encode_row(tok, big, row, &info);
    CHECK_INT(n, L);
    CHECK_INT(row[75], 320);
    CHECK_INT(row[76], 49407);
    CHECK_INT(info.n_tokens, 75);
    CHECK_INT(info.n_dropped, 0);
    CHECK_INT(info.dropped_at, -1);
    strcat(big, "b ");
    n = encode_row(tok, big, row, &info);
    CHECK_INT(n, L);
    CHECK_INT(row[75], 320);
    CHECK_INT(row[76], 49407);
    CHECK_INT(info.n_tokens, 76);
    CHECK_INT(info.n_dropped, 1);
    CHECK_INT(info.dropped_at, 150);
    free(big);

    /* 100 kB: truncated, counted, the cut found */
    big = malloc(100 * 1024 + 1);
    for (int i = 0; i < 100 * 1024; i++)
        big[i] = "a photo of a cat, "[i % 18];
    big[100 * 1024] = '\0';
    n = encode_row(tok, big, row, &info);
    CHECK_INT(n, L);
    CHECK_INT(row[1], 320);
    CHECK_INT(info.n_tokens, 100 * 1024 / 18 * 6 + 5); /* 6 a repeat; the tail "a photo of a cat" 5 */
    CHECK_INT(info.n_dropped, info.n_tokens - 75);
    CHECK_INT(info.dropped_at, 12 * 18 + 11); /* 75 = 12 repeats + "a photo of" */
    /* one 100 kB word: BPE of a long word without quadratic rescans */
    memset(big, 'q', 100 * 1024);
    n = encode_row(tok, big, row, &info);
    CHECK_INT(n, L);
    CHECK(info.n_dropped > 0);
    CHECK_INT(info.n_tokens, info.n_dropped + 75);
    /* 100 kB of arbitrary bytes: no crash, a well-formed row */
    srand(7);
    for (int i = 0; i < 100 * 1024; i++)
        big[i] = (char)(1 + rand() % 255);
    sdm_tokenizer_encode(tok, big, row, &info);
    CHECK(info.invalid_utf8 > 0);
    CHECK_INT(row[0], 49406);
    CHECK_INT(row[76], 49407);
    n = 1;
    for (int i = 0; i < L; i++)
        n = n && row[i] >= 0 && row[i] < 49408;
    CHECK(n);
    free(big);
}

static void test_params(void)
{
    sdm_tokenizer *tok = load_clip(0, 8);
    int64_t row[8];
    sdm_tokenize_info info;

    CHECK(tok != NULL);
    if (!tok)
        return;
    CHECK_INT(sdm_tokenizer_token_length(tok), 8);
    CHECK_INT(sdm_tokenizer_pad_id(tok), 0);
    sdm_tokenizer_encode(tok, "a cat", row, &info);
    CHECK_INT(row[3], 49407);
    CHECK_INT(row[4], 0);
    CHECK_INT(row[7], 0);
    sdm_tokenizer_encode(tok, "one two three four five six seven", row, &info);
    CHECK_INT(row[7], 49407);
    CHECK_INT(info.n_dropped, 1);
    CHECK_INT(info.dropped_at, 28);
    sdm_tokenizer_free(&tok);
    CHECK(tok == NULL);
    sdm_tokenizer_free(&tok);
    sdm_tokenizer_free(NULL);
}

/* A tiny vocabulary: merge order and unknown bytes. */
static const char *TINY_VOCAB =
    "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1, \"a\": 2, \"b\": 3, \"c\": 4,\n"
    " \"a</w>\": 5, \"b</w>\": 6, \"c</w>\": 7, \"ab\": 8, \"bc</w>\": 9, \"abc</w>\": 10}\n";

static void test_tiny(void)
{
    sdm_tokenizer_params p = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };
    const char *vocab = write_tmp("vocab.json", TINY_VOCAB);
    int64_t row[77];

    /* "b c</w>" outranks "a b": abc -> a, bc</w> */
    CHECK_INT(sdm_tokenizer_load(vocab, write_tmp("m1.txt", "#version: 0.2\nb c</w>\na b\nab c</w>\n"), p, &tok, &err),
              0);
    if (tok) {
        sdm_tokenizer_encode(tok, "abc", row, NULL);
        CHECK_INT(row[1], 2);
        CHECK_INT(row[2], 9);
        CHECK_INT(row[3], 1);
        /* unknown bytes are the unknown token, <|endoftext|> */
        sdm_tokenizer_encode(tok, "xa", row, NULL);
        CHECK_INT(row[1], 1);
        CHECK_INT(row[2], 5);
        sdm_tokenizer_free(&tok);
    }
    /* the other order: ab first, then ab c</w> */
    CHECK_INT(sdm_tokenizer_load(vocab, write_tmp("m2.txt", "a b\nb c</w>\nab c</w>\n"), p, &tok, &err), 0);
    if (tok) {
        sdm_tokenizer_encode(tok, "abc", row, NULL);
        CHECK_INT(row[1], 10);
        CHECK_INT(row[2], 1);
        sdm_tokenizer_free(&tok);
    }
}

static void expect_load_error(const char *vocab, const char *merges, sdm_tokenizer_params p, const char *part1,
                              const char *part2)
{
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };
    CHECK_INT(sdm_tokenizer_load(vocab, merges, p, &tok, &err), -1);
    CHECK(tok == NULL);
    CHECK_INT(err.code, 1);
    CHECK_CONTAINS(err.msg, part1);
    CHECK_CONTAINS(err.msg, part2);
}

static void test_load_errors(void)
{
    sdm_tokenizer_params p = sdm_tokenizer_default_params();
    const char *vocab = write_tmp("vocab.json", TINY_VOCAB);
    const char *merges = write_tmp("merges.txt", "a b\n");
    char missing[300];

    snprintf(missing, sizeof missing, "%s/nope.json", tmpdir);
    expect_load_error(missing, merges, p, "nope.json", "No such file");
    expect_load_error(vocab, missing, p, "nope.json", "No such file");
    expect_load_error(write_tmp("bad1.json", "{\"a\": 1,\n \"b\": }\n"), merges, p, "bad1.json:2:", "JSON");
    expect_load_error(write_tmp("bad2.json", "{\"a\": 1,\n \"b\": 2\n"), merges, p, "bad2.json:", "end of file");
    expect_load_error(write_tmp("bad3.json", "{\"a\": \"x\"}"), merges, p, "bad3.json", "\"a\" is not an integer");
    expect_load_error(write_tmp("bad4.json", "[1, 2]"), merges, p, "bad4.json", "object");
    expect_load_error(write_tmp("bad5.json", "{\"a\": 1, \"b\": 1}"), merges, p, "bad5.json", "id 1");
    expect_load_error(write_tmp("bad6.json", "{\"a\": 0}"), merges, p, "bad6.json", "<|startoftext|>");
    expect_load_error(write_tmp("bad7.json", "{\"a\": -3}"), merges, p, "bad7.json", "-3");
    expect_load_error(write_tmp("bad8.json", ""), merges, p, "bad8.json", "JSON");
    expect_load_error(vocab, write_tmp("bm1.txt", "#version: 0.2\na b\nabc\n"), p, "bm1.txt:3:", "two tokens");
    expect_load_error(vocab, write_tmp("bm2.txt", "a b\na  b\n"), p, "bm2.txt:2:", "two tokens");
    expect_load_error(vocab, write_tmp("bm3.txt", "a b\n\na z\n"), p, "bm3.txt:3:", "\"z\" is not in the vocab");
    expect_load_error(vocab, write_tmp("bm4.txt", "a c\n"), p, "bm4.txt:1:", "merged token \"ac\"");
    p.token_length = 1;
    expect_load_error(vocab, merges, p, "token length 1", "");
    p = sdm_tokenizer_default_params();
    p.pad_id = 99;
    expect_load_error(vocab, merges, p, "vocab.json", "pad id 99");
    p = sdm_tokenizer_default_params();
    p.eos_id = 49407;
    expect_load_error(vocab, merges, p, "vocab.json", "eos_id 49407");
    p = sdm_tokenizer_default_params();
    {
        /* CRLF line ends and a missing "#version" line are fine */
        sdm_tokenizer *tok = NULL;
        sdm_error err = { 0 };
        CHECK_INT(sdm_tokenizer_load(vocab, write_tmp("ok.txt", "a b\r\nb c</w>\r\n"), p, &tok, &err), 0);
        sdm_tokenizer_free(&tok);
    }
}

/* Runs sdmorph tokenize ARGS with stdout and stderr captured. */
static int run_tokenize(char *out, size_t out_len, char *errs, size_t err_len, int argc, char **argv)
{
    FILE *fo = tmpfile(), *fe = tmpfile();
    int saved_out, saved_err, rc;
    size_t n;

    if (!fo || !fe)
        return -100;
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(1);
    saved_err = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    rc = sdm_cmd_tokenize(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    rewind(fo);
    n = fread(out, 1, out_len - 1, fo);
    out[n] = '\0';
    rewind(fe);
    n = fread(errs, 1, err_len - 1, fe);
    errs[n] = '\0';
    fclose(fo);
    fclose(fe);
    return rc;
}

static const char *const MODEL_YAML =
    "format: 1\nfamily: sd1\nprediction: epsilon\ndtype: float32\nlatent_channels: 4\nvae_scale: 8\n"
    "scaling_factor: 0.18215\nwidth: 512\nheight: 512\n"
    "text:\n  token_length: 77\n  hidden_size: 768\n  bos_id: 49406\n  eos_id: %d\n  pad_id: %d\n"
    "schedule:\n  train_steps: 1000\n  beta_start: 0.00085\n  beta_end: 0.012\n  beta_schedule: scaled_linear\n"
    "files:\n  text_encoder: te.pt\n  unet: unet.pt\n  vae_decoder: vae.pt\n  vocab: vocab.json\n"
    "  merges: merges.txt\n";

/* A bundle of the real tokenizer files (linked) and empty modules. */
static void make_bundle(const char *name, int eos_id, int pad_id, char *dir, size_t len)
{
    char path[600], yaml[1024], target[PATH_MAX];
    const char *files[] = { "te.pt", "unet.pt", "vae.pt" };

    snprintf(dir, len, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.yaml", name);
    snprintf(yaml, sizeof yaml, MODEL_YAML, eos_id, pad_id);
    write_tmp(path, yaml);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", name, files[i]);
        write_tmp(path, "");
    }
    if (realpath(CLIP_DIR "/vocab.json", target)) {
        snprintf(path, sizeof path, "%s/vocab.json", dir);
        CHECK_INT(symlink(target, path), 0);
    }
    if (realpath(CLIP_DIR "/merges.txt", target)) {
        snprintf(path, sizeof path, "%s/merges.txt", dir);
        CHECK_INT(symlink(target, path), 0);
    }
}

static void test_command(void)
{
    static char out[65536], errs[8192];
    char dir[512], bad[512], missing[512], *big;
    int rc;

    make_bundle("sd1", 49407, 49407, dir, sizeof dir);
    {
        char *argv[] = { "tokenize", "--model", dir, "a photo of a", "cat", NULL };
        rc = run_tokenize(out, sizeof out, errs, sizeof errs, 5, argv);
        CHECK_INT(rc, 0);
        CHECK(strncmp(out, "49406 320 1125 539 320 2368 49407 49407 49407", 45) == 0);
        {
            int n = 0;
            for (char *p = out; *p; p++)
                n += *p == ' ';
            CHECK_INT(n, 76); /* 77 ids */
        }
        CHECK_STR(errs, "");
    }
    {
        char *argv[] = { "tokenize", "a photo of a cat", "--tokens", "--model", dir, NULL };
        rc = run_tokenize(out, sizeof out, errs, sizeof errs, 5, argv);
        CHECK_INT(rc, 0);
        CHECK_CONTAINS(out, "  0  49406  <|startoftext|>\n");
        CHECK_CONTAINS(out, "  5   2368  cat</w>\n");
        CHECK_CONTAINS(out, "  6  49407  <|endoftext|>\n");
        CHECK_CONTAINS(out, "7-76 49407  (padding)");
    }
    big = malloc(200 * 6 + 1);
    big[0] = '\0';
    for (int i = 0; i < 200; i++)
        strcat(big, i == 38 ? "dog , " : "cat , ");
    {
        /* 400 tokens in A1111's chunks of 75: a chunk that fills on a comma
         * closes there, so chunks 2, 4 and 6 start with the comma after it */
        char *argv[] = { "tokenize", "--model", dir, big, NULL };
        const char *line = out;
        int lines = 0;
        rc = run_tokenize(out, sizeof out, errs, sizeof errs, 4, argv);
        CHECK_INT(rc, 0);
        CHECK_CONTAINS(errs, "the prompt is 400 tokens: 6 chunks of up to 75");
        for (const char *p = out; *p; p++)
            lines += *p == '\n';
        CHECK_INT(lines, 6);
        CHECK(strncmp(out, "49406 2368 267 ", 15) == 0);
        line = strchr(out, '\n');
        CHECK(line && strncmp(line + 1, "49406 267 1929 267 2368 ", 24) == 0); /* ", dog , cat" */
        line = line ? strchr(line + 1, '\n') : NULL;
        CHECK(line && strncmp(line + 1, "49406 2368 267 ", 15) == 0);
    }
    free(big);
    {
        char *argv[] = { "tokenize", "--model", dir, "caf\xe9", NULL };
        rc = run_tokenize(out, sizeof out, errs, sizeof errs, 4, argv);
        CHECK_INT(rc, 0);
        CHECK_CONTAINS(errs, "1 byte of the prompt is not valid UTF-8");
    }
    {
        char *argv[] = { "tokenize", "--model", dir, "--", "--tokens", NULL };
        rc = run_tokenize(out, sizeof out, errs, sizeof errs, 5, argv);
        CHECK_INT(rc, 0);
        CHECK(strncmp(out, "49406 2432 23562 49407 ", 23) == 0); /* "--", "tokens" */
    }
    /* usage errors: 2 */
    {
        char *argv[] = { "tokenize", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 1, argv), 2);
        CHECK_CONTAINS(errs, "no TEXT");
    }
    {
        char *argv[] = { "tokenize", "--frobnicate", "x", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 3, argv), 2);
        CHECK_CONTAINS(errs, "--frobnicate");
    }
    {
        char *argv[] = { "tokenize", "x", "--model", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 3, argv), 2);
    }
    /* load failures: 1, the message names the file */
    snprintf(missing, sizeof missing, "%s/no-such-bundle", tmpdir);
    {
        char *argv[] = { "tokenize", "--model", missing, "x", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 4, argv), 1);
        CHECK_CONTAINS(errs, "no-such-bundle/model.yaml");
        CHECK_STR(out, "");
    }
    make_bundle("wrong-eos", 7, 0, bad, sizeof bad);
    {
        char *argv[] = { "tokenize", "--model", bad, "x", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 4, argv), 1);
        CHECK_CONTAINS(errs, "vocab.json");
        CHECK_CONTAINS(errs, "eos_id 7");
    }
    /* SD 2.x pads with 0; $SDMORPH_MODEL is the default bundle */
    make_bundle("sd2", 49407, 0, bad, sizeof bad);
    setenv("SDMORPH_MODEL", bad, 1);
    {
        char *argv[] = { "tokenize", "x", NULL };
        CHECK_INT(run_tokenize(out, sizeof out, errs, sizeof errs, 2, argv), 0);
        CHECK(strncmp(out, "49406 343 49407 0 0 ", 20) == 0);
    }
    unsetenv("SDMORPH_MODEL");
}

int main(void)
{
    sdm_tokenizer *tok;

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_tiny();
    test_load_errors();
    if (access(CLIP_DIR "/vocab.json", R_OK) != 0) {
        SKIP("../shared/clip is absent: the golden prompts and the real-vocabulary edge cases were not run");
    } else {
        tok = load_clip(-1, L);
        CHECK(tok != NULL);
        if (tok) {
            test_golden(tok);
            test_edges(tok);
            sdm_tokenizer_free(&tok);
        }
        test_params();
        test_command();
    }
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    return test_report();
}
