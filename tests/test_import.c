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
    /* SDXL's refiner, named where it took over */
    CHECK_INT(sdm_image_params_a1111("a fox\nSteps: 30, Sampler: Euler, Seed: 5, Refiner: sd_xl_refiner_1.0 "
                                     "[7440042bbd], Refiner switch at: 0.8",
                                     &p, &err),
              0);
    CHECK_STR(p.refiner, "sd_xl_refiner_1.0 [7440042bbd], at 0.8 of the steps");
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

static void print_params(const sdm_image_params *p, char *out, size_t len)
{
    FILE *f = fmemopen(out, len - 1, "w");

    out[0] = '\0';
    if (f) {
        sdm_image_params_print(p, "c.png", f);
        fclose(f);
    }
}

static void test_comfyui(void)
{
    sdm_image_params p;
    sdm_error err = { 0 };
    char out[2048];

    CHECK_INT(sdm_image_params_comfyui(COMFY, &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "a \"grim\" tower");
    CHECK_STR(p.negative ? p.negative : "", "blurry");
    CHECK(p.steps == 25 && p.cfg == 8.0 && p.has_seed && p.seed == 7);
    CHECK(p.width == 768 && p.height == 512 && p.clip_skip == 2);
    print_params(&p, out, sizeof out);
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

/* ComfyUI's SDXL graph: CLIPTextEncodeSDXL prompts, text_g and text_l
 * apart in the positive, the size conditioning set. */
static const char COMFY_XL[] =
    "{\"3\": {\"class_type\": \"KSamplerAdvanced\", \"inputs\": {\"noise_seed\": 9, \"steps\": 30, \"cfg\": 5.5, "
    "\"sampler_name\": \"dpmpp_2m_sde_gpu\", \"scheduler\": \"karras\", \"positive\": [\"6\", 0], "
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}},"
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 1024, \"height\": 768, \"batch_size\": "
    "1}},"
    "\"6\": {\"class_type\": \"CLIPTextEncodeSDXL\", \"inputs\": {\"width\": 4096, \"height\": 3072, \"crop_w\": "
    "16, \"crop_h\": 8, \"target_width\": 1024, \"target_height\": 768, \"text_g\": \"a castle at dusk\", "
    "\"text_l\": \"castle, fog\", \"clip\": [\"4\", 1]}},"
    "\"7\": {\"class_type\": \"CLIPTextEncodeSDXL\", \"inputs\": {\"width\": 1024, \"height\": 768, \"crop_w\": 0, "
    "\"crop_h\": 0, \"target_width\": 1024, \"target_height\": 768, \"text_g\": \"\", \"text_l\": \"blurry\", "
    "\"clip\": [\"4\", 1]}}}";

/* SDXL's base and refiner (ComfyUI's example graph, cut down): the base
 * adds noise from step 0 and stops at 20 of 25; the refiner goes on from
 * its latent. */
static const char COMFY_REFINED[] =
    "{\"10\": {\"class_type\": \"KSamplerAdvanced\", \"inputs\": {\"add_noise\": \"enable\", \"noise_seed\": 721, "
    "\"steps\": 25, \"cfg\": 8, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"start_at_step\": 0, "
    "\"end_at_step\": 20, \"return_with_leftover_noise\": \"enable\", \"positive\": [\"6\", 0], \"negative\": [\"7\", "
    "0], \"latent_image\": [\"5\", 0]}},"
    "\"11\": {\"class_type\": \"KSamplerAdvanced\", \"inputs\": {\"add_noise\": \"disable\", \"noise_seed\": 0, "
    "\"steps\": 25, \"cfg\": 8, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"start_at_step\": 20, "
    "\"end_at_step\": 10000, \"return_with_leftover_noise\": \"disable\", \"positive\": [\"15\", 0], "
    "\"negative\": [\"16\", 0], \"latent_image\": [\"10\", 0]}},"
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 1024, \"height\": 1024, \"batch_size\": "
    "1}},"
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"evening sunset scenery\", \"clip\": "
    "[\"4\", 1]}},"
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"text, watermark\", \"clip\": [\"4\", 1]}},"
    "\"15\": {\"class_type\": \"CLIPTextEncodeSDXLRefiner\", \"inputs\": {\"ascore\": 6, \"text\": \"sunset\"}},"
    "\"16\": {\"class_type\": \"CLIPTextEncodeSDXLRefiner\", \"inputs\": {\"ascore\": 2.5, \"text\": \"text\"}}}";

/* Samplers by any name `sdmorph samplers` lists (Karras from the name or
 * the tool's scheduler); SDXL's prompts and size conditioning from
 * CLIPTextEncodeSDXL, into the recipe's keys. */
static void test_samplers_and_sdxl(void)
{
    static const struct {
        const char *sampler, *scheduler, *want;
    } cases[] = {
        { "DPM++ 2M SDE Karras", "", "sampler: dpmpp_2m_sde\nkarras: true\n" },
        { "DPM++ 2M SDE", "Karras", "sampler: dpmpp_2m_sde\nkarras: true\n" },
        { "UniPC", "Automatic", "sampler: unipc\nkeyframes" },
        { "PLMS", "", "sampler: pndm\n" },
        { "Euler a", "Karras", "sampler: euler_a\nkeyframes" }, /* takes no Karras sigmas */
        { "uni_pc", "normal", "sampler: unipc\nkeyframes" },
        { "heun", "karras", "sampler: heun\nkarras: true\n" },
        { "DPM++ 2S a", "", "# sampler \"DPM++ 2S a\" has no equivalent here" },
    };
    sdm_image_params p;
    sdm_error err = { 0 };
    char out[4096];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&p, 0, sizeof p);
        p.tool = "A1111";
        p.cfg = -1;
        snprintf(p.sampler, sizeof p.sampler, "%s", cases[i].sampler);
        snprintf(p.scheduler, sizeof p.scheduler, "%s", cases[i].scheduler);
        print_params(&p, out, sizeof out);
        CHECK_CONTAINS(out, cases[i].want);
    }
    CHECK_INT(sdm_image_params_comfyui(COMFY_XL, &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "a castle at dusk");
    CHECK_STR(p.prompt_l ? p.prompt_l : "", "castle, fog");
    CHECK_STR(p.negative ? p.negative : "", "blurry"); /* text_l alone */
    CHECK(p.negative_l == NULL);
    CHECK(p.has_size && p.original_size[0] == 3072 && p.original_size[1] == 4096);
    CHECK(p.crops_coords_top_left[0] == 8 && p.crops_coords_top_left[1] == 16);
    CHECK(p.target_size[0] == 768 && p.target_size[1] == 1024);
    CHECK(p.seed == 9 && p.steps == 30 && p.cfg == 5.5);
    print_params(&p, out, sizeof out);
    CHECK_CONTAINS(out,
                   "width: 1024\nheight: 768\nsteps: 30\nsampler: dpmpp_2m_sde\nkarras: true\n"
                   "original_size: [3072, 4096]\ncrops_coords_top_left: [8, 16]\ntarget_size: [768, 1024]\n");
    CHECK_CONTAINS(out,
                   "  - prompt: \"a castle at dusk\"\n"
                   "    # ComfyUI's text_l for the prompt differed (sdmorph gives both encoders one text): "
                   "\"castle, fog\"\n    negative: \"blurry\"\n");
    /* the defaults (the frame's size, no crop) leave the keys out */
    p.original_size[0] = p.target_size[0] = 768;
    p.original_size[1] = p.target_size[1] = 1024;
    p.crops_coords_top_left[0] = p.crops_coords_top_left[1] = 0;
    print_params(&p, out, sizeof out);
    CHECK(!strstr(out, "original_size"));
    sdm_image_params_clear(&p);
    /* base and refiner: the base's settings, the refiner named */
    CHECK_INT(sdm_image_params_comfyui(COMFY_REFINED, &p, &err), 0);
    CHECK_STR(p.prompt ? p.prompt : "", "evening sunset scenery");
    CHECK_STR(p.negative ? p.negative : "", "text, watermark");
    CHECK(p.seed == 721 && p.steps == 25 && !p.has_size);
    CHECK_STR(p.refiner, "at step 20 of 25");
    print_params(&p, out, sizeof out);
    CHECK_CONTAINS(out,
                   "# ComfyUI's refiner took over (at step 20 of 25; another model): sdmorph runs every step "
                   "with one\n");
    CHECK_CONTAINS(out, "steps: 25\nsampler: euler\n");
    sdm_image_params_clear(&p);
    /* two samplers, neither going on from the other: refused */
    {
        char *other = strdup(COMFY_REFINED), *at = other ? strstr(other, "\"latent_image\": [\"10\"") : NULL;
        if (at)
            memcpy(at + strlen("\"latent_image\": [\""), "5\" ", 3);
        memset(&err, 0, sizeof err);
        CHECK(at && sdm_image_params_comfyui(other, &p, &err) != 0);
        CHECK_CONTAINS(err.msg, "2 sampler nodes; only a graph with one is read (or SDXL's base and refiner");
        free(other);
    }
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
    /* ComfyUI's SDXL graph: its recipe (size conditioning included) is
     * taken by check for an SDXL model */
    b = png("tEXt", "prompt\0", 7, COMFY_XL, 0);
    write_png(path, &b);
    {
        char *argv[] = { "sdmorph", "import", path, NULL };
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "target_size: [768, 1024]\n");
    }
    write_file(recipe, out);
    {
        char model[400];
        char *argv[] = { "sdmorph", "check", "--model", model, recipe, NULL };
        snprintf(model, sizeof model, "%s/models/analytic-xl", test_build_dir());
        CHECK_INT(run(argv, out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "30 steps, dpmpp_2m_sde");
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
    test_samplers_and_sdxl();
    test_command();
    rmdir(tmpdir);
    return test_report();
}
