/* sdmorph bridge: between two example recipes it starts on the first
 * one's first frame and ends on the second one's, bit for bit (each
 * rendered alone with --frames 0); --beats counts at the recipes' bpm; a
 * walk, another size or sampler, another model are refused clearly. */
#include <limits.h>
#include <stdint.h>

#include "cli_run.h"
#include "test.h"

static char tmp[] = "/tmp/sdm_bridge_XXXXXX";
#define FRAME_BYTES ((size_t)512 * 512 * 3)

static uint8_t *frames_of(const char *name, long *n)
{
    char path[PATH_MAX + 64];

    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return slurp_frames(path, FRAME_BYTES, n);
}

static void test_bridge_examples(void)
{
    char a_out[PATH_MAX + 64], b_out[PATH_MAX + 64], br_out[PATH_MAX + 64], out[16384];
    char *first_a[] = { "sdmorph", "render", "recipes/face-morph.yaml", "--frames", "0", "-o", a_out, "--device", "cpu",
                        "-q",      NULL };
    char *first_b[] = { "sdmorph", "render", "recipes/pingpong.yaml", "--frames", "0", "-o", b_out, "--device", "cpu",
                        "-q",      NULL };
    char *bridge[] = { "sdmorph",
                       "bridge",
                       "recipes/face-morph.yaml",
                       "recipes/pingpong.yaml",
                       "--frames",
                       "4",
                       "-o",
                       br_out,
                       "--device",
                       "cpu",
                       "-q",
                       NULL };
    uint8_t *a, *b, *br;
    long na, nb, nbr;

    snprintf(a_out, sizeof a_out, "%s/a.rgb", tmp);
    snprintf(b_out, sizeof b_out, "%s/b.rgb", tmp);
    snprintf(br_out, sizeof br_out, "%s/bridge.rgb", tmp);
    CHECK_INT(run(first_a, out, sizeof out, NULL), 0);
    CHECK_INT(run(first_b, out, sizeof out, NULL), 0);
    CHECK_INT(run(bridge, out, sizeof out, NULL), 0);
    a = frames_of("a.rgb", &na);
    b = frames_of("b.rgb", &nb);
    br = frames_of("bridge.rgb", &nbr);
    CHECK_INT(na, 1);
    CHECK_INT(nb, 1);
    CHECK_INT(nbr, 5);
    if (na == 1 && nb == 1 && nbr == 5) {
        CHECK(memcmp(br, a, FRAME_BYTES) == 0);
        CHECK(memcmp(br + 4 * FRAME_BYTES, b, FRAME_BYTES) == 0);
        CHECK(memcmp(br + 2 * FRAME_BYTES, a, FRAME_BYTES) != 0);
        CHECK(memcmp(a, b, FRAME_BYTES) != 0);
    }
    free(a);
    free(b);
    free(br);
}

static void test_beats_and_refusals(const char *model)
{
    char a[PATH_MAX + 64], b[PATH_MAX + 64], other[PATH_MAX + 64], o[PATH_MAX + 64], text[2 * PATH_MAX], out[16384];
    char *beats[] = { "sdmorph", "bridge", a, b, "--beats", "2", "-o", o, "--device", "cpu", "-q", NULL };
    static char *const refusals[][9] = {
        { "sdmorph", "bridge", "recipes/demo.yaml", "recipes/face-morph.yaml", "-o", NULL },
        { "sdmorph", "bridge", "recipes/face-morph.yaml", "recipes/city-forest.yaml", "-o", NULL },
        { "sdmorph", "bridge", "recipes/technopriest-walk.yaml", "recipes/pingpong.yaml", "-o", NULL },
        { "sdmorph", "bridge", "recipes/face-morph.yaml", "recipes/pingpong.yaml", "--beats", "2", "-o", NULL },
        { "sdmorph", "bridge", "A", "B", "--beats", "2", "--frames", "3", "-o" },
        { "sdmorph", "bridge", "A", "B", NULL },
        { "sdmorph", "bridge", "A", "OTHER", "-o", NULL },
    };
    static const char *const messages[] = { "differ in size (width, height)",
                                            "differ in sampler",
                                            "is a walk",
                                            "--beats needs a bpm",
                                            "--frames and --beats together",
                                            "at least one -o OUT",
                                            "a bridge needs one model" };
    long n;
    uint8_t *f;

    snprintf(a, sizeof a, "%s/a.yaml", tmp);
    snprintf(b, sizeof b, "%s/b.yaml", tmp);
    snprintf(other, sizeof other, "%s/other.yaml", tmp);
    snprintf(o, sizeof o, "%s/beats.rgb", tmp);
    snprintf(text, sizeof text,
             "model: %s\nwidth: 64\nheight: 64\nsteps: 4\nbpm: 120\nfps: 12\nkeyframes:\n"
             "  - a quiet lake\n  - a storm\n",
             model);
    write_file(a, text);
    snprintf(text, sizeof text, "model: %s\nwidth: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - a forest\n", model);
    write_file(b, text);
    snprintf(text, sizeof text, "model: %s-v\nwidth: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - a forest\n", model);
    write_file(other, text);
    CHECK_INT(run(beats, out, sizeof out, NULL), 0);
    f = (uint8_t *)slurp_file(o, &n);
    CHECK_INT(n, 13L * 64 * 64 * 3); /* 2 beats at 120 bpm and 12 fps: 12 frames, then B's first */
    free(f);
    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++) {
        char *argv[12];
        int n_args = 0;
        for (int k = 0; k < 9 && refusals[i][k]; k++) {
            const char *v = refusals[i][k];
            argv[n_args++] = !strcmp(v, "A") ? a : !strcmp(v, "B") ? b : !strcmp(v, "OTHER") ? other : (char *)v;
            if (!strcmp(v, "-o"))
                argv[n_args++] = o;
        }
        argv[n_args] = NULL;
        CHECK_INT(run(argv, out, sizeof out, NULL), 2);
        CHECK_CONTAINS(out, messages[i]);
    }
}

/* A recipe with its own embeddings folder: the bridge keeps a copy of its
 * own (once it shared the first recipe's string and freed it twice). */
static void test_bridge_embeddings(const char *model)
{
    char a[PATH_MAX + 64], b[PATH_MAX + 64], emb[PATH_MAX + 64], o[PATH_MAX + 64], text[2 * PATH_MAX], out[16384];
    char *bridge[] = { "sdmorph", "bridge", a, b, "--frames", "2", "-o", o, "--device", "cpu", "-q", NULL };
    long n;
    char *f;

    snprintf(a, sizeof a, "%s/emb-a.yaml", tmp);
    snprintf(b, sizeof b, "%s/emb-b.yaml", tmp);
    snprintf(emb, sizeof emb, "%s/embeddings", tmp);
    snprintf(o, sizeof o, "%s/emb.rgb", tmp);
    mkdir(emb, 0755);
    snprintf(text, sizeof text,
             "model: %s\nembeddings: embeddings\nwidth: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - a quiet lake\n",
             model);
    write_file(a, text);
    snprintf(text, sizeof text,
             "model: %s\nembeddings: embeddings\nwidth: 64\nheight: 64\nsteps: 4\nkeyframes:\n  - a forest\n", model);
    write_file(b, text);
    CHECK_INT(run(bridge, out, sizeof out, NULL), 0);
    f = slurp_file(o, &n);
    CHECK_INT(n, 3L * 64 * 64 * 3);
    free(f);
}

int main(void)
{
    char path[PATH_MAX], model[PATH_MAX];

    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/models/analytic", test_build_dir());
    if (!file_exists(test_sdmorph()) || !realpath(getenv("SDMORPH_MODEL") ? getenv("SDMORPH_MODEL") : path, model)) {
        SKIP("./sdmorph or the analytic bundle not built (run make first)");
    } else {
        setenv("SDMORPH_MODEL", model, 1);
        test_beats_and_refusals(model);
        test_bridge_examples();
        test_bridge_embeddings(model);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    if (system(path))
        fprintf(stderr, "could not remove %s\n", tmp);
    return test_report();
}
