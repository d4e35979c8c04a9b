/* The recipe loader: defaults, inheritance of recipe-level keys, walks,
 * and a malformed-recipe suite where each case must fail with exit code 2
 * and a message at the exact line:col. Ends with a mutation run: no input
 * may crash the loader or fail without a position. */
#include <stdint.h>

#include "output_name.h"
#include "preflight.h"
#include "recipe.h"
#include "spacing.h"
#include "test.h"

static sdm_recipe *load(const char *text, sdm_error *err)
{
    sdm_recipe *r = NULL;
    memset(err, 0, sizeof *err);
    if (sdm_recipe_load_string("t.yaml", text, strlen(text), &r, err))
        return NULL;
    return r;
}

static void test_enums(void)
{
    sdm_interp i;
    sdm_ease e;
    sdm_loop l;
    sdm_sampler s;

    CHECK_INT(sdm_interp_from_str("slerp", &i), 0);
    CHECK_INT(i, SDM_INTERP_SLERP);
    CHECK_INT(sdm_ease_from_str("cosine", &e), 0);
    CHECK_INT(e, SDM_EASE_COSINE);
    CHECK_INT(sdm_loop_from_str("pingpong", &l), 0);
    CHECK_INT(l, SDM_LOOP_PINGPONG);
    CHECK_INT(sdm_sampler_from_str("dpmpp_2m", &s), 0);
    CHECK_INT(s, SDM_SAMPLER_DPMPP_2M);
    CHECK_INT(sdm_sampler_from_str("euler_b", &s), -1);
    CHECK_INT(sdm_loop_from_str(NULL, &l), -1);
    for (int k = 0; k < SDM_SAMPLER_COUNT; k++) {
        CHECK_INT(sdm_sampler_from_str(sdm_sampler_name((sdm_sampler)k), &s), 0);
        CHECK_INT(s, k);
    }
    CHECK_STR(sdm_ease_name(SDM_EASE_SMOOTHSTEP), "smoothstep");
    CHECK_STR(sdm_loop_name(SDM_LOOP_COUNT), "?");
}

/* The recipe takes every name the sink writes, by the same table. */
static void test_output_names(void)
{
    static const char *const names[] = { "out/a.mp4", "out/a.GIF", "out/a.rgb" };
    char text[256];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        sdm_error err;
        sdm_recipe *r;

        snprintf(text, sizeof text, "keyframes: [a]\noutput: %s\ncontact_sheet: s.PNG\n", names[i]);
        r = load(text, &err);
        CHECK(r != NULL);
        CHECK_INT(sdm_output_kind_of(names[i], 0) >= 0, 1);
        if (r) {
            CHECK_STR(r->outputs[0], names[i]);
            CHECK_STR(r->contact_sheet, "s.PNG");
        }
        sdm_recipe_free(&r);
    }
}

static void test_defaults(void)
{
    sdm_error err;
    sdm_recipe *r = load("keyframes: [a city, a forest]\n", &err);

    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(r->steps, 30);
    CHECK_NEAR(r->guidance, 7.5, 0);
    CHECK_STR(r->negative, "");
    CHECK(r->seed == 0);
    CHECK_NEAR(r->fps, 12, 0);
    CHECK_INT(r->sampler, SDM_SAMPLER_AUTO);
    CHECK_NEAR(r->eta, 0, 0);
    CHECK(!r->karras);
    CHECK_INT(r->batch, 0);
    CHECK_INT(r->width, 0);
    CHECK_INT(r->height, 0);
    CHECK(r->model == NULL);
    CHECK(r->contact_sheet == NULL);
    CHECK_INT(r->loop, SDM_LOOP_NONE);
    CHECK_INT(r->gif_palette, SDM_GIF_PALETTE_STREAM);
    CHECK_INT(r->gif_dither, SDM_GIF_DITHER_BAYER);
    CHECK_INT(r->n_outputs, 1);
    CHECK_STR(r->outputs[0], "out/t.mp4");
    CHECK(r->walk == NULL);
    CHECK_INT(r->n_keyframes, 2);
    CHECK_STR(r->keyframes[1].prompt, "a forest");
    CHECK(r->keyframes[1].negative == NULL);
    CHECK_INT(r->keyframes[0].frames, 16);
    CHECK_INT(r->keyframes[0].hold, 0);
    CHECK_INT(r->keyframes[0].interp, SDM_INTERP_LERP);
    CHECK_INT(r->keyframes[0].ease, SDM_EASE_LINEAR);
    CHECK_NEAR(r->keyframes[0].guidance, 7.5, 0);
    CHECK_INT(r->keyframes[0].mark.line, 1);
    CHECK_INT(r->keyframes[0].mark.col, 13);
    CHECK_INT(r->keyframes[1].mark.col, 21);
    CHECK_INT(sdm_recipe_shown_frames(r), 17);
    sdm_recipe_free(&r);
    CHECK(r == NULL);
    sdm_recipe_free(&r); /* NULL-safe */
    sdm_recipe_free(NULL);
}

/* Recipe-level keys are the keyframes' defaults, wherever they appear in the file. */
static void test_inheritance(void)
{
    static const char text[] =
        "keyframes:\n"
        "  - prompt: a\n"
        "    seed: 7\n"
        "    frames: 4\n"
        "  - b\n"
        "  - prompt: c\n"
        "    negative: blurry\n"
        "    guidance: 0\n"
        "    interp: lerp\n"
        "    hold: 2\n"
        "seed: 18446744073709551615\n"
        "guidance: 9\n"
        "frames: 8\n"
        "interp: slerp\n"
        "ease: smoothstep\n"
        "hold: 1\n"
        "negative: ugly\n"
        "loop: cycle\n"
        "sampler: dpmpp_2m\n"
        "eta: 0\n"
        "karras: yes\n"
        "batch: 4\n"
        "width: 512\n"
        "height: 768\n"
        "steps: 50\n"
        "fps: 23.976\n"
        "model: models/sd15\n"
        "output: [out/a.mp4, out/a.GIF]\n"
        "contact_sheet: out/a.png\n";
    sdm_error err;
    sdm_recipe *r = load(text, &err);

    CHECK(r != NULL);
    if (!r) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_INT(r->n_keyframes, 3);
    CHECK(r->keyframes[0].seed == 7);
    CHECK(r->keyframes[1].seed == UINT64_MAX);
    CHECK_INT(r->keyframes[0].frames, 4);
    CHECK_INT(r->keyframes[1].frames, 8);
    CHECK_INT(r->keyframes[0].interp, SDM_INTERP_SLERP);
    CHECK_INT(r->keyframes[2].interp, SDM_INTERP_LERP);
    CHECK_INT(r->keyframes[1].ease, SDM_EASE_SMOOTHSTEP);
    CHECK_INT(r->keyframes[0].hold, 1);
    CHECK_INT(r->keyframes[2].hold, 2);
    CHECK_NEAR(r->keyframes[0].guidance, 9, 0);
    CHECK_NEAR(r->keyframes[2].guidance, 0, 0);
    CHECK(r->keyframes[0].negative == NULL);
    CHECK_STR(r->keyframes[2].negative, "blurry");
    CHECK_STR(r->negative, "ugly");
    CHECK_INT(r->loop, SDM_LOOP_CYCLE);
    CHECK_INT(r->sampler, SDM_SAMPLER_DPMPP_2M);
    CHECK_NEAR(r->eta, 0, 0);
    CHECK(r->karras);
    CHECK_INT(r->batch, 4);
    CHECK_INT(r->width, 512);
    CHECK_INT(r->height, 768);
    CHECK_INT(r->steps, 50);
    CHECK_NEAR(r->fps, 23.976, 1e-12);
    CHECK_STR(r->model, "models/sd15");
    CHECK_INT(r->n_outputs, 2);
    CHECK_STR(r->outputs[1], "out/a.GIF");
    CHECK_STR(r->contact_sheet, "out/a.png");
    CHECK_INT(r->keyframes[2].mark.line, 6);
    CHECK_INT(r->keyframes[2].mark.col, 5);
    /* cycle: (1+1)+3 + (1+1)+7 + (1+2)+7 */
    CHECK_INT(sdm_recipe_shown_frames(r), 24);
    sdm_recipe_free(&r);
}

/* The GIF's settings are read and handed to the sink as written. */
static void test_gif_keys(void)
{
    sdm_preflight pf = { .width = 64, .height = 64 };
    sdm_sink_params kp;
    sdm_error err;
    sdm_recipe *r = load("gif_palette: frame\ngif_dither: sierra2_4a\nkeyframes: [a]\noutput: x.gif\n", &err);

    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(r->gif_palette, SDM_GIF_PALETTE_FRAME);
    CHECK_INT(r->gif_dither, SDM_GIF_DITHER_SIERRA2_4A);
    kp = sdm_preflight_sink_params(r, &pf);
    CHECK_INT(kp.gif_palette, SDM_GIF_PALETTE_FRAME);
    CHECK_INT(kp.gif_dither, SDM_GIF_DITHER_SIERRA2_4A);
    sdm_recipe_free(&r);
    r = load("gif_palette: stream\ngif_dither: none\nkeyframes: [a]\n", &err);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(r->gif_palette, SDM_GIF_PALETTE_STREAM);
    CHECK_INT(r->gif_dither, SDM_GIF_DITHER_NONE);
    sdm_recipe_free(&r);
}

static void test_walk(void)
{
    sdm_error err;
    sdm_recipe *r = load(
        "seed: 42\nguidance: 6\nframes: 30\nloop: pingpong\n"
        "walk:\n  prompt: a technopriest\n  sigma: 0.05\n  closed: true\n",
        &err);

    CHECK(r != NULL);
    if (!r) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(r->walk != NULL);
    CHECK_STR(r->walk->prompt, "a technopriest");
    CHECK(r->walk->seed == 42);
    CHECK(r->walk->noise_seed == 42);
    CHECK_NEAR(r->walk->guidance, 6, 0);
    CHECK_INT(r->walk->frames, 30);
    CHECK_NEAR(r->walk->sigma, 0.05, 0);
    CHECK_NEAR(r->walk->anchor, 0.5, 0);
    CHECK(r->walk->closed);
    CHECK_INT(r->walk->mark.line, 6);
    CHECK_INT(r->walk->mark.col, 3);
    /* keyframe 0 stands for the walk's prompt */
    CHECK_INT(r->n_keyframes, 1);
    CHECK_STR(r->keyframes[0].prompt, "a technopriest");
    CHECK(r->keyframes[0].seed == 42);
    CHECK_NEAR(r->keyframes[0].guidance, 6, 0);
    CHECK_INT(sdm_recipe_shown_frames(r), 58);
    sdm_recipe_free(&r);

    r = load("walk: {prompt: x, seed: 1, noise_seed: 99, frames: 5, anchor: 0, sigma: 0}\n", &err);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK(r->walk->seed == 1);
    CHECK(r->walk->noise_seed == 99);
    CHECK_NEAR(r->walk->sigma, 0, 0);
    CHECK_NEAR(r->walk->anchor, 0, 0);
    CHECK(!r->walk->closed);
    CHECK_INT(sdm_recipe_shown_frames(r), 5);
    sdm_recipe_free(&r);
}

static void test_values(void)
{
    sdm_error err;
    sdm_recipe *r;

    /* Quoted numbers and anchors are fine; an empty quoted prompt is a prompt. */
    r = load("steps: \"25\"\nx_base: &p a city\nkeyframes: [*p, \"\"]\n", &err);
    CHECK(r == NULL); /* x_base is not a key */
    CHECK_CONTAINS(err.msg, "t.yaml:2:1: unknown key 'x_base'");
    r = load("steps: \"25\"\nkeyframes: [&p a city, *p, \"\"]\nguidance: 0\n", &err);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->steps, 25);
        CHECK_STR(r->keyframes[1].prompt, "a city");
        CHECK_STR(r->keyframes[2].prompt, "");
        CHECK_NEAR(r->guidance, 0, 0);
        sdm_recipe_free(&r);
    }
    /* UTF-8 prompts pass through byte for byte. */
    r = load("keyframes: [\"caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8c\xb2\"]\noutput: b/c.d/x.gif\n", &err);
    CHECK(r != NULL);
    if (r) {
        CHECK_STR(r->keyframes[0].prompt, "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8c\xb2");
        CHECK_STR(r->outputs[0], "b/c.d/x.gif");
        sdm_recipe_free(&r);
    }
    /* Default output from the recipe's base name. */
    r = NULL;
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_recipe_load_string("recipes/city-forest.yaml", "keyframes: [a]", 14, &r, &err), 0);
    if (r) {
        CHECK_STR(r->outputs[0], "out/city-forest.mp4");
        CHECK_STR(r->path, "recipes/city-forest.yaml");
        sdm_recipe_free(&r);
    }
    /* A missing file is a usage error naming it. */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_recipe_load("/nonexistent/x.yaml", &r, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "/nonexistent/x.yaml");
    CHECK(r == NULL);
}

/* Every case: text, the line:col the message must start with, and a part of it. */
typedef struct {
    const char *text;
    const char *where;
    const char *says;
} bad_case;

static const bad_case bad[] = {
    /* bad YAML */
    { "keyframes: [a, b\n", "t.yaml:2:1:", "invalid YAML" },
    { "keyframes:\n  - a\n - b\n", "t.yaml:3:2:", "invalid YAML" },
    { "keyframes: {a: 1\n", "t.yaml:2:1:", "invalid YAML" },
    { "keyframes:\n\t- a\n", "t.yaml:2:1:", "invalid YAML" },
    { "keyframes: [*nope]\n", "t.yaml:1:13:", "undefined alias" },
    { "keyframes: [a]\n---\nkeyframes: [b]\n", "t.yaml:2:1:", "one recipe per file" },
    { "keyframes: \"abc\n", "t.yaml:2:1:", "invalid YAML" },
    /* empty and wrong top level */
    { "", "t.yaml:1:1:", "the recipe is empty" },
    { "# only a comment\n", "t.yaml:1:1:", "the recipe is empty" },
    { "- a\n- b\n", "t.yaml:1:1:", "at the top level, found a list" },
    { "just words\n", "t.yaml:1:1:", "found a single value" },
    { "steps: 3\n", "t.yaml:1:1:", "neither 'keyframes'" },
    /* unknown and duplicate keys */
    { "keyframes:\n  - prompt: a\n    guidence: 3\n",
      "t.yaml:3:5:", "unknown key 'guidence' in keyframe; did you mean 'guidance'?" },
    { "stepz: 3\nkeyframes: [a]\n", "t.yaml:1:1:", "unknown key 'stepz' in recipe; did you mean 'steps'?" },
    { "keyframes: [a]\ncolour: red\n", "t.yaml:2:1:", "unknown key 'colour' in recipe; expected one of: model," },
    { "walk:\n  prompt: a\n  sigm: 0.1\n", "t.yaml:3:3:", "did you mean 'sigma'?" },
    { "keyframes:\n  - prompt: a\n    anchor: 0.1\n", "t.yaml:3:5:", "'anchor' belongs in walk" },
    { "keyframes:\n  - prompt: a\n    seed: 1\n    seed: 2\n",
      "t.yaml:4:5:", "duplicate key 'seed' in keyframe (first given at 3:5)" },
    { "keyframes: [a]\n[x]: 1\n", "t.yaml:2:1:", "expected a key name in recipe, found a list" },
    /* wrong types */
    { "steps: thirty\nkeyframes: [a]\n", "t.yaml:1:8:", "'steps': expected an integer in 1..1000, not 'thirty'" },
    { "steps: 2.5\nkeyframes: [a]\n", "t.yaml:1:8:", "expected an integer" },
    { "guidance: [7]\nkeyframes: [a]\n", "t.yaml:1:11:", "'guidance': expected a number in 0..100, found a list" },
    { "keyframes:\n  - prompt: {text: a}\n", "t.yaml:2:13:", "'prompt': expected a string, found a mapping" },
    { "keyframes:\n  - prompt:\n", "t.yaml:2:12:", "'prompt': expected a string, found nothing" },
    { "keyframes: a city\n", "t.yaml:1:12:", "'keyframes': expected a list of keyframes, found a single value" },
    { "keyframes:\n  - [a, b]\n", "t.yaml:2:5:", "keyframe 0: expected a prompt or a mapping" },
    { "keyframes:\n  - a\n  -\n",
      "t.yaml:3:4:", "keyframe 1: expected a prompt or a mapping with 'prompt', found nothing" },
    { "keyframes: [a]\nkarras: maybe\n", "t.yaml:2:9:", "'karras': expected true or false, not 'maybe'" },
    { "keyframes: [a]\nwalk: [a]\n", "t.yaml:2:7:", "'walk' and 'keyframes' given together" },
    { "walk: a technopriest\n", "t.yaml:1:7:", "expected the walk's keys (a mapping), found a single value" },
    { "keyframes: [a]\noutput: {a: b}\n", "t.yaml:2:9:", "expected a file name or a list of file names" },
    { "keyframes: [a]\noutput: out/a.avi\n", "t.yaml:2:9:", "unknown extension '.avi', use .mp4" },
    { "keyframes: [a]\noutput: [out/a.mp4, out/b.mov]\n", "t.yaml:2:21:", "unknown extension '.mov'" },
    { "keyframes: [a]\ncontact_sheet: sheet.jpg\n", "t.yaml:2:16:", "use .png" },
    { "keyframes: [a]\nsampler: euler_b\n", "t.yaml:2:10:",
      "expected a sampler (auto, ddim, euler, euler_a, "
      "dpmpp_2m, dpmpp_2m_sde, pndm, lms, heun, unipc or lcm; `sdmorph samplers` lists them and their aliases), "
      "not 'euler_b'" },
    { "keyframes: [a]\ntimestep_spacing: even\n",
      "t.yaml:2:19:", "expected leading, trailing or linspace, not 'even'" },
    { "keyframes:\n  - prompt: a\n    ease: bounce\n", "t.yaml:3:11:", "expected linear, smoothstep or cosine" },
    { "keyframes: [\"a\\0b\"]\n", "t.yaml:1:13:", "contains a NUL character" },
    /* out of range, negative counts, huge numbers */
    { "keyframes:\n  - prompt: a\n    frames: -3\n",
      "t.yaml:3:13:", "'frames': -3 is out of range; expected an integer in 1..100000" },
    { "keyframes:\n  - prompt: a\n    frames: 0\n", "t.yaml:3:13:", "out of range" },
    { "keyframes:\n  - prompt: a\n    hold: -1\n", "t.yaml:3:11:", "'hold': -1 is out of range" },
    { "steps: 0\nkeyframes: [a]\n", "t.yaml:1:8:", "out of range; expected an integer in 1..1000" },
    { "steps: 99999999999999999999999999\nkeyframes: [a]\n", "t.yaml:1:8:", "out of range" },
    { "seed: -1\nkeyframes: [a]\n",
      "t.yaml:1:7:", "'seed': -1 is out of range; expected an integer in 0..18446744073709551615" },
    { "seed: 18446744073709551616\nkeyframes: [a]\n", "t.yaml:1:7:", "out of range" },
    { "seed: 0x10\nkeyframes: [a]\n", "t.yaml:1:7:", "expected an integer in 0..18446744073709551615, not '0x10'" },
    { "guidance: 1e999\nkeyframes: [a]\n", "t.yaml:1:11:", "out of range" },
    { "guidance: .inf\nkeyframes: [a]\n", "t.yaml:1:11:", "not '.inf'" },
    { "guidance: nan\nkeyframes: [a]\n", "t.yaml:1:11:", "not 'nan'" },
    { "guidance: 100.5\nkeyframes: [a]\n", "t.yaml:1:11:", "out of range; expected a number in 0..100" },
    { "fps: 0\nkeyframes: [a]\n", "t.yaml:1:6:", "expected a number in 0.001..240" },
    { "fps: 0.0009\nkeyframes: [a]\n", "t.yaml:1:6:", "'fps': 0.0009 is out of range" },
    /* sampler options the sampler does not take: refused here, not after the model loads */
    { "sampler: ddim\nkarras: true\nkeyframes: [a]\n", "t.yaml:2:1:",
      "Karras sigmas apply to the euler, dpmpp_2m, "
      "dpmpp_2m_sde, lms, heun and unipc samplers, not ddim" },
    { "sampler: euler_a\nkarras: true\nkeyframes: [a]\n", "t.yaml:2:1:", "not euler_a (as in diffusers)" },
    { "sampler: euler\neta: 0.5\nkeyframes: [a]\n", "t.yaml:2:1:",
      "'eta': applies to the ddim sampler only, "
      "not euler" },
    { "fps: 241\nkeyframes: [a]\n", "t.yaml:1:6:", "out of range" },
    { "eta: 1.5\nkeyframes: [a]\n", "t.yaml:1:6:", "out of range" },
    { "width: 100\nkeyframes: [a]\n", "t.yaml:1:8:", "not a multiple of 8" },
    { "height: 8192\nkeyframes: [a]\n", "t.yaml:1:9:", "out of range; expected an integer in 64..4096" },
    { "walk:\n  prompt: a\n  anchor: 1.01\n", "t.yaml:3:11:", "'anchor': 1.01 is out of range" },
    { "walk:\n  prompt: a\n  sigma: -0.1\n", "t.yaml:3:10:", "out of range" },
    { "walk:\n  sigma: 0.1\n", "t.yaml:2:3:", "missing key 'prompt' in walk" },
    { "keyframes:\n  - seed: 1\n", "t.yaml:2:5:", "missing key 'prompt' in keyframe" },
    /* empty keyframes, loop rules, total size */
    { "keyframes: []\n", "t.yaml:1:12:", "the list is empty; expected at least one keyframe" },
    { "keyframes:\n", "t.yaml:1:11:", "expected a list of keyframes, found nothing" },
    { "loop: cycle\nkeyframes: [a]\n", "t.yaml:1:7:", "cycle needs at least 2 keyframes" },
    { "loop: backwards\nkeyframes: [a]\n", "t.yaml:1:7:", "expected none, pingpong or cycle" },
    { "keyframes: [a]\ngif_palette: global\n",
      "t.yaml:2:14:", "'gif_palette': expected stream or frame, not 'global'" },
    { "keyframes: [a]\ngif_dither: [bayer]\n",
      "t.yaml:2:13:", "'gif_dither': expected bayer, sierra2_4a, floyd_steinberg or none" },
    { "walk: {prompt: a}\nloop: cycle\n", "t.yaml:2:7:", "set 'closed: true'" },
    { "frames: 100000\nloop: pingpong\nkeyframes: [a, b, c, d, e, f, g]\n",
      "t.yaml:3:12:", "the recipe shows 1200000 frames; expected at most 1000000" },
    /* bytes that are not UTF-8 text */
    { "keyframes: [\"caf\xe9\"]\n", "t.yaml:1:17:", "not valid UTF-8" },
    { "keyframes:\n  - prompt: \"ok\"\n  - prompt: \"\xff\xfe\"\n", "t.yaml:3:14:", "not valid UTF-8" },
    { "keyframes: [\"ab\xe6\x9d\"]\n", "t.yaml:1:16:", "invalid trailing UTF-8 octet" },
    { "keyframes: [\"\xc0\xaf\"]\n", "t.yaml:1:14:", "not valid UTF-8" },
    { "keyframes: [\"a\x01\"]\n", "t.yaml:1:15:", "not valid UTF-8 text (control characters are not allowed" },
    /* prompts: A1111's syntax, clip skip, weighting */
    { "keyframes:\n  - a\n  - prompt: b (c:1.2.3)\n", "t.yaml:3:5:", "keyframe 1: 'prompt': " },
    { "negative: \"(x:1.2.3)\"\nkeyframes: [a]\n", "t.yaml:1:1:", "'negative': " },
    { "walk:\n  prompt: \"(a:..)\"\n", "t.yaml:2:3:", "'prompt': " },
    { "clip_skip: 0\nkeyframes: [a]\n", "t.yaml:1:12:", "'clip_skip'" },
    { "keyframes:\n  - prompt: a\n    clip_skip: 49\n", "t.yaml:3:16:", "'clip_skip'" },
    { "weighting: a1112\nkeyframes: [a]\n", "t.yaml:1:12:", "expected a1111 or none" },
    { "embeddings:\nkeyframes: [a]\n", "t.yaml:1:12:", "'embeddings'" },
    /* SDXL's size conditioning: [height, width] */
    { "original_size: 1024\nkeyframes: [a]\n", "t.yaml:1:16:", "'original_size': expected [height, width]" },
    { "target_size: [1024]\nkeyframes: [a]\n", "t.yaml:1:14:", "'target_size': expected [height, width]" },
    { "original_size: [0, 512]\nkeyframes: [a]\n", "t.yaml:1:17:", "'original_size': 0 is out of range" },
    { "crops_coords_top_left: [8, -1]\nkeyframes: [a]\n", "t.yaml:1:28:", "'crops_coords_top_left'" },
    { "original_size: [512, x]\nkeyframes: [a]\n", "t.yaml:1:22:", "expected an integer" },
};

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sdm_error err;
        sdm_recipe *r = load(bad[i].text, &err);
        CHECK(r == NULL);
        sdm_recipe_free(&r);
        CHECK_INT(err.code, SDM_EXIT_USAGE);
        if (strncmp(err.msg, bad[i].where, strlen(bad[i].where))) {
            test_failed++;
            fprintf(stderr, "%s:%d: case %zu: message \"%s\" does not start with \"%s\"\n", __FILE__, __LINE__, i,
                    err.msg, bad[i].where);
        } else {
            test_passed++;
        }
        CHECK_CONTAINS(err.msg, bad[i].says);
    }
    printf("malformed recipes: %zu cases\n", sizeof bad / sizeof bad[0]);
}

/* Deep nesting, in flow and block style, and a document near the size limit:
 * bounded before the document is built, never a stack overflow. */
static void test_deep_and_huge(void)
{
    size_t n = 1000000, len = 0;
    char *text = malloc(n * 3 + 64);
    sdm_error err;
    sdm_recipe *r;

    if (!text)
        return;
    len = (size_t)sprintf(text, "keyframes: ");
    memset(text + len, '[', n);
    len += n;
    text[len] = 0;
    r = load(text, &err);
    /* the top mapping is level 1: the 64th '[' (column 12 + 63) is level 65 */
    CHECK(r == NULL);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "t.yaml:1:75: nested more than 64 levels deep");

    len = 0;
    for (int d = 0; d < 200; d++)
        len += (size_t)sprintf(text + len, "%*sk%d:\n", 2 * d, "", d);
    r = load(text, &err);
    CHECK(r == NULL);
    CHECK_CONTAINS(err.msg, "t.yaml:65:129: nested more than 64 levels deep");

    /* Just over the size limit: refused by size, with the name. */
    memset(text, '#', n * 3);
    text[n * 3] = 0;
    memcpy(text, "keyframes: [a]\n", 15);
    memset(&err, 0, sizeof err);
    r = NULL;
    CHECK_INT(sdm_recipe_load_string("t.yaml", text, 5u << 20, &r, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    CHECK_CONTAINS(err.msg, "t.yaml: the recipe is 5242880 bytes; expected at most");

    /* Many keyframes is fine (10000 prompts). */
    len = (size_t)sprintf(text, "frames: 2\nkeyframes:\n");
    for (int i = 0; i < 10000; i++)
        len += (size_t)sprintf(text + len, "  - prompt %d\n", i);
    r = load(text, &err);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->n_keyframes, 10000);
        CHECK_STR(r->keyframes[9999].prompt, "prompt 9999");
        CHECK_INT(sdm_recipe_shown_frames(r), 2 * 9999 + 1);
        sdm_recipe_free(&r);
    }
    free(text);
}

/* Every prefix and thousands of random byte edits of a valid recipe: each
 * either loads or fails with code 2 and "t.yaml:LINE:COL: ". */
static int well_formed_error(const sdm_error *err)
{
    int line = 0, col = 0, used = 0;
    if (err->code != SDM_EXIT_USAGE)
        return 0;
    if (sscanf(err->msg, "t.yaml:%d:%d: %n", &line, &col, &used) != 2 || !used)
        return 0;
    return line >= 1 && col >= 1 && err->msg[used] != 0;
}

static void test_mutations(void)
{
    static const char base[] =
        "# a morph\n"
        "width: 256\nheight: 256\nsteps: 20\nseed: 1234\nloop: pingpong\n"
        "output: [out/m.mp4, out/m.gif]\n"
        "keyframes:\n"
        "  - prompt: \"a rainy city street, neon\"\n"
        "    frames: 24\n"
        "    ease: smoothstep\n"
        "  - {prompt: a rainy forest path, seed: 99, hold: 3}\n"
        "  - a desert\n";
    size_t len = strlen(base);
    char buf[sizeof base + 8];
    uint64_t state = 0x9E3779B97F4A7C15ull;
    int loaded = 0, failed = 0, bad_msgs = 0;

    for (size_t cut = 0; cut <= len; cut++) {
        sdm_error err;
        sdm_recipe *r = NULL;
        memset(&err, 0, sizeof err);
        memcpy(buf, base, cut);
        if (sdm_recipe_load_string("t.yaml", buf, cut, &r, &err)) {
            failed++;
            bad_msgs += !well_formed_error(&err);
        } else {
            loaded++;
        }
        sdm_recipe_free(&r);
    }
    for (int it = 0; it < 20000; it++) {
        sdm_error err;
        sdm_recipe *r = NULL;
        int edits;
        memcpy(buf, base, len + 1);
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        edits = 1 + (int)(state % 3);
        for (int e = 0; e < edits; e++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            /* bytes from YAML's syntax and beyond ASCII */
            buf[(state >> 8) % len] =
                "[]{}:-,#&*!|>'\"%@` \n\t\x80\xc3\xff"
                "0a"[(state >> 32) % 26];
        }
        memset(&err, 0, sizeof err);
        if (sdm_recipe_load_string("t.yaml", buf, len, &r, &err)) {
            failed++;
            if (!well_formed_error(&err)) {
                if (bad_msgs < 5)
                    fprintf(stderr, "mutation %d: message without a position: %s\n", it, err.msg);
                bad_msgs++;
            }
        } else {
            loaded++;
        }
        sdm_recipe_free(&r);
    }
    printf("mutations: %d loaded, %d refused\n", loaded, failed);
    CHECK(loaded > 0);
    CHECK(failed > 1000);
    CHECK_INT(bad_msgs, 0);
}

/* weighting, clip_skip (recipe default, keyframe, walk) and embeddings */
static void test_prompt_keys(void)
{
    sdm_error err;
    sdm_recipe *r = load("keyframes:\n  - a (city:1.2)\n", &err);
    char dir[256];

    CHECK(r && r->weighting == SDM_WEIGHTING_A1111 && r->keyframes[0].clip_skip == 1 && !r->embeddings);
    CHECK(r && sdm_recipe_embeddings_dir(r, dir, sizeof dir) == -1);
    sdm_recipe_free(&r);
    r = load(
        "clip_skip: 2\nweighting: none\nembeddings: emb\nkeyframes:\n  - a (city:1.2.3)\n"
        "  - prompt: b\n    clip_skip: 1\n",
        &err);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->weighting, SDM_WEIGHTING_NONE);
        CHECK_INT(r->keyframes[0].clip_skip, 2);
        CHECK_INT(r->keyframes[1].clip_skip, 1);
        CHECK_STR(r->embeddings, "emb");
        free(r->path);
        r->path = strdup("recipes/x.yaml");
        CHECK(r->path && sdm_recipe_embeddings_dir(r, dir, sizeof dir) == 0);
        CHECK_STR(dir, "recipes/emb");
        CHECK(sdm_recipe_embeddings_dir(r, dir, 8) == -1);
    }
    sdm_recipe_free(&r);
    r = load("clip_skip: 3\nwalk:\n  prompt: a\n", &err);
    CHECK(r && r->walk->clip_skip == 3 && r->keyframes[0].clip_skip == 3);
    sdm_recipe_free(&r);
    r = load("walk:\n  prompt: a\n  clip_skip: 2\n", &err);
    CHECK(r && r->keyframes[0].clip_skip == 2);
    sdm_recipe_free(&r);
}

/* Samplers by the names users type: an alias that says Karras asks for it. */
static void test_sampler_aliases(void)
{
    sdm_error err = { 0 };
    sdm_recipe *r = load("sampler: DPM++ 2M SDE Karras\ntimestep_spacing: trailing\nkeyframes: [a]\n", &err);

    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->sampler, SDM_SAMPLER_DPMPP_2M_SDE);
        CHECK(r->karras);
        CHECK_INT(r->timestep_spacing, SDM_SPACING_TRAILING);
        sdm_recipe_free(&r);
    }
    r = load("sampler: Euler a\nkeyframes: [a]\n", &err);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->sampler, SDM_SAMPLER_EULER_A);
        CHECK(!r->karras);
        sdm_recipe_free(&r);
    }
}

int main(void)
{
    test_sampler_aliases();
    test_enums();
    test_output_names();
    test_defaults();
    test_inheritance();
    test_gif_keys();
    test_walk();
    test_values();
    test_prompt_keys();
    test_bad();
    test_deep_and_huge();
    test_mutations();
    return test_report();
}
