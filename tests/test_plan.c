/* The frame planner, without a model: easing curves, exact frame counts for
 * every loop mode and hold, seamless loops (no repeated frame at the seam,
 * weights continuing at the same pace), walk frames reproducible alone,
 * --frames selection, frames with identical inputs sharing one render, and
 * every example in recipes/ passing check. */
#include <glob.h>
#include <json.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "plan.h"
#include "recipe.h"
#include "test.h"

static sdm_recipe *load(const char *text)
{
    sdm_recipe *r = NULL;
    sdm_error err;

    memset(&err, 0, sizeof err);
    if (sdm_recipe_load_string("p.yaml", text, strlen(text), &r, &err))
        fprintf(stderr, "load failed: %s\n", err.msg);
    return r;
}

static int plan_of(const char *text, sdm_recipe **r, sdm_plan *p)
{
    sdm_error err;

    memset(&err, 0, sizeof err);
    memset(p, 0, sizeof *p);
    *r = load(text);
    if (!*r)
        return -1;
    if (sdm_plan_make(*r, p, &err)) {
        fprintf(stderr, "plan failed: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Field by field: the struct's padding bytes are indeterminate, so memcmp
 * could fail on equal frames (it does under AddressSanitizer's malloc fill). */
static int identical_frame(const sdm_plan_frame *a, const sdm_plan_frame *b)
{
    return a->key_a == b->key_a && a->key_b == b->key_b && a->t == b->t && a->interp == b->interp &&
           a->seed_t == b->seed_t && a->guidance == b->guidance && a->walk_k == b->walk_k;
}

static void test_ease(void)
{
    for (int e = 0; e < SDM_EASE_COUNT; e++) {
        double prev = -1;
        CHECK(sdm_ease_apply((sdm_ease)e, 0) == 0.0);
        CHECK(sdm_ease_apply((sdm_ease)e, 1) == 1.0);
        CHECK(sdm_ease_apply((sdm_ease)e, -0.5) == 0.0);
        CHECK(sdm_ease_apply((sdm_ease)e, 7) == 1.0);
        CHECK(sdm_ease_apply((sdm_ease)e, NAN) == 0.0);
        CHECK_NEAR(sdm_ease_apply((sdm_ease)e, 0.5), 0.5, 1e-15);
        for (int i = 0; i <= 1000; i++) {
            double x = i / 1000.0, y = sdm_ease_apply((sdm_ease)e, x);
            if (!(y > prev) || y < 0 || y > 1) { /* strictly increasing, in [0,1] */
                CHECK(y > prev && y >= 0 && y <= 1);
                break;
            }
            prev = y;
            /* symmetric: the way back mirrors the way there */
            if (fabs(sdm_ease_apply((sdm_ease)e, 1 - x) - (1 - y)) > 1e-12) {
                CHECK_NEAR(sdm_ease_apply((sdm_ease)e, 1 - x), 1 - y, 1e-12);
                break;
            }
        }
    }
    CHECK_NEAR(sdm_ease_apply(SDM_EASE_LINEAR, 0.3), 0.3, 0);
    CHECK_NEAR(sdm_ease_apply(SDM_EASE_SMOOTHSTEP, 0.25), 0.15625, 1e-15);
    CHECK_NEAR(sdm_ease_apply(SDM_EASE_COSINE, 0.25), (1 - sqrt(0.5)) / 2, 1e-15);
    /* eased curves start and end at rest: slope -> 0 at both ends */
    CHECK(sdm_ease_apply(SDM_EASE_SMOOTHSTEP, 1e-4) / 1e-4 < 1e-3);
    CHECK(sdm_ease_apply(SDM_EASE_COSINE, 1e-4) / 1e-4 < 1e-3);
    CHECK((1 - sdm_ease_apply(SDM_EASE_SMOOTHSTEP, 1 - 1e-4)) / 1e-4 < 1e-3);
    CHECK((1 - sdm_ease_apply(SDM_EASE_COSINE, 1 - 1e-4)) / 1e-4 < 1e-3);
}

/* Exact counts: shown and rendered, and the sequence itself where short. */
typedef struct {
    const char *text;
    int shown, rendered;
    const char *sequence; /* renders, comma-separated; NULL: not checked */
} count_case;

static const count_case counts[] = {
    { "frames: 4\nkeyframes: [a, b, c]\n", 9, 9, "0,1,2,3,4,5,6,7,8" },
    { "frames: 4\nkeyframes: [a, {prompt: b, hold: 2}, c]\n", 11, 9, "0,1,2,3,4,4,4,5,6,7,8" },
    { "frames: 4\nloop: pingpong\nkeyframes: [a, b, c]\n", 16, 9, "0,1,2,3,4,5,6,7,8,7,6,5,4,3,2,1" },
    { "frames: 3\nloop: pingpong\nkeyframes: [{prompt: a, hold: 1}, {prompt: b, hold: 1}, {prompt: c, hold: 2}]\n", 17,
      7, "0,0,1,2,3,3,4,5,6,6,6,5,4,3,3,2,1" },
    { "frames: 4\nloop: cycle\nkeyframes: [a, b, c]\n", 12, 12, "0,1,2,3,4,5,6,7,8,9,10,11" },
    { "frames: 2\nloop: cycle\nkeyframes: [{prompt: a, hold: 2}, b]\n", 6, 4, "0,0,0,1,2,3" },
    { "keyframes: [a]\n", 1, 1, "0" },
    { "hold: 3\nkeyframes: [a]\n", 4, 1, "0,0,0,0" },
    { "hold: 3\nloop: pingpong\nkeyframes: [a]\n", 4, 1, "0,0,0,0" },
    { "frames: 1\nloop: pingpong\nkeyframes: [a, b]\n", 2, 2, "0,1" },
    { "frames: 1\nloop: cycle\nkeyframes: [a, b]\n", 2, 2, "0,1" },
    { "frames: 1\nkeyframes: [a, b, c]\n", 3, 3, "0,1,2" },
    /* the last keyframe's frames only count with cycle */
    { "keyframes: [{prompt: a, frames: 3}, {prompt: b, frames: 50}]\n", 4, 4, "0,1,2,3" },
    { "loop: cycle\nkeyframes: [{prompt: a, frames: 3}, {prompt: b, frames: 5}]\n", 8, 8, NULL },
    { "frames: 16\nloop: pingpong\nkeyframes: [a, b, c, d, e]\n", 128, 65, NULL },
    { "walk: {prompt: a, frames: 10}\n", 10, 10, "0,1,2,3,4,5,6,7,8,9" },
    { "loop: pingpong\nwalk: {prompt: a, frames: 5}\n", 8, 5, "0,1,2,3,4,3,2,1" },
    { "loop: pingpong\nwalk: {prompt: a, frames: 1}\n", 1, 1, "0" },
    { "loop: pingpong\nwalk: {prompt: a, frames: 2}\n", 2, 2, "0,1" },
};

static void test_counts(void)
{
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        sdm_recipe *r = NULL;
        sdm_plan p;
        char got[1024] = "";

        if (plan_of(counts[c].text, &r, &p)) {
            CHECK(!"plan");
            sdm_recipe_free(&r);
            continue;
        }
        CHECK_INT(p.n_sequence, counts[c].shown);
        CHECK_INT(p.n_renders, counts[c].rendered);
        CHECK_INT(p.n_sequence, sdm_recipe_shown_frames(r));
        if (counts[c].sequence) {
            for (int i = 0; i < p.n_sequence && strlen(got) < sizeof got - 16; i++)
                sprintf(got + strlen(got), "%s%d", i ? "," : "", p.sequence[i]);
            CHECK_STR(got, counts[c].sequence);
        }
        for (int i = 0; i < p.n_sequence; i++)
            CHECK_INT(p.frame_index[i], i);
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
}

/* The values of one transition: half-open, t = ease(j/N), guidance lerped,
 * seed weight = t, interp of the transition's start. */
static void test_transition_values(void)
{
    sdm_recipe *r = NULL;
    sdm_plan p;

    if (plan_of("keyframes:\n"
                "  - {prompt: a, seed: 1, guidance: 5, frames: 4, interp: slerp}\n"
                "  - {prompt: b, seed: 2, guidance: 9, frames: 5, ease: smoothstep}\n"
                "  - {prompt: c, seed: 2, guidance: 9}\n",
                &r, &p))
        return;
    CHECK_INT(p.n_renders, 10);
    CHECK_INT(p.renders[0].key_a, 0);
    CHECK_INT(p.renders[0].key_b, 0);
    CHECK(p.renders[0].t == 0.0);
    CHECK(p.renders[0].guidance == 5.0);
    CHECK_INT(p.renders[0].walk_k, -1);
    for (int j = 1; j < 4; j++) {
        const sdm_plan_frame *f = &p.renders[j];
        CHECK_INT(f->key_a, 0);
        CHECK_INT(f->key_b, 1);
        CHECK(f->t == j / 4.0);
        CHECK(f->seed_t == f->t);
        CHECK_NEAR(f->guidance, 5 + 4 * (j / 4.0), 1e-12);
        CHECK_INT(f->interp, SDM_INTERP_SLERP);
        CHECK_INT(f->walk_k, -1);
    }
    CHECK_INT(p.renders[4].key_a, 1); /* b itself, once */
    CHECK_INT(p.renders[4].key_b, 1);
    CHECK(p.renders[4].t == 0.0);
    CHECK(p.renders[4].guidance == 9.0);
    for (int j = 1; j < 5; j++) {
        const sdm_plan_frame *f = &p.renders[4 + j];
        double x = j / 5.0;
        CHECK_INT(f->key_a, 1);
        CHECK_INT(f->key_b, 2);
        CHECK_NEAR(f->t, x * x * (3 - 2 * x), 1e-15);
        CHECK_INT(f->interp, SDM_INTERP_LERP);
        CHECK(f->guidance == 9.0);
    }
    CHECK_INT(p.renders[9].key_a, 2);
    CHECK_INT(p.renders[9].key_b, 2);
    CHECK_NEAR(p.fps, 12, 0);
    sdm_plan_free(&p);
    CHECK(p.renders == NULL && p.n_sequence == 0);
    sdm_plan_free(&p); /* twice is fine */
    sdm_recipe_free(&r);
}

/* Position along the keyframe path: key_a + t. */
static double pos(const sdm_plan *p, int out)
{
    const sdm_plan_frame *f = &p->renders[p->sequence[out]];
    if (f->walk_k >= 0)
        return f->walk_k;
    return f->key_a + f->t;
}

static int same_frame(const sdm_plan_frame *a, const sdm_plan_frame *b)
{
    return a->key_a == b->key_a && a->key_b == b->key_b && a->t == b->t && a->walk_k == b->walk_k;
}

/* Invariants over many generated recipes: render order, distinctness,
 * holds as the only repeats, every keyframe rendered once, the loop seam. */
static void test_invariants(void)
{
    static const char *const loops[] = { "none", "pingpong", "cycle" };
    static const char *const eases[] = { "linear", "smoothstep", "cosine" };
    uint64_t state = 12345;
    int plans = 0, bad_order = 0, dup_renders = 0, bad_repeats = 0, bad_keys = 0, bad_back = 0;

    for (int it = 0; it < 600; it++) {
        char text[2048];
        int n, len, holds[8], frames[8], loop, expected_repeats = 0, fwd = 0, max_seen = -1;
        sdm_recipe *r = NULL;
        sdm_plan p;

        state = state * 6364136223846793005ull + 1442695040888963407ull;
        loop = (int)((state >> 33) % 3);
        n = 1 + (int)((state >> 40) % 5);
        if (loop == 2 && n < 2)
            n = 2;
        len = sprintf(text, "loop: %s\nkeyframes:\n", loops[loop]);
        for (int i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            frames[i] = 1 + (int)((state >> 33) % 6);
            holds[i] = (int)((state >> 45) % 5 == 0 ? (state >> 50) % 3 : 0);
            len += sprintf(text + len, "  - {prompt: p%d, frames: %d, hold: %d, ease: %s, seed: %d}\n", i, frames[i],
                           holds[i], eases[(state >> 55) % 3], (int)((state >> 58) % 3));
        }
        if (plan_of(text, &r, &p)) {
            CHECK(!"plan");
            sdm_recipe_free(&r);
            continue;
        }
        plans++;
        /* renders appear in order; each is distinct from every other */
        for (int i = 0; i < p.n_sequence; i++) {
            if (p.sequence[i] > max_seen + 1)
                bad_order++;
            if (p.sequence[i] > max_seen)
                max_seen = p.sequence[i];
        }
        if (max_seen != p.n_renders - 1)
            bad_order++;
        for (int i = 0; i < p.n_renders; i++)
            for (int j = i + 1; j < p.n_renders; j++)
                dup_renders += same_frame(&p.renders[i], &p.renders[j]);
        /* each keyframe rendered exactly once (as itself) */
        for (int k = 0; k < n; k++) {
            int seen = 0;
            for (int i = 0; i < p.n_renders; i++)
                seen += p.renders[i].key_a == k && p.renders[i].key_b == k && p.renders[i].t == 0;
            bad_keys += seen != 1;
        }
        /* repeats of the previous frame, the seam included when looping:
         * exactly the holds, no more */
        if (loop == 0) {
            for (int k = 0; k < n; k++)
                expected_repeats += holds[k];
        } else if (loop == 2) {
            for (int k = 0; k < n; k++)
                expected_repeats += holds[k];
        } else if (n > 1) {
            for (int k = 0; k < n; k++)
                expected_repeats += (k == 0 || k == n - 1 ? 1 : 2) * holds[k];
        } else {
            expected_repeats = holds[0] + 1; /* a still: it repeats itself */
        }
        {
            int repeats = 0, cyclic = loop != 0;
            for (int i = 0; i + 1 < p.n_sequence + cyclic; i++) {
                const sdm_plan_frame *a = &p.renders[p.sequence[i]];
                const sdm_plan_frame *b = &p.renders[p.sequence[(i + 1) % p.n_sequence]];
                repeats += same_frame(a, b);
            }
            if (repeats != expected_repeats) {
                if (bad_repeats < 3)
                    fprintf(stderr, "repeats %d, expected %d in:\n%s", repeats, expected_repeats, text);
                bad_repeats++;
            }
        }
        /* pingpong's way back is the way there reversed, reusing renders */
        if (loop == 1 && n > 1) {
            int first = 1 + holds[0], last = 1 + holds[n - 1];
            fwd = (p.n_sequence + first + last) / 2;
            for (int m = 0; fwd + m < p.n_sequence; m++)
                bad_back += p.sequence[fwd + m] != p.sequence[fwd - 1 - last - m];
        }
        /* renders: one per transition frame, plus the last keyframe unless cycling */
        {
            int expected = loop == 2 ? 0 : 1;
            for (int k = 0; k < (loop == 2 ? n : n - 1); k++)
                expected += frames[k];
            bad_back += p.n_renders != expected;
        }
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
    printf("invariants over %d generated plans\n", plans);
    CHECK_INT(plans, 600);
    CHECK_INT(bad_order, 0);
    CHECK_INT(dup_renders, 0);
    CHECK_INT(bad_keys, 0);
    CHECK_INT(bad_repeats, 0);
    CHECK_INT(bad_back, 0);
}

/* Played on repeat, the weights keep their pace across the seam: with linear
 * easing every step along the path is 1/N, the seam's too; eased, the seam's
 * step equals the first step of the way there. */
static void test_seam(void)
{
    static const struct {
        const char *text;
        int n_keys;
        int cycle;
    } cases[] = {
        { "frames: 8\nloop: pingpong\nkeyframes: [a, b, c]\n", 3, 0 },
        { "frames: 8\nloop: cycle\nkeyframes: [a, b, c]\n", 3, 1 },
        { "frames: 5\nloop: cycle\nkeyframes: [a, b]\n", 2, 1 },
        { "frames: 5\nloop: pingpong\nkeyframes: [a, b]\n", 2, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int eased = 0; eased < 2; eased++) {
            char text[256];
            sdm_recipe *r = NULL;
            sdm_plan p;
            int n, bad = 0;
            double first_step, seam_step;

            snprintf(text, sizeof text, "ease: %s\n%s", eased ? "smoothstep" : "linear", cases[c].text);
            if (plan_of(text, &r, &p)) {
                CHECK(!"plan");
                sdm_recipe_free(&r);
                continue;
            }
            n = p.n_sequence;
            for (int i = 0; i < n; i++) {
                double d = pos(&p, (i + 1) % n) - pos(&p, i);
                if (cases[c].cycle)
                    d = fmod(d + cases[c].n_keys, cases[c].n_keys);
                d = fabs(d);
                if (!eased && fabs(d - 1.0 / r->keyframes[0].frames) > 1e-12)
                    bad++;
                if (d == 0 || d > 0.5)
                    bad++;
            }
            CHECK_INT(bad, 0);
            first_step = fabs(pos(&p, 1) - pos(&p, 0));
            seam_step = pos(&p, 0) - pos(&p, n - 1);
            if (cases[c].cycle)
                seam_step = fmod(seam_step + cases[c].n_keys, cases[c].n_keys);
            CHECK_NEAR(fabs(seam_step), first_step, 1e-12);
            CHECK(p.sequence[n - 1] != p.sequence[0]);
            sdm_plan_free(&p);
            sdm_recipe_free(&r);
        }
    }
}

static void sequence_string(const sdm_plan *p, char *got, size_t len)
{
    got[0] = 0;
    for (int i = 0; i < p->n_sequence && strlen(got) < len - 16; i++)
        sprintf(got + strlen(got), "%s%d", i ? "," : "", p->sequence[i]);
}

/* Frames whose inputs are identical are rendered once: a keyframe given
 * twice, a transition between keyframes that condition alike, a transition
 * given twice. Different seed, guidance or negative: no merge. */
static const count_case reuse[] = {
    /* cycle A, B, A, C: the second A is render 0 again */
    { "frames: 2\nloop: cycle\nkeyframes: [a, b, a, c]\n", 8, 7, "0,1,2,3,0,4,5,6" },
    /* A -> A' (same conditioning, another interp and ease): every frame is A */
    { "frames: 4\nkeyframes: [a, {prompt: a, interp: slerp, ease: cosine}, b]\n", 9, 5, "0,0,0,0,0,1,2,3,4" },
    /* A -> B given twice; B -> A is another path (mixed the other way round) */
    { "frames: 3\nkeyframes: [a, b, a, b]\n", 10, 6, "0,1,2,3,4,5,0,1,2,3" },
    /* ... but not with another ease: other weights */
    { "frames: 3\nkeyframes: [a, b, {prompt: a, ease: smoothstep}, b]\n", 10, 8, "0,1,2,3,4,5,0,6,7,3" },
    /* ... nor with another interp */
    { "frames: 3\nkeyframes: [a, b, {prompt: a, interp: slerp}, b]\n", 10, 8, "0,1,2,3,4,5,0,6,7,3" },
    /* the same prompt with another seed is another picture */
    { "frames: 2\nkeyframes: [{prompt: a, seed: 1}, b, {prompt: a, seed: 2}]\n", 5, 5, "0,1,2,3,4" },
    /* and with another guidance */
    { "frames: 2\nkeyframes: [{prompt: a, guidance: 5}, b, {prompt: a, guidance: 6}]\n", 5, 5, "0,1,2,3,4" },
    /* or another negative; an explicit negative equal to the recipe's is the same */
    { "frames: 2\nkeyframes: [a, b, {prompt: a, negative: blurry}]\n", 5, 5, "0,1,2,3,4" },
    { "negative: blurry\nframes: 2\nkeyframes: [a, b, {prompt: a, negative: blurry}]\n", 5, 4, "0,1,2,3,0" },
    /* a seed morph between equal seeds is no morph at all ... */
    { "frames: 3\nkeyframes: [{prompt: a, seed: 4}, {prompt: a, seed: 4}]\n", 4, 1, "0,0,0,0" },
    /* ... but between two seeds it is */
    { "frames: 3\nkeyframes: [{prompt: a, seed: 4}, {prompt: a, seed: 5}]\n", 4, 4, "0,1,2,3" },
    /* prompts alike, guidance lerped from 5 to 9: every frame differs */
    { "frames: 3\nkeyframes: [{prompt: a, guidance: 5}, {prompt: a, guidance: 9}]\n", 4, 4, "0,1,2,3" },
    /* a different prompt whose negative only differs still differs */
    { "frames: 2\nkeyframes: [a, {prompt: a, negative: x}]\n", 3, 3, "0,1,2" },
    /* holds and pingpong on top of merged renders */
    { "frames: 2\nloop: pingpong\nkeyframes: [a, {prompt: b, hold: 1}, a, c]\n", 14, 6, "0,1,2,2,3,0,4,5,4,0,3,2,2,1" },
};

static void test_reuse(void)
{
    for (size_t c = 0; c < sizeof reuse / sizeof reuse[0]; c++) {
        sdm_recipe *r = NULL;
        sdm_plan p;
        char got[1024];

        if (plan_of(reuse[c].text, &r, &p)) {
            CHECK(!"plan");
            sdm_recipe_free(&r);
            continue;
        }
        CHECK_INT(p.n_sequence, reuse[c].shown);
        CHECK_INT(p.n_renders, reuse[c].rendered);
        sequence_string(&p, got, sizeof got);
        CHECK_STR(got, reuse[c].sequence);
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
}

/* What each output frame is shown as (its place in the recipe) is kept:
 * the second A of A, B, A, C is keyframe 2, rendered as keyframe 0. */
static void test_reuse_places(void)
{
    sdm_recipe *r = NULL;
    sdm_plan p, one;
    sdm_error err = { 0 };

    if (plan_of("frames: 2\nloop: cycle\nkeyframes: [a, b, a, c]\n", &r, &p))
        return;
    CHECK_INT(p.sequence[4], 0);
    CHECK_INT(p.shown[4].key_a, 2);
    CHECK_INT(p.shown[4].key_b, 2);
    CHECK_INT(p.shown[0].key_a, 0);
    CHECK_INT(p.renders[0].key_a, 0);
    CHECK_INT(p.renders[4].key_a, 2); /* A -> C, the first render after the merged A */
    CHECK_INT(p.renders[4].key_b, 3);
    CHECK(p.renders[4].t == 0.5);
    for (int i = 0; i < p.n_sequence; i++)
        CHECK_INT(p.frame_index[i], i);
    /* --frames over a merged frame: the selection's renders, merged still */
    CHECK_INT(sdm_plan_make(r, &one, &err), 0);
    CHECK_INT(sdm_plan_select(&one, "0,4", &err), 0);
    CHECK_INT(one.n_sequence, 2);
    CHECK_INT(one.n_renders, 1);
    CHECK_INT(one.sequence[0], 0);
    CHECK_INT(one.sequence[1], 0);
    CHECK_INT(one.frame_index[1], 4);
    CHECK_INT(one.shown[1].key_a, 2);
    sdm_plan_free(&one);
    CHECK_INT(sdm_plan_make(r, &one, &err), 0);
    CHECK_INT(sdm_plan_select(&one, "3-5", &err), 0);
    CHECK_INT(one.n_sequence, 3);
    CHECK_INT(one.n_renders, 3);
    CHECK_INT(one.frame_index[0], 3);
    CHECK_INT(one.frame_index[2], 5);
    CHECK_INT(one.renders[one.sequence[1]].key_a, 0); /* frame 4 renders keyframe 0's inputs */
    CHECK_INT(one.shown[1].key_a, 2);
    CHECK_INT(one.renders[one.sequence[2]].key_a, 2);
    CHECK_INT(one.renders[one.sequence[2]].key_b, 3);
    /* frame 4 alone is one render of keyframe A */
    CHECK_INT(sdm_plan_select(&one, "1", &err), 0);
    CHECK_INT(one.n_renders, 1);
    CHECK_INT(one.frame_index[0], 4);
    CHECK_INT(one.renders[0].key_a, 0);
    CHECK_INT(one.renders[0].key_b, 0);
    sdm_plan_free(&one);
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

/* The effective inputs of an output frame, written out the long way: what
 * each of the conditioner's three mixes copies or mixes, and the guidance. */
typedef struct {
    const char *text_a, *text_b, *neg_a, *neg_b;
    uint64_t seed_a, seed_b;
    double text_t, neg_t, seed_t, guidance;
    int text_how, neg_how;
} inputs;

static const char *neg_of(const sdm_recipe *r, int k)
{
    return r->keyframes[k].negative ? r->keyframes[k].negative : r->negative ? r->negative : "";
}

static inputs inputs_of(const sdm_recipe *r, const sdm_plan_frame *f)
{
    const sdm_keyframe *a = &r->keyframes[f->key_a], *b = &r->keyframes[f->key_b];
    inputs in = {
        a->prompt, a->prompt, neg_of(r, f->key_a), neg_of(r, f->key_a), a->seed, a->seed, 0, 0, 0, f->guidance, 0, 0
    };

    if (strcmp(a->prompt, b->prompt) && f->t > 0) {
        in.text_b = b->prompt;
        if (f->t >= 1)
            in.text_a = b->prompt;
        else
            in.text_t = f->t, in.text_how = f->interp;
    }
    if (strcmp(neg_of(r, f->key_a), neg_of(r, f->key_b)) && f->t > 0) {
        in.neg_b = neg_of(r, f->key_b);
        if (f->t >= 1)
            in.neg_a = in.neg_b;
        else
            in.neg_t = f->t, in.neg_how = f->interp;
    }
    if (a->seed != b->seed && f->seed_t > 0) {
        in.seed_b = b->seed;
        if (f->seed_t >= 1)
            in.seed_a = b->seed;
        else
            in.seed_t = f->seed_t;
    }
    return in;
}

static int same_inputs(const inputs *x, const inputs *y)
{
    return !strcmp(x->text_a, y->text_a) && !strcmp(x->text_b, y->text_b) && !strcmp(x->neg_a, y->neg_a) &&
           !strcmp(x->neg_b, y->neg_b) && x->seed_a == y->seed_a && x->seed_b == y->seed_b && x->text_t == y->text_t &&
           x->neg_t == y->neg_t && x->seed_t == y->seed_t && x->guidance == y->guidance && x->text_how == y->text_how &&
           x->neg_how == y->neg_how;
}

/* Over many generated recipes drawn from few prompts, seeds, guidances and
 * negatives: two output frames share a render exactly when their inputs,
 * compared pair by pair, are identical; renders stay in order of first
 * appearance. */
static void test_reuse_exact(void)
{
    static const char *const loops[] = { "none", "pingpong", "cycle" };
    static const char *const eases[] = { "linear", "smoothstep", "cosine" };
    static const char *const interps[] = { "lerp", "slerp" };
    uint64_t state = 777;
    int plans = 0, wrong = 0, bad_order = 0, merged = 0;

    for (int it = 0; it < 400; it++) {
        char text[4096];
        int n, len, loop;
        sdm_recipe *r = NULL;
        sdm_plan p;

        state = state * 6364136223846793005ull + 1442695040888963407ull;
        loop = (int)((state >> 33) % 3);
        n = 2 + (int)((state >> 40) % 5);
        len = sprintf(text, "loop: %s\nnegative: %s\nkeyframes:\n", loops[loop], (state >> 50) % 2 ? "x" : "y");
        for (int i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            len += sprintf(text + len,
                           "  - {prompt: p%d, frames: %d, hold: %d, ease: %s, interp: %s, seed: %d, "
                           "guidance: %d",
                           (int)((state >> 33) % 2), 1 + (int)((state >> 36) % 4), (int)((state >> 40) % 4 == 0),
                           eases[(state >> 43) % 3], interps[(state >> 46) % 2], (int)((state >> 48) % 2),
                           5 + (int)((state >> 50) % 4 == 0));
            if ((state >> 53) % 3 == 0)
                len += sprintf(text + len, ", negative: %s", (state >> 56) % 2 ? "x" : "z");
            len += sprintf(text + len, "}\n");
        }
        if (plan_of(text, &r, &p)) {
            CHECK(!"plan");
            sdm_recipe_free(&r);
            continue;
        }
        plans++;
        merged += p.n_sequence > 0 && p.n_renders < p.n_sequence;
        {
            inputs *in = malloc((size_t)p.n_sequence * sizeof *in);
            int max_seen = -1;
            for (int i = 0; i < p.n_sequence; i++) {
                in[i] = inputs_of(r, &p.shown[i]);
                if (p.sequence[i] > max_seen + 1)
                    bad_order++;
                if (p.sequence[i] > max_seen)
                    max_seen = p.sequence[i];
            }
            for (int i = 0; i < p.n_sequence; i++)
                for (int j = i + 1; j < p.n_sequence; j++)
                    if (same_inputs(&in[i], &in[j]) != (p.sequence[i] == p.sequence[j])) {
                        if (wrong < 3)
                            fprintf(stderr, "frames %d and %d: same inputs %d, same render %d in:\n%s", i, j,
                                    same_inputs(&in[i], &in[j]), p.sequence[i] == p.sequence[j], text);
                        wrong++;
                    }
            /* the render is the frame itself, or one with the same inputs */
            for (int i = 0; i < p.n_sequence; i++) {
                inputs rin = inputs_of(r, &p.renders[p.sequence[i]]);
                wrong += !same_inputs(&rin, &in[i]);
            }
            free(in);
        }
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
    printf("reuse over %d generated plans, %d with merged frames\n", plans, merged);
    CHECK_INT(plans, 400);
    CHECK(merged > 100);
    CHECK_INT(wrong, 0);
    CHECK_INT(bad_order, 0);
}

/* Long recipes stay fast: 100000 frames of A, B, A, B cycling. */
static void test_reuse_large(void)
{
    sdm_recipe *r = NULL;
    sdm_plan p;
    struct timespec t0, t1;
    double ms;
    int bad = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (plan_of("frames: 25000\nloop: cycle\nease: cosine\nkeyframes: [a, b, a, b]\n", &r, &p))
        return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("plan of 100000 frames, A B A B cycling: %d renders, %.1f ms\n", p.n_renders, ms);
    CHECK_INT(p.n_sequence, 100000);
    CHECK_INT(p.n_renders, 50000);
    for (int i = 0; i < 50000; i++) {
        bad += p.sequence[i] != i;
        bad += p.sequence[50000 + i] != i;
    }
    CHECK_INT(bad, 0);
    CHECK(ms < 2000);
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

static void test_walk(void)
{
    sdm_recipe *r = NULL;
    sdm_plan full, one;
    sdm_error err;

    if (plan_of("seed: 5\nguidance: 8\nloop: pingpong\n"
                "walk: {prompt: a technopriest, frames: 60, sigma: 0.02, anchor: 0.5, noise_seed: 77}\n",
                &r, &full))
        return;
    CHECK_INT(full.n_renders, 60);
    CHECK_INT(full.n_sequence, 118);
    for (int k = 0; k < 60; k++) {
        CHECK_INT(full.renders[k].walk_k, k);
        CHECK_INT(full.renders[k].key_a, 0);
        CHECK_INT(full.renders[k].key_b, 0);
        CHECK(full.renders[k].guidance == 8.0);
    }
    CHECK_INT(full.sequence[60], 58);
    CHECK_INT(full.sequence[117], 1);
    /* frame 37 alone is frame 37 of the full walk: same render parameters */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(r, &one, &err), 0);
    CHECK_INT(sdm_plan_select(&one, "37", &err), 0);
    CHECK_INT(one.n_sequence, 1);
    CHECK_INT(one.n_renders, 1);
    CHECK_INT(one.frame_index[0], 37);
    CHECK_INT(one.sequence[0], 0);
    CHECK(identical_frame(&one.renders[0], &full.renders[full.sequence[37]]));
    CHECK_INT(one.renders[0].walk_k, 37);
    sdm_plan_free(&one);
    /* a frame on the way back is the same render as on the way there */
    CHECK_INT(sdm_plan_make(r, &one, &err), 0);
    CHECK_INT(sdm_plan_select(&one, "100", &err), 0);
    CHECK_INT(one.renders[0].walk_k, 18);
    CHECK_INT(one.frame_index[0], 100);
    sdm_plan_free(&one);
    sdm_plan_free(&full);
    sdm_recipe_free(&r);
}

static void test_select(void)
{
    sdm_recipe *r = NULL;
    sdm_plan full, p;
    sdm_error err;
    static const struct {
        const char *spec, *says;
    } bad[] = {
        { "", "got nothing" },
        { "abc", "expected frame numbers like '37' or '0-9,20', not 'abc'" },
        { "5-", "not '5-'" },
        { "-1", "not '-1'" },
        { "1,,2", "not '1,,2'" },
        { "1,", "not '1,'" },
        { "3 4", "not '3 4'" },
        { "9-3", "the range 9-3 is backwards; write 3-9" },
        { "120", "frame 120 is out of range; this plan shows frames 0..25" },
        { "0-26", "frame 26 is out of range" },
        { "99999999999999999999999", "out of range" },
    };

    /* pingpong a, b (hold 1), c, d, 4 frames each: the way there is
     * 0,1,2,3,4,4,5,6,7,8,9,10,11,12 (14 frames), back 11..1 (12 frames) */
    if (plan_of("frames: 4\nloop: pingpong\nkeyframes: [a, {prompt: b, hold: 1}, c, d]\n", &r, &full))
        return;
    CHECK_INT(full.n_sequence, 26);
    CHECK_INT(full.n_renders, 13);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        CHECK_INT(sdm_plan_make(r, &p, &err), 0);
        CHECK_INT(sdm_plan_select(&p, bad[i].spec, &err), -1);
        CHECK_INT(err.code, SDM_EXIT_USAGE);
        CHECK_CONTAINS(err.msg, bad[i].says);
        CHECK_INT(p.n_sequence, full.n_sequence); /* unchanged on error */
        sdm_plan_free(&p);
    }
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(r, &p, &err), 0);
    CHECK_INT(sdm_plan_select(&p, " 0-2 , 4-5,18,5", &err), 0);
    CHECK_INT(p.n_sequence, 6);
    CHECK_INT(p.frame_index[0], 0);
    CHECK_INT(p.frame_index[3], 4);
    CHECK_INT(p.frame_index[5], 18);
    /* frames 4 and 5 are b and its hold: one render, shown twice */
    CHECK_INT(p.sequence[3], p.sequence[4]);
    CHECK_INT(p.n_renders, 5);
    for (int i = 0; i < p.n_sequence; i++)
        CHECK(same_frame(&p.renders[p.sequence[i]], &full.renders[full.sequence[p.frame_index[i]]]));
    /* selecting again works on the selection's own indices */
    CHECK_INT(sdm_plan_select(&p, "5", &err), 0);
    CHECK_INT(p.n_sequence, 1);
    CHECK_INT(p.frame_index[0], 18);
    CHECK_INT(p.n_renders, 1);
    sdm_plan_free(&p);
    sdm_plan_free(&full);
    sdm_recipe_free(&r);
}

static void test_errors(void)
{
    sdm_recipe *r = load("frames: 3\nloop: cycle\nkeyframes: [a, b]\n");
    sdm_plan p;
    sdm_error err;

    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(NULL, &p, &err), -1);
    CHECK_INT(err.code, SDM_EXIT_USAGE);
    if (!r)
        return;
    /* a recipe built by hand, not by the loader, is checked as well */
    r->n_keyframes = 1;
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(r, &p, &err), -1);
    CHECK_CONTAINS(err.msg, "cycle needs at least 2 keyframes");
    r->n_keyframes = 2;
    r->keyframes[1].frames = 0;
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(r, &p, &err), -1);
    CHECK_CONTAINS(err.msg, "keyframe 1: frames must be >= 1");
    r->keyframes[1].frames = 1000000;
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_plan_make(r, &p, &err), -1);
    CHECK_CONTAINS(err.msg, "the recipe shows 1000003 frames; expected 1..1000000");
    sdm_recipe_free(&r);
}

/* The plan of a recipe (restricted to `select` unless NULL), printed as
 * text or JSON into a string the caller frees; NULL if it fails. */
static char *plan_text(const char *yaml, const char *select, int json)
{
    sdm_recipe *r = NULL;
    sdm_plan p;
    sdm_error err;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = NULL;
    int ok = 0;

    memset(&err, 0, sizeof err);
    if (plan_of(yaml, &r, &p))
        goto end;
    if (select && sdm_plan_select(&p, select, &err)) {
        fprintf(stderr, "select failed: %s\n", err.msg);
        goto end;
    }
    f = open_memstream(&buf, &size);
    if (!f)
        goto end;
    if (json)
        ok = sdm_plan_write_json(&p, r, f) == 0;
    else {
        sdm_plan_print(&p, r, f);
        ok = 1;
    }
end:
    if (f)
        fclose(f);
    if (!ok) {
        free(buf);
        buf = NULL;
    }
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
    return buf;
}

static void test_print(void)
{
    char *buf = plan_text(
        "width: 256\nheight: 256\nsteps: 20\nframes: 4\nloop: pingpong\n"
        "keyframes: [{prompt: a city, seed: 1}, {prompt: a forest, seed: 2, hold: 1}]\n",
        NULL, 0);

    CHECK(buf != NULL);
    if (!buf)
        return;
    CHECK_CONTAINS(buf,
                   "p.yaml: 9 frames shown, 5 rendered, 0.75 s at 12 fps, loop pingpong, 256x256, 20 steps, auto\n");
    CHECK_CONTAINS(buf, "  0 (6:13): \"a city\"\n    seed 1, guidance 7.5; then 4 frames to 1, lerp, linear\n");
    CHECK_CONTAINS(buf, "  frame  render  keyframes   weight  seed  guidance\n");
    CHECK_CONTAINS(buf, "      2       2  0->1        0.5000  1->2  7.50\n");
    CHECK_CONTAINS(buf, "      5       4  1           0.0000  2     7.50  (hold)\n");
    CHECK_CONTAINS(buf, "      8       1  0->1        0.2500  1->2  7.50  (again)\n");
    free(buf);
}

/* Reuse in the printed plan: holds, pingpong's way back (again) and frames
 * whose inputs equal an earlier frame's (same as frame N). */
static void test_print_reuse(void)
{
    char *buf = plan_text("frames: 2\nloop: pingpong\nkeyframes: [a, {prompt: b, hold: 1}, a, {prompt: a, seed: 9}]\n",
                          NULL, 0);

    CHECK(buf != NULL);
    if (!buf)
        return;
    CHECK_CONTAINS(buf, "p.yaml: 14 frames shown, 6 rendered,");
    CHECK_CONTAINS(buf, "      3       2  1           0.0000  0     7.50  (hold)\n");
    CHECK_CONTAINS(buf, "      5       0  2           0.0000  0     7.50  (same as frame 0)\n");
    CHECK_CONTAINS(buf, "      6       4  2->3        0.5000  0->9  7.50\n");
    CHECK_CONTAINS(buf, "      8       4  2->3        0.5000  0->9  7.50  (again)\n");
    CHECK_CONTAINS(buf, "      9       0  2           0.0000  0     7.50  (same as frame 0)\n");
    CHECK_CONTAINS(buf, "     12       2  1           0.0000  0     7.50  (hold)\n");
    free(buf);
    /* a transition between keyframes alike: not holds, the same frame again */
    buf = plan_text("frames: 3\nkeyframes: [a, {prompt: a, hold: 1}]\n", "1-4", 0);
    CHECK(buf != NULL);
    if (!buf)
        return;
    CHECK_CONTAINS(buf, "p.yaml: 4 frames shown, 1 rendered,");
    CHECK_CONTAINS(buf, "      1       0  0->1        0.3333  0     7.50\n");
    CHECK_CONTAINS(buf, "      2       0  0->1        0.6667  0     7.50  (same as frame 1)\n");
    CHECK_CONTAINS(buf, "      3       0  1           0.0000  0     7.50  (same as frame 1)\n");
    CHECK_CONTAINS(buf, "      4       0  1           0.0000  0     7.50  (hold)\n");
    free(buf);
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fprintf(stderr, "JSON has no '%s'\n", key);
    return v;
}

/* The sidecar JSON: valid, exact, and strings escaped. */
static void test_json(void)
{
    char *buf = plan_text(
        "seed: 18446744073709551615\nframes: 3\nloop: pingpong\nsteps: 20\n"
        "keyframes:\n  - prompt: \"say \\\"hi\\\"\\\\ \\n caf\xc3\xa9\\t\\x01\"\n"
        "    guidance: 5\n  - {prompt: b, seed: 3, guidance: 6}\n",
        "1-3", 1);
    json_object *root, *frames, *fr, *keys;

    CHECK(buf != NULL);
    if (!buf)
        return;
    root = json_tokener_parse(buf);
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", buf);
        free(buf);
        return;
    }
    CHECK_STR(json_object_get_string(member(root, "format")), "sdmorph-plan");
    CHECK_STR(json_object_get_string(member(root, "loop")), "pingpong");
    CHECK_INT(json_object_get_int(member(root, "steps")), 20);
    CHECK(json_object_get_type(member(root, "width")) == json_type_null);
    CHECK_INT(json_object_get_int(member(root, "frames_shown")), 3);
    keys = member(root, "keyframes");
    CHECK_INT(json_object_array_length(keys), 2);
    CHECK_STR(json_object_get_string(member(json_object_array_get_idx(keys, 0), "prompt")),
              "say \"hi\"\\ \n caf\xc3\xa9\t\x01");
    CHECK(json_object_get_uint64(member(json_object_array_get_idx(keys, 0), "seed")) == UINT64_MAX);
    frames = member(root, "frames");
    CHECK_INT(json_object_array_length(frames), 3);
    fr = json_object_array_get_idx(frames, 1); /* frame 2: t = 2/3 */
    CHECK_INT(json_object_get_int(member(fr, "frame")), 2);
    CHECK_INT(json_object_get_int(member(fr, "key_a")), 0);
    CHECK_INT(json_object_get_int(member(fr, "key_b")), 1);
    CHECK(json_object_get_double(member(fr, "t")) == 2.0 / 3.0);
    CHECK(json_object_get_uint64(member(fr, "seed_a")) == UINT64_MAX);
    CHECK(json_object_get_uint64(member(fr, "seed_b")) == 3);
    CHECK_NEAR(json_object_get_double(member(fr, "guidance")), 5 + 2.0 / 3.0, 1e-15);
    CHECK(!json_object_object_get_ex(fr, "walk_k", NULL));
    fr = json_object_array_get_idx(frames, 2); /* frame 3: keyframe b */
    CHECK_INT(json_object_get_int(member(fr, "frame")), 3);
    CHECK_INT(json_object_get_int(member(fr, "key_a")), 1);
    json_object_put(root);
    free(buf);
}

/* A merged frame keeps its own place in the JSON, and names the shared render. */
static void test_json_reuse(void)
{
    char *buf = plan_text("frames: 2\nloop: cycle\nkeyframes: [a, b, a, c]\n", NULL, 1);
    json_object *root, *frames, *fr;

    CHECK(buf != NULL);
    if (!buf)
        return;
    root = json_tokener_parse(buf);
    CHECK(root != NULL);
    if (root) {
        CHECK_INT(json_object_get_int(member(root, "frames_shown")), 8);
        CHECK_INT(json_object_get_int(member(root, "frames_rendered")), 7);
        frames = member(root, "frames");
        CHECK_INT(json_object_array_length(frames), 8);
        fr = json_object_array_get_idx(frames, 4);
        CHECK_INT(json_object_get_int(member(fr, "frame")), 4);
        CHECK_INT(json_object_get_int(member(fr, "render")), 0);
        CHECK_INT(json_object_get_int(member(fr, "key_a")), 2);
        CHECK_INT(json_object_get_int(member(fr, "key_b")), 2);
        CHECK(json_object_get_double(member(fr, "t")) == 0.0);
        fr = json_object_array_get_idx(frames, 5);
        CHECK_INT(json_object_get_int(member(fr, "render")), 4);
        CHECK_INT(json_object_get_int(member(fr, "key_a")), 2);
        CHECK_INT(json_object_get_int(member(fr, "key_b")), 3);
        json_object_put(root);
    }
    free(buf);
}

/* Every example users copy must load, plan and pass `sdmorph check`. */
static void test_examples(void)
{
    glob_t g;
    char *argv[3] = { "check", "-q", NULL }, model[512];

    /* check reads the model's model.yaml: the built-in one is beside ./sdmorph, not this test */
    snprintf(model, sizeof model, "%s/models/analytic", test_build_dir());
    if (!getenv("SDMORPH_MODEL"))
        setenv("SDMORPH_MODEL", model, 1);
    if (glob("recipes/*.yaml", 0, NULL, &g) || g.gl_pathc == 0) {
        CHECK(!"no recipes/*.yaml found (tests run from the repository root)");
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        sdm_recipe *r = NULL;
        sdm_plan p;
        sdm_error err;
        char *was = getenv("SDMORPH_MODEL") ? strdup(getenv("SDMORPH_MODEL")) : NULL, xl[512];

        memset(&err, 0, sizeof err);
        memset(&p, 0, sizeof p);
        argv[2] = g.gl_pathv[i];
        /* an SDXL example is checked against the SDXL-shaped analytic model */
        snprintf(xl, sizeof xl, "%s/models/analytic-xl", test_build_dir());
        if (strstr(g.gl_pathv[i], "sdxl"))
            setenv("SDMORPH_MODEL", xl, 1);
        CHECK_INT(sdm_cmd_check(3, argv), SDM_EXIT_OK);
        if (was)
            setenv("SDMORPH_MODEL", was, 1);
        free(was);
        CHECK_INT(sdm_recipe_load(g.gl_pathv[i], &r, &err), 0);
        if (!r) {
            fprintf(stderr, "%s\n", err.msg);
            continue;
        }
        CHECK_INT(sdm_plan_make(r, &p, &err), 0);
        CHECK(p.n_sequence > 1);
        if (strstr(g.gl_pathv[i], "demo.yaml")) {
            /* the first render of a new user: small, short, looping */
            CHECK_INT(r->loop, SDM_LOOP_PINGPONG);
            CHECK_INT(r->width, 256);
            CHECK_INT(r->height, 256);
            CHECK_INT(r->steps, 20);
            CHECK(r->model == NULL);
            CHECK(p.n_sequence >= 40 && p.n_sequence <= 60);
            CHECK_STR(r->outputs[0], "recipes/../out/demo.mp4"); /* the repository's out/, from any folder */
        }
        sdm_plan_free(&p);
        sdm_recipe_free(&r);
    }
    printf("examples: %zu recipes checked\n", g.gl_pathc);
    globfree(&g);
}

/* The real command, where the full binary is built (`make`). */
static void test_binary(void)
{
    char line[512] = "", bad[256], cmd[600], want[400];
    const char *bin = test_sdmorph();
    FILE *f;
    int status;

    if (access(bin, X_OK)) {
        SKIP("./sdmorph is not built here (make); sdm_cmd_check was tested directly");
        return;
    }
    snprintf(cmd, sizeof cmd, "%s check -q recipes/demo.yaml > /dev/null", bin);
    status = system(cmd);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == SDM_EXIT_OK);
    snprintf(bad, sizeof bad, "%s/tests/bad_recipe.yaml", test_build_dir());
    f = fopen(bad, "w");
    if (!f)
        return;
    fputs("steps: 20\nkeyframes:\n  - prompt: a\n    guidence: 3\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", bin, bad);
    f = popen(cmd, "r");
    if (!f)
        return;
    if (!fgets(line, sizeof line, f))
        line[0] = 0;
    status = pclose(f);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == SDM_EXIT_USAGE);
    snprintf(want, sizeof want, "%s:4:5: unknown key 'guidence' in keyframe; did you mean 'guidance'?", bad);
    CHECK_CONTAINS(line, want);
    remove(bad);
}

int main(void)
{
    test_ease();
    test_counts();
    test_transition_values();
    test_invariants();
    test_reuse();
    test_reuse_places();
    test_reuse_exact();
    test_reuse_large();
    test_seam();
    test_walk();
    test_select();
    test_errors();
    test_print();
    test_print_reuse();
    test_json();
    test_json_reuse();
    test_examples();
    test_binary();
    return test_report();
}
