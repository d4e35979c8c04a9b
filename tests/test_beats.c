/* bpm and beats: whole frames with the rounding carried, so keyframes land
 * on their beats with no drift and a loop is a whole number of beats where
 * the frame rate allows; the refusals name file:line:col. */
#include "plan.h"
#include "test.h"

static sdm_recipe *load(const char *text, sdm_error *err)
{
    sdm_recipe *r = NULL;
    memset(err, 0, sizeof *err);
    sdm_recipe_load_string("beats.yaml", text, strlen(text), &r, err);
    return r;
}

/* Output frame of each keyframe's first showing, in plan order. */
static int keyframe_frames(const sdm_plan *p, int *at, int max)
{
    int n = 0;
    for (int i = 0; i < p->n_sequence && n < max; i++)
        if (p->shown[i].key_a == p->shown[i].key_b && (n == 0 || p->shown[i].key_a != p->shown[at[n - 1]].key_a))
            at[n++] = i;
    return n;
}

/* The must-show: 90 bpm, 32 beats, 12 fps: 8 frames a beat, 256 frames. */
static void test_90_bpm_loop(void)
{
    sdm_error err;
    sdm_recipe *r = load(
        "bpm: 90\nfps: 12\nloop: cycle\nkeyframes:\n  - prompt: a\n    beats: 10\n"
        "  - prompt: b\n    beats: 11\n  - prompt: c\n    beats: 11\n",
        &err);
    sdm_plan p;
    int at[8], n;

    CHECK(r != NULL);
    if (!r) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(sdm_plan_make(r, &p, &err) == 0);
    CHECK_INT(p.n_sequence, 256);
    CHECK_NEAR(p.n_sequence / p.fps * r->bpm / 60, 32, 1e-12); /* exactly 32 beats */
    n = keyframe_frames(&p, at, 8);
    CHECK_INT(n, 3);
    CHECK_INT(at[0], 0); /* beat 0 */
    CHECK_INT(at[1], 80); /* beat 10 */
    CHECK_INT(at[2], 168); /* beat 21; beat 32 is frame 256, the loop's frame 0 */
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

/* 100 bpm at 12 fps is 7.2 frames a beat: 40 keyframes a beat apart each
 * land on round(7.2 i), never further than half a frame off. */
static void test_no_drift(void)
{
    char text[8192];
    size_t len = (size_t)snprintf(text, sizeof text, "bpm: 100\nfps: 12\nbeats: 1\nloop: cycle\nkeyframes:\n");
    sdm_error err;
    sdm_recipe *r;
    sdm_plan p;
    int at[64], n, ok = 1;

    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "  - prompt %d\n", i);
    r = load(text, &err);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK(sdm_plan_make(r, &p, &err) == 0);
    CHECK_INT(p.n_sequence, 288); /* 40 beats * 7.2 */
    n = keyframe_frames(&p, at, 64);
    CHECK_INT(n, 40);
    for (int i = 0; i < n; i++)
        ok &= at[i] == (int)floor(i * 7.2 + 0.5) && fabs(at[i] - i * 7.2) <= 0.5;
    CHECK(ok);
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

/* A hold is part of its keyframe's beats; pingpong is twice the beats. */
static void test_hold_and_pingpong(void)
{
    sdm_error err;
    sdm_recipe *r = load(
        "bpm: 120\nfps: 8\nloop: pingpong\nkeyframes:\n  - prompt: a\n    beats: 4\n    hold: 3\n"
        "  - prompt: b\n    beats: 2\n  - c\n",
        &err);
    sdm_plan p;
    int at[8];

    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(r->keyframes[0].frames, 13); /* 4 beats = 16 frames, 3 of them the hold */
    CHECK_INT(r->keyframes[1].frames, 8);
    CHECK(sdm_plan_make(r, &p, &err) == 0);
    CHECK_INT(keyframe_frames(&p, at, 8), 4); /* a, b, c, b on the way back; a starts the repeat */
    CHECK(at[1] == 16 && at[2] == 24 && at[3] == 32); /* beats 4, 6 and 8 */
    CHECK_INT(p.n_sequence, 48 - 3); /* 12 beats, less the hold not repeated at the seam */
    sdm_plan_free(&p);
    sdm_recipe_free(&r);
}

static void test_refusals(void)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        { "keyframes:\n  - prompt: a\n    beats: 3\n  - b\n", "beats.yaml:3:5: 'beats' needs 'bpm'" },
        { "beats: 3\nkeyframes:\n  - a\n  - b\n", "beats.yaml:1:1: 'beats' needs 'bpm'" },
        { "bpm: 120\nkeyframes:\n  - prompt: a\n    frames: 3\n  - b\n", "beats.yaml:4:5: 'frames': with 'bpm'" },
        { "bpm: 120\nframes: 3\nkeyframes:\n  - a\n  - b\n", "beats.yaml:2:1: 'frames': with 'bpm'" },
        { "bpm: 120\nfps: 12\nkeyframes:\n  - prompt: a\n    beats: 0.01\n  - b\n",
          "beats.yaml:4:5: keyframe 0: 0.01 beats at 120 bpm and 12 fps are 0 frames" },
        { "bpm: 120\nfps: 12\nkeyframes:\n  - prompt: a\n    beats: 1\n    hold: 6\n  - b\n",
          "are 6 frames with its hold" },
        { "bpm: 0\nkeyframes:\n  - a\n", "beats.yaml:1:6: 'bpm'" },
        { "bpm: 0.5\nkeyframes:\n  - a\n", "beats.yaml:1:6: 'bpm': 0.5 is out of range; expected a number in 1..1000" },
        { "bpm: 120\nkeyframes:\n  - prompt: a\n    beats: -1\n  - b\n", "beats.yaml:4:12: 'beats'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sdm_error err;
        sdm_recipe *r = load(cases[i].text, &err);
        CHECK(r == NULL);
        CHECK_INT(err.code, SDM_EXIT_USAGE);
        CHECK_CONTAINS(err.msg, cases[i].msg);
        sdm_recipe_free(&r);
    }
}

int main(void)
{
    test_90_bpm_loop();
    test_no_drift();
    test_hold_and_pingpong();
    test_refusals();
    return test_report();
}
