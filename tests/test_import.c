/* `sdmorph import`: PNG text chunks (tEXt, zTXt, iTXt, compressed or not;
 * damaged files refused), A1111's parameters read as its own
 * parse_generation_parameters reads them, ComfyUI's simple graphs, and the
 * recipe printed from them, which `sdmorph check` takes. */
#include <zlib.h>

#include "cli_run.h"
#include "image_params.h"
#include "png_text.h"

static char tmpdir[256];

typedef struct {
    uint8_t *d;
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    b->d = realloc(b->d, b->n + n);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void put32(buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    put(b, x, 4);
}

static void chunk(buf *b, const char *type, const void *data, size_t n)
{
    uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)type, 4);
    put32(b, (uint32_t)n);
    put(b, type, 4);
    put(b, data, n);
    put32(b, (uint32_t)crc32(crc, (const Bytef *)data, (uInt)n));
}

/* A 1x1 PNG with one text chunk made of head (n bytes) and text, compressed where asked. */
static buf png(const char *type, const void *head, size_t hn, const char *text, int compress)
{
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    static const uint8_t ihdr[13] = { 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0 };
    uint8_t z[4096];
    uLongf zn = sizeof z;
    buf b = { 0 }, body = { 0 };

    put(&b, sig, 8);
    chunk(&b, "IHDR", ihdr, 13);
    put(&body, head, hn);
    if (compress) {
        compress2(z, &zn, (const Bytef *)text, strlen(text), 9);
        put(&body, z, zn);
    } else {
        put(&body, text, strlen(text));
    }
    chunk(&b, type, body.d, body.n);
    chunk(&b, "IEND", "", 0);
    free(body.d);
    return b;
}

static const char A1111[] =
    "a castle on a hill, (fog:1.3)\n  more words  \nNegative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3405691582, "
    "Size: 512x768, Model hash: abc, Lora hashes: \"grim: 1a2b, fog: 3c4d\", Clip skip: 2";

/* A PNG whose one text chunk (type, its head, text compressed or not)
 * reads back as text. */
static void check_text(const char *type, const void *head, size_t head_len, const char *text, int compress)
{
    buf b = png(type, head, head_len, text, compress);
    sdm_error err = { 0 };
    char *got = NULL;

    CHECK_INT(sdm_png_text("t.png", b.d, b.n, "parameters", &got, &err), 0);
    CHECK_STR(got ? got : "", text);
    free(got);
    free(b.d);
}

static void test_chunks(void)
{
    char *text = NULL;
    sdm_error err = { 0 };
    buf b;

    /* tEXt: Latin-1, read as UTF-8 */
    b = png("tEXt", "parameters\0", 11, "caf\xe9", 0);
    CHECK_INT(sdm_png_text("t.png", b.d, b.n, "parameters", &text, &err), 0);
    CHECK_STR(text ? text : "", "caf\xc3\xa9");
    free(text);
    /* another key: none, not an error */
    CHECK_INT(sdm_png_text("t.png", b.d, b.n, "prompt", &text, &err), 0);
    CHECK(text == NULL);
    /* a bad CRC and a chunk past the end are refused */
    b.d[b.n - 12 - 1] ^= 1;
    CHECK(sdm_png_text("t.png", b.d, b.n, "parameters", &text, &err) != 0);
    CHECK_CONTAINS(err.msg, "bad CRC");
    memset(&err, 0, sizeof err);
    CHECK(sdm_png_text("t.png", b.d, 40, "parameters", &text, &err) != 0);
    CHECK_CONTAINS(err.msg, "runs past the end");
    memset(&err, 0, sizeof err);
    CHECK(sdm_png_text("t.png", (const uint8_t *)"GIF89a....", 10, "parameters", &text, &err) != 0);
    CHECK_CONTAINS(err.msg, "not a PNG");
    memset(&err, 0, sizeof err);
    free(b.d);
    /* zTXt */
    check_text("zTXt", "parameters\0\0", 12, A1111, 1);
    /* iTXt, plain and compressed: UTF-8 as it is */
    check_text("iTXt", "parameters\0\0\0en\0\0", 17, "ch\xc3\xa2teau \xe2\x9c\x93", 0);
    check_text("iTXt", "parameters\0\1\0\0\0", 15, A1111, 1);
    /* compressed text that is not zlib */
    b = png("zTXt", "parameters\0\0", 12, "not zlib at all", 0);
    CHECK(sdm_png_text("bad.png", b.d, b.n, "parameters", &text, &err) != 0);
    CHECK_CONTAINS(err.msg, "not valid zlib");
    free(b.d);
}

static void test_a1111(void)
{
    sdm_image_params p;
    sdm_error err = { 0 };

    CHECK_INT(sdm_image_params_a1111(A1111, &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "a castle on a hill, (fog:1.3)\nmore words");
    CHECK_STR(p.negative ? p.negative : "", "blurry, lowres");
    CHECK_INT(p.steps, 28);
    CHECK_STR(p.sampler, "DPM++ 2M");
    CHECK_STR(p.scheduler, "Karras");
    CHECK(p.cfg == 6.5);
    CHECK(p.has_seed && p.seed == 3405691582u);
    CHECK(p.width == 512 && p.height == 768);
    CHECK_INT(p.clip_skip, 2);
    sdm_image_params_clear(&p);
    /* a last line with fewer than 3 settings is prompt text; no negative */
    CHECK_INT(sdm_image_params_a1111("a city\nSteps: 20, at night", &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "a city\nSteps: 20, at night");
    CHECK(p.negative == NULL && p.steps == 0 && !p.has_seed && p.cfg < 0);
    sdm_image_params_clear(&p);
    CHECK_INT(sdm_image_params_a1111("", &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "x", "");
    sdm_image_params_clear(&p);
}

static const char COMFY[] =
    "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 7, \"steps\": 25, \"cfg\": 8.0, "
    "\"sampler_name\": \"euler_ancestral\", \"scheduler\": \"normal\", \"positive\": [\"6\", 0], "
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}},"
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 768, \"height\": 512, \"batch_size\": 1}},"
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a \\\"grim\\\" tower\", \"clip\": [\"4\", "
    "1]}},"
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", \"clip\": [\"4\", 1]}},"
    "\"8\": {\"class_type\": \"CLIPSetLastLayer\", \"inputs\": {\"stop_at_clip_layer\": -2}}}";

static void test_comfyui(void)
{
    sdm_image_params p;
    sdm_error err = { 0 };
    char out[2048] = "";
    FILE *f;

    CHECK_INT(sdm_image_params_comfyui(COMFY, &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "a \"grim\" tower");
    CHECK_STR(p.negative ? p.negative : "", "blurry");
    CHECK(p.steps == 25 && p.cfg == 8.0 && p.has_seed && p.seed == 7);
    CHECK(p.width == 768 && p.height == 512 && p.clip_skip == 2);
    f = fmemopen(out, sizeof out - 1, "w");
    if (f) {
        sdm_image_params_print(&p, "c.png", f);
        fclose(f);
    }
    CHECK_CONTAINS(out, "sampler: euler_a\n");
    CHECK_CONTAINS(out, "  - prompt: \"a \\\"grim\\\" tower\"\n");
    CHECK_CONTAINS(out, "    clip_skip: 2\n");
    sdm_image_params_clear(&p);
    /* two samplers: not simple */
    CHECK(sdm_image_params_comfyui("{\"1\": {\"class_type\": \"KSampler\"}, \"2\": {\"class_type\": \"KSampler\"}}", &p,
                                   &err) != 0);
    CHECK_CONTAINS(err.msg, "2 sampler nodes");
    memset(&err, 0, sizeof err);
    CHECK(sdm_image_params_comfyui("[1, 2", &p, &err) != 0);
    CHECK_CONTAINS(err.msg, "not a JSON object");
}

static void write_png(const char *path, buf *b)
{
    FILE *f = fopen(path, "wb");

    if (f) {
        fwrite(b->d, 1, b->n, f);
        fclose(f);
    }
    free(b->d);
}

/* The command: a recipe out that check takes; bad files exit 2. */
static void test_command(void)
{
    char path[300], recipe[300], out[8192];
    buf b = png("iTXt", "parameters\0\1\0\0\0", 15, A1111, 1);

    snprintf(path, sizeof path, "%s/a.png", tmpdir);
    snprintf(recipe, sizeof recipe, "%s/a.yaml", tmpdir);
    write_png(path, &b);
    {
        char *argv[] = { "sdmorph", "import", path, NULL };
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "width: 512\nheight: 768\nsteps: 28\nsampler: dpmpp_2m\nkarras: true\n");
        CHECK_CONTAINS(out, "negative: \"blurry, lowres\"");
        CHECK_CONTAINS(out, "guidance: 6.5");
    }
    write_file(recipe, out);
    {
        char *argv[] = { "sdmorph", "check", recipe, NULL };
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    }
    {
        char *argv[] = { "sdmorph", "import", recipe, NULL };
        CHECK_INT(run(argv, out, sizeof out, NULL), 2);
        CHECK_CONTAINS(out, "not a PNG");
    }
    b = png("tEXt", "Software\0", 9, "something", 0);
    write_png(path, &b);
    {
        char *argv[] = { "sdmorph", "import", path, NULL };
        CHECK_INT(run(argv, out, sizeof out, NULL), 2);
        CHECK_CONTAINS(out, "no settings in it");
    }
    unlink(path);
    unlink(recipe);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdm-import-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    test_chunks();
    test_a1111();
    test_comfyui();
    test_command();
    rmdir(tmpdir);
    return test_report();
}
