/* Prompts as the text encoder reads them, on the analytic bundle, whose
 * answers are exact: A1111's 75-token chunks (comma backtrack, BREAK,
 * padding), weights (rows scaled, the chunk's mean restored), clip skip
 * (layer k of the analytic encoder is the last plus (layers-1-k)·delta),
 * textual-inversion embeddings (vectors in place of a name's tokens), and
 * the older bundle kind (ids in: plain prompts alike, the rest refused). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "analytic.h"
#include "cli_run.h"
#include "embeddings.h"
#include "prompt_chunks.h"
#include "safetensors.h"
#include "text_encoder.h"

static const sdm_device cpu = { SDM_DEVICE_CPU, 0 };
static char tmpdir[256];

static int id_of(const sdm_tokenizer *tok, const char *piece)
{
    return sdm_tokenizer_find(tok, piece);
}

/* ---- chunks (no model) --------------------------------------------------- */

static void test_chunks(const sdm_tokenizer *tok)
{
    int bos = sdm_tokenizer_bos_id(tok), eos = sdm_tokenizer_eos_id(tok);
    int city = id_of(tok, "city</w>"), fog = id_of(tok, "fog</w>"), comma = id_of(tok, ",</w>");
    int a = id_of(tok, "a</w>");
    sdm_prompt_chunks c;
    sdm_error err = { 0 };
    int64_t ids[77];

    CHECK(city > 0 && fog > 0 && comma > 0 && a > 0);
    /* a plain prompt: the one chunk is what the tokenizer makes, weights 1 */
    CHECK_INT(sdm_prompt_chunks_make(tok, "a city, fog", 1, NULL, 0, &c, &err), 0);
    sdm_tokenizer_encode(tok, "a city, fog", ids, NULL);
    CHECK_INT(c.n_chunks, 1);
    CHECK_INT(c.n_tokens, 4);
    CHECK(c.n_chunks == 1 && !memcmp(c.ids, ids, sizeof ids));
    CHECK_INT(c.weighted, 0);
    sdm_prompt_chunks_clear(&c);

    /* weights: (city:1.5) and [fog] (1/1.1, as A1111's float) on their tokens only */
    CHECK_INT(sdm_prompt_chunks_make(tok, "a (city:1.5), [fog]", 1, NULL, 0, &c, &err), 0);
    CHECK_INT(c.ids[2], city);
    CHECK(c.weights[0] == 1.0f && c.weights[1] == 1.0f && c.weights[2] == 1.5f && c.weights[3] == 1.0f);
    CHECK(c.weights[4] == (float)(1 / 1.1) && c.ids[4] == fog && c.weights[5] == 1.0f && c.ids[5] == eos);
    CHECK_INT(c.weighted, 1);
    sdm_prompt_chunks_clear(&c);
    /* weighting none: the brackets are text, every weight 1 */
    CHECK_INT(sdm_prompt_chunks_make(tok, "a (city:1.5)", 0, NULL, 0, &c, &err), 0);
    CHECK_INT(c.weighted, 0);
    CHECK(c.n_tokens > 2);
    sdm_prompt_chunks_clear(&c);

    /* BREAK: a new chunk; the first is padded (75 places counted) */
    CHECK_INT(sdm_prompt_chunks_make(tok, "a city BREAK fog", 1, NULL, 0, &c, &err), 0);
    CHECK_INT(c.n_chunks, 2);
    CHECK_INT(c.n_tokens, 76);
    if (c.n_chunks == 2) {
        CHECK(c.ids[0] == bos && c.ids[1] == a && c.ids[2] == city && c.ids[3] == eos && c.ids[76] == eos);
        CHECK(c.ids[77] == bos && c.ids[78] == fog && c.ids[79] == eos);
    }
    sdm_prompt_chunks_clear(&c);

    /* 74 "a" then ", city fog fog": the chunk fills at the first "fog", 2
     * places after the comma, so "city fog" moves on (A1111's backtrack) */
    {
        char text[512] = "";
        for (int i = 0; i < 74; i++)
            strcat(text, "a ");
        strcat(text, ", city fog fog");
        CHECK_INT(sdm_prompt_chunks_make(tok, text, 1, NULL, 0, &c, &err), 0);
        CHECK_INT(c.n_chunks, 2);
        CHECK_INT(c.n_tokens, 75 + 3);
        if (c.n_chunks == 2) {
            CHECK(c.ids[74] == a && c.ids[75] == comma && c.ids[76] == eos);
            CHECK(c.ids[78] == city && c.ids[79] == fog && c.ids[80] == fog && c.ids[81] == eos);
        }
        /* padded to 3 with the empty prompt's chunk */
        CHECK_INT(sdm_prompt_chunks_pad(&c, tok, 3), 0);
        CHECK_INT(c.n_chunks, 3);
        sdm_tokenizer_encode(tok, "", ids, NULL);
        CHECK(c.n_chunks == 3 && !memcmp(c.ids + 154, ids, sizeof ids));
        sdm_prompt_chunks_clear(&c);
    }

    /* a weight that is not a number is an error */
    CHECK(sdm_prompt_chunks_make(tok, "(a:1.2.3)", 1, NULL, 0, &c, &err) != 0);
    CHECK_CONTAINS(err.msg, "1.2.3");
}

static void test_chunks_sd2_padding(const char *dir)
{
    /* pad id 0 (SD 2.x): bos, tokens, eos, then 0s, as A1111 rewrites them */
    char vocab[600], merges[600];
    sdm_tokenizer_params tp = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_prompt_chunks c;
    sdm_error err = { 0 };

    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    tp.pad_id = 0;
    CHECK_INT(sdm_tokenizer_load(vocab, merges, tp, &tok, &err), 0);
    if (!tok)
        return;
    CHECK_INT(sdm_prompt_chunks_make(tok, "a city", 1, NULL, 0, &c, &err), 0);
    CHECK(c.ids[3] == sdm_tokenizer_eos_id(tok) && c.ids[4] == 0 && c.ids[76] == 0);
    sdm_prompt_chunks_clear(&c);
    sdm_tokenizer_free(&tok);
}

/* ---- the text encoder ---------------------------------------------------- */

static float *embed_host(sdm_text_encoder *te, const char *prompt, int parse, int skip, int min_chunks, int64_t *rows)
{
    const sdm_text_opts o = { parse, skip, min_chunks };
    sdm_tensor *t = NULL;
    sdm_error err = { 0 };
    float *v = NULL;

    if (sdm_text_encoder_run(te, prompt, &o, &t, &err)) {
        fprintf(stderr, "%s: %s\n", prompt, err.msg);
        return NULL;
    }
    *rows = sdm_tensor_dim(t, 1);
    v = host_f32(t);
    sdm_tensor_free(&t);
    return v;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* A1111's emphasis on host floats: rows times weights, the mean restored. */
static void emphasis(float *z, const float *w, int L, int H)
{
    double before = 0, after = 0;
    for (int i = 0; i < L * H; i++)
        before += z[i];
    for (int i = 0; i < L * H; i++) {
        z[i] *= w[i / H];
        after += z[i];
    }
    for (int i = 0; i < L * H; i++)
        z[i] *= (float)(before / (L * H)) / (float)(after / (L * H));
}

/* A .safetensors with one float32 tensor "emb_params" [n, H]. */
static void write_embedding(const char *path, const float *v, int n, int H)
{
    char header[256];
    uint64_t len;
    FILE *f = fopen(path, "wb");
    int hl = snprintf(header, sizeof header,
                      "{\"emb_params\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                      "\"data_offsets\":[0,%d]}}",
                      n, H, n * H * 4);

    while (hl % 8)
        header[hl++] = ' ';
    len = (uint64_t)hl;
    if (!f)
        return;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, (size_t)hl, f);
    fwrite(v, sizeof *v, (size_t)n * H, f);
    fclose(f);
}

static void test_encoder(sdm_engine *e)
{
    sdm_text_encoder *te = sdm_engine_text(e);
    const sdm_bundle *b = sdm_engine_bundle(e);
    const sdm_tokenizer *tok = sdm_engine_tokenizer(e);
    int L = b->token_length, H = b->hidden_size;
    size_t n1 = (size_t)L * H;
    int64_t rows = 0, r2 = 0, r3 = 0;
    float *plain, *skip2, *weighted, *brk, *parts[2], *padded, *delta = NULL, *w;
    sdm_module *m = NULL;
    sdm_error err = { 0 };

    CHECK_INT(b->text_layers, 3);
    CHECK_INT(sdm_text_encoder_layers(te), 3);
    /* the last layer from looked-up embeddings is the module's own from ids */
    plain = embed_host(te, "a city at night", 1, 1, 1, &rows);
    CHECK_INT(rows, L);
    if (!sdm_module_load(b->text_encoder, cpu, &m)) {
        int64_t ids[77], shape[2] = { 1, 77 };
        sdm_tensor *t = NULL, *out = NULL, *d = NULL;
        sdm_tokenizer_encode(tok, "a city at night", ids, NULL);
        sdm_tensor_from_host(ids, SDM_I64, shape, 2, cpu, &t);
        CHECK_INT(sdm_module_call(m, "from_ids", &t, 1, &out), 0);
        if (out && plain) {
            float *v = host_f32(out);
            CHECK(max_diff(v, plain, n1) == 0);
            free(v);
        }
        CHECK_INT(sdm_module_call(m, "layer_delta", NULL, 0, &d), 0);
        delta = d ? host_f32(d) : NULL;
        sdm_tensor_free(&t);
        sdm_tensor_free(&out);
        sdm_tensor_free(&d);
        sdm_module_free(&m);
    }
    /* clip skip 2: one layer back, + delta on every row */
    skip2 = embed_host(te, "a city at night", 1, 2, 1, &rows);
    if (plain && skip2 && delta) {
        double worst = 0;
        for (size_t i = 0; i < n1; i++)
            worst = fmax(worst, fabs((double)skip2[i] - (plain[i] + delta[i % H])));
        CHECK(worst < 1e-6);
        CHECK(max_diff(plain, skip2, n1) > 0.1);
    }
    {
        const sdm_text_opts o = { 1, 4, 1 };
        sdm_tensor *t = NULL;
        CHECK(sdm_text_encoder_run(te, "a city", &o, &t, &err) != 0);
        CHECK_CONTAINS(err.msg, "has 3 layers");
    }

    /* weights: A1111's emphasis of the plain encoding */
    weighted = embed_host(te, "a (city:1.5) at [night]", 1, 1, 1, &rows);
    w = calloc((size_t)L, sizeof *w);
    if (plain && weighted && w) {
        for (int i = 0; i < L; i++)
            w[i] = i == 2 ? 1.5f : i == 4 ? (float)(1 / 1.1) : 1.0f;
        emphasis(plain, w, L, H);
        CHECK(max_diff(plain, weighted, n1) < 1e-6);
    }
    free(w);

    /* BREAK and padding: chunks encoded apart and joined along the tokens */
    brk = embed_host(te, "a city BREAK fog", 1, 1, 1, &rows);
    parts[0] = embed_host(te, "a city", 1, 1, 1, &r2);
    parts[1] = embed_host(te, "fog", 1, 1, 1, &r2);
    CHECK_INT(rows, 2 * L);
    if (brk && parts[0] && parts[1]) {
        CHECK(max_diff(brk, parts[0], n1) == 0);
        CHECK(max_diff(brk + n1, parts[1], n1) == 0);
    }
    padded = embed_host(te, "fog", 1, 1, 3, &r3);
    CHECK_INT(r3, 3 * L);
    free(parts[0]);
    parts[0] = embed_host(te, "", 1, 1, 1, &r2);
    if (padded && parts[0] && parts[1]) {
        CHECK(max_diff(padded, parts[1], n1) == 0);
        CHECK(max_diff(padded + 2 * n1, parts[0], n1) == 0);
    }

    /* an embedding whose two vectors are the table rows of "city" and "fog"
     * reads as those words: "a grim" is "a city fog" */
    {
        char dir[300], path[400];
        sdm_safetensors *st = NULL;
        float *table = NULL, vec[2 * 64];
        int city = id_of(tok, "city</w>"), fog = id_of(tok, "fog</w>");
        snprintf(dir, sizeof dir, "%s/emb", tmpdir);
        mkdir(dir, 0755);
        if (!sdm_safetensors_open(b->token_embedding, &st, &err)) {
            const sdm_st_tensor *t = sdm_safetensors_tensor(st, 0);
            table = malloc(sizeof *table * t->numel);
            if (table && !sdm_safetensors_read_f32(st, t, table, t->numel, &err) && H <= 64) {
                memcpy(vec, table + (size_t)city * H, sizeof *vec * H);
                memcpy(vec + H, table + (size_t)fog * H, sizeof *vec * H);
                snprintf(path, sizeof path, "%s/grim.safetensors", dir);
                write_embedding(path, vec, 2, H);
            }
            free(table);
            sdm_safetensors_free(&st);
        }
        CHECK_INT(sdm_text_encoder_use_embeddings(te, dir, &err), 0);
        CHECK_INT(sdm_text_encoder_embeddings(te)->n, 1);
        {
            float *x = embed_host(te, "a grim", 1, 1, 1, &rows), *y = embed_host(te, "a city fog", 1, 1, 1, &r2);
            sdm_prompt_chunks c;
            CHECK(x && y && max_diff(x, y, n1) == 0);
            CHECK_INT(sdm_text_encoder_chunks(te, "a GRIM, city", 1, &c, &err), 0);
            CHECK(c.vec[2] == 0 && c.vec[3] == 1 && c.vec[4] == -1 && c.ids[2] == 0);
            sdm_prompt_chunks_clear(&c);
            free(x);
            free(y);
        }
        /* a file that is not one tensor of width H is refused, naming it */
        snprintf(path, sizeof path, "%s/wide.safetensors", dir);
        write_embedding(path, vec, 1, H + 1 <= 64 ? H + 1 : 64);
        memset(&err, 0, sizeof err);
        CHECK(sdm_text_encoder_use_embeddings(te, dir, &err) != 0);
        CHECK_CONTAINS(err.msg, "wide.safetensors");
        /* and `check` refuses it first, before any model loads, where the recipe names the folder */
        {
            char recipe[400], text[PATH_MAX + 1500], out[4096], model[PATH_MAX];
            char *argv[] = { "sdmorph", "check", recipe, NULL };
            snprintf(recipe, sizeof recipe, "%s/emb.yaml", tmpdir);
            /* the recipe's model path is read beside it: an absolute one */
            snprintf(text, sizeof text, "model: %s\nsteps: 2\nembeddings: %s\nkeyframes: [a grim city]\n",
                     realpath(b->dir, model) ? model : b->dir, dir);
            write_file(recipe, text);
            CHECK_INT(run(argv, out, sizeof out, NULL), 2);
            CHECK_CONTAINS(out, "emb.yaml:3:13: 'embeddings': ");
            CHECK_CONTAINS(out, "wide.safetensors");
            /* the same file in a model's own embeddings/ folder, which every render of it reads */
            {
                char variant[400], own[500], moved[600];
                snprintf(variant, sizeof variant, "%s/with-emb", tmpdir);
                snprintf(own, sizeof own, "%s/embeddings", variant);
                snprintf(moved, sizeof moved, "%s/wide.safetensors", own);
                CHECK_INT(bundle_variant(model, variant, NULL, NULL, 0), 0);
                mkdir(own, 0755);
                CHECK_INT(rename(path, moved), 0);
                snprintf(text, sizeof text, "model: %s\nsteps: 2\nkeyframes: [a grim city]\n", variant);
                write_file(recipe, text);
                CHECK_INT(run(argv, out, sizeof out, NULL), 2);
                CHECK_CONTAINS(out, "the model's embeddings folder: ");
                CHECK_CONTAINS(out, "with-emb/embeddings/wide.safetensors");
                CHECK_INT(rename(moved, path), 0);
                rmdir(own);
                bundle_variant_remove(variant);
            }
            unlink(recipe);
        }
        unlink(path);
        snprintf(path, sizeof path, "%s/grim.safetensors", dir);
        unlink(path);
        rmdir(dir);
    }
    free(plain);
    free(skip2);
    free(weighted);
    free(brk);
    free(parts[0]);
    free(parts[1]);
    free(padded);
    free(delta);
}

/* The older kind (ids in): the same plain embeddings; clip skip and
 * embeddings refused, naming how to export again. */
static void test_ids_bundle(sdm_engine *e_new)
{
    char dir[512];
    struct stat st;
    sdm_engine *e = NULL;
    sdm_error err = { 0 };
    int64_t rows = 0, r2 = 0;
    float *a, *b;

    snprintf(dir, sizeof dir, "%s/models/analytic-ids", test_build_dir());
    if (stat(dir, &st)) {
        SKIP("no analytic-ids bundle (make build/models/analytic-ids/model.yaml)");
        return;
    }
    CHECK_INT(sdm_engine_open(dir, cpu, &e, &err), 0);
    if (!e) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_INT(sdm_text_encoder_layers(sdm_engine_text(e)), 1);
    a = embed_host(sdm_engine_text(e), "a (city:1.2) BREAK fog", 1, 1, 1, &rows);
    b = embed_host(sdm_engine_text(e_new), "a (city:1.2) BREAK fog", 1, 1, 1, &r2);
    CHECK(rows == r2 && a && b && max_diff(a, b, (size_t)rows * 32) == 0);
    {
        const sdm_text_opts o = { 1, 2, 1 };
        sdm_tensor *t = NULL;
        CHECK(sdm_text_encoder_run(sdm_engine_text(e), "a city", &o, &t, &err) != 0);
        CHECK_CONTAINS(err.msg, "export_sd.py");
    }
    memset(&err, 0, sizeof err);
    CHECK(sdm_text_encoder_use_embeddings(sdm_engine_text(e), tmpdir, &err) != 0);
    CHECK_CONTAINS(err.msg, "takes token ids");
    free(a);
    free(b);
    sdm_engine_free(&e);
}

static json_object *jkey(json_object *o, const char *k)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return v;
}

/* A 150-token prompt morphs into a short weighted one, at another clip
 * skip; the sidecar records each text's chunks and weights. */
static void test_render(void)
{
    char recipe[400], out[400], side[400], text[2048] = "", msg[8192];
    char *yaml = malloc(4096);
    json_object *doc, *texts;

    if (!yaml)
        return;
    for (int i = 0; i < 75; i++)
        strcat(text, "a city ");
    snprintf(recipe, sizeof recipe, "%s/long.yaml", tmpdir);
    snprintf(out, sizeof out, "%s/long.mp4", tmpdir);
    snprintf(side, sizeof side, "%s/long.json", tmpdir);
    snprintf(yaml, 4096,
             "width: 64\nheight: 64\nsteps: 2\nclip_skip: 2\nkeyframes:\n  - prompt: %s\n    frames: 3\n"
             "  - prompt: a city, (fog:1.5)\n    clip_skip: 1\n",
             text);
    write_file(recipe, yaml);
    {
        char *argv[] = { "sdmorph", "render", recipe, "-o", out, "-q", "--device", "cpu", NULL };
        CHECK_INT(run(argv, msg, sizeof msg, NULL), 0);
    }
    doc = json_object_from_file(side);
    texts = doc ? jkey(doc, "texts") : NULL;
    CHECK(texts && json_object_array_length(texts) == 4); /* two prompts, the negative at two clip skips */
    if (texts && json_object_array_length(texts) == 4) {
        json_object *t0 = json_object_array_get_idx(texts, 0), *t2 = json_object_array_get_idx(texts, 2);
        json_object *w = jkey(json_object_array_get_idx(jkey(t2, "chunks"), 0), "weights");
        CHECK_INT(json_object_get_int(jkey(t0, "tokens")), 150);
        CHECK_INT((int)json_object_array_length(jkey(t0, "chunks")), 2);
        CHECK_INT(json_object_get_int(jkey(t0, "clip_skip")), 2);
        CHECK_INT(json_object_get_int(jkey(t2, "clip_skip")), 1);
        CHECK(w && json_object_get_double(json_object_array_get_idx(w, 4)) == 1.5);
        CHECK(w && json_object_get_double(json_object_array_get_idx(w, 3)) == 1.0);
    }
    json_object_put(doc);
    /* check refuses, before any model loads, a clip skip past the layers and a weight that is not a number */
    snprintf(yaml, 4096, "clip_skip: 4\nkeyframes:\n  - a city\n");
    write_file(recipe, yaml);
    {
        char *argv[] = { "sdmorph", "check", recipe, NULL };
        CHECK_INT(run(argv, msg, sizeof msg, NULL), 2);
        CHECK_CONTAINS(msg, "clip_skip 4: the text encoder of");
        CHECK_CONTAINS(msg, "has 3 layers");
    }
    snprintf(yaml, 4096, "keyframes:\n  - a city\n  - prompt: a (city:1.2.3)\n");
    write_file(recipe, yaml);
    {
        char *argv[] = { "sdmorph", "check", recipe, NULL };
        CHECK_INT(run(argv, msg, sizeof msg, NULL), 2);
        CHECK_CONTAINS(msg, "long.yaml:3:5: keyframe 1: 'prompt'");
    }
    snprintf(yaml, 4096, "weighting: none\nkeyframes:\n  - a city\n  - prompt: a (city:1.2.3)\n");
    write_file(recipe, yaml);
    {
        char *argv[] = { "sdmorph", "check", recipe, NULL };
        CHECK_INT(run(argv, msg, sizeof msg, NULL), 0);
    }
    unlink(recipe);
    unlink(out);
    unlink(side);
    free(yaml);
}

/* A model.yaml whose bos id is not its vocabulary's: the tokenizer is
 * refused, saying both, wherever the bundle's tokenizer is read (tokenize,
 * and the engine as a render loads it). */
static void test_bos_mismatch(const char *dir)
{
    char variant[400], out[4096], model[PATH_MAX];
    char *tok_argv[] = { "sdmorph", "tokenize", "--model", variant, "a city", NULL };
    sdm_engine *e = NULL;
    sdm_error err = { 0 };

    snprintf(variant, sizeof variant, "%s/bos", tmpdir);
    CHECK_INT(bundle_variant(realpath(dir, model) ? model : dir, variant, "bos_id: 912", "bos_id: 7", 0), 0);
    CHECK_INT(run(tok_argv, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, "but the model expects bos_id 7 and eos_id 913");
    CHECK(sdm_engine_open(variant, cpu, &e, &err) != 0 && e == NULL);
    CHECK_CONTAINS(err.msg, "but the model expects bos_id 7");
    bundle_variant_remove(variant);
}

int main(void)
{
    char dir[512];
    sdm_engine *e;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdm-text-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    e = analytic_engine(dir, sizeof dir);
    if (e) {
        test_chunks(sdm_engine_tokenizer(e));
        test_chunks_sd2_padding(dir);
        test_encoder(e);
        test_ids_bundle(e);
        sdm_engine_free(&e);
        test_bos_mismatch(dir);
        test_render();
    }
    rmdir(tmpdir);
    return test_report();
}
