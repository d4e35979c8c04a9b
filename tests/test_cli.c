/* The sdmorph program as a user runs it: exit codes and messages for bad
 * recipes, Ctrl-C mid-render, memory that stays flat as frames grow. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"
#include "probe.h"
#include "test.h"

static char tmpdir[] = "/tmp/sdm-cli-XXXXXX";

/* Runs sdmorph; with dir, from there and without $SDMORPH_MODEL. */
static int run_in(const char *dir, char *const argv[], char *out, size_t outlen, long *maxrss_kb)
{
    char bin[PATH_MAX];
    int fds[2], status = 0;
    struct rusage ru;
    pid_t pid;
    size_t got = 0;
    ssize_t n;

    if (!realpath(test_sdmorph(), bin) || pipe(fds))
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        if (dir && (chdir(dir) || unsetenv("SDMORPH_MODEL")))
            _exit(126);
        execv(bin, argv);
        _exit(127);
    }
    close(fds[1]);
    while (got + 1 < outlen && (n = read(fds[0], out + got, outlen - got - 1)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(fds[0]);
    wait4(pid, &status, 0, &ru);
    if (maxrss_kb)
        *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Without --model or $SDMORPH_MODEL, from any directory: the bundle beside
 * the executable, and where there is none, an error naming that path. */
static void test_default_model(void)
{
    char bin[PATH_MAX], builtin[PATH_MAX + 32], out[8192], *slash;
    char *argv[] = { "sdmorph", "tokenize", "a city", NULL };
    struct stat st;
    int rc;

    if (!realpath(test_sdmorph(), bin))
        return;
    slash = strrchr(bin, '/');
    *slash = '\0';
    snprintf(builtin, sizeof builtin, "%s/build/models/analytic", bin);
    rc = run_in(tmpdir, argv, out, sizeof out, NULL);
    if (stat(builtin, &st) == 0) {
        CHECK_INT(rc, 0);
        CHECK(strncmp(out, "912 ", 4) == 0); /* the analytic bundle's bos, then the prompt's ids */
    } else {
        CHECK_INT(rc, 1);
        CHECK_CONTAINS(out, builtin);
    }
}

/* sdmorph samplers: every sampler with its aliases, and auto for a model. */
static void test_samplers(void)
{
    char out[16384];
    char *argv[] = { "sdmorph", "samplers", "--model", "build/models/analytic", NULL };
    char *bad[] = { "sdmorph", "samplers", "--bogus", NULL };

    CHECK_INT(run_in(".", argv, out, sizeof out, NULL), 0);
    CHECK_CONTAINS(out, "dpmpp_2m_sde\n  diffusers: DPMSolverMultistepScheduler (sde-dpmsolver++)");
    CHECK_CONTAINS(out, "\"DPM++ 2M Karras\" (karras)");
    CHECK_CONTAINS(out, "\"euler_ancestral\"");
    CHECK_CONTAINS(out, "\"uni_pc\"");
    CHECK_CONTAINS(out, "2 UNet calls a step");
    CHECK_CONTAINS(out, "auto for build/models/analytic: ddim (its scheduler: DDIMScheduler)");
    CHECK_INT(run_in(".", bad, out, sizeof out, NULL), 2);
    CHECK_CONTAINS(out, "unknown argument '--bogus'");
}

static void test_bad_recipes(void)
{
    char path[256], out[8192], want[300];

    snprintf(path, sizeof path, "%s/syntax.yaml", tmpdir);
    write_file(path, "steps: 10\nkeyframes:\n  - a city\n  - [unclosed\n");
    char *a1[] = { "sdmorph", "render", path, NULL };
    CHECK_INT(run(a1, out, sizeof out, NULL), 2);
    snprintf(want, sizeof want, "%s:5:", path);
    CHECK_CONTAINS(out, want);

    snprintf(path, sizeof path, "%s/unknown.yaml", tmpdir);
    write_file(path, "steps: 10\nguidence: 7\nkeyframes:\n  - a city\n");
    char *a2[] = { "sdmorph", "render", path, NULL };
    CHECK_INT(run(a2, out, sizeof out, NULL), 2);
    snprintf(want, sizeof want, "%s:2:1:", path);
    CHECK_CONTAINS(out, want);
    CHECK_CONTAINS(out, "guidance"); /* did you mean */

    char *a3[] = { "sdmorph", "render", NULL };
    CHECK_INT(run(a3, out, sizeof out, NULL), 2);
    char *a4[] = { "sdmorph", "render", "/nonexistent/recipe.yaml", NULL };
    CHECK_INT(run(a4, out, sizeof out, NULL), 2);
    CHECK_CONTAINS(out, "/nonexistent/recipe.yaml");
    char *a5[] = { "sdmorph", "--help", NULL };
    CHECK_INT(run(a5, out, sizeof out, NULL), 0);
    CHECK_CONTAINS(out, "render");

    /* a missing model names the path, exit 1 */
    snprintf(path, sizeof path, "%s/ok.yaml", tmpdir);
    write_file(path, "width: 64\nheight: 64\nsteps: 2\nkeyframes:\n  - a city\n");
    char *a6[] = { "sdmorph", "render", path, "--model", "/nonexistent/model", "-q", NULL };
    CHECK_INT(run(a6, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, "/nonexistent/model");
}

/* libtorch loads only for a model: the commands that need none run without
 * it (the dynamic loader's log, LD_DEBUG=files, names every file opened),
 * a render opens it, and a render whose libtorch side cannot load says
 * which file and why, exit 1, while check still works. */
static void test_lazy_torch(void)
{
    static char out[1 << 20]; /* the loader's whole log */
    char recipe[256], png[256];
    char *version[] = { "sdmorph", "--version", NULL };
    char *check[] = { "sdmorph", "check", "recipes/demo.yaml", NULL };
    char *samplers[] = { "sdmorph", "samplers", NULL };
    char *tokenize[] = { "sdmorph", "tokenize", "--tokens", "a rainy city", NULL };
    char *info[] = { "sdmorph", "info", NULL };
    char **no_model[] = { version, check, samplers, tokenize, info };

    snprintf(recipe, sizeof recipe, "%s/lazy.yaml", tmpdir);
    snprintf(png, sizeof png, "%s/lazy.png", tmpdir);
    write_file(recipe, "width: 64\nheight: 64\nsteps: 2\nkeyframes:\n  - a city\n  - a forest\n");
    char *render[] = { "sdmorph", "render", recipe, "--frames", "0", "-o", png, "-q", NULL };
    setenv("LD_DEBUG", "files", 1);
    for (size_t i = 0; i < sizeof no_model / sizeof *no_model; i++) {
        CHECK_INT(run(no_model[i], out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "file=libyaml"); /* the loader's log is there, */
        CHECK(strlen(out) < sizeof out - 1); /* whole */
        const char *hit = strstr(out, "libtorch") ? strstr(out, "libtorch") : strstr(out, "libsdm_torch");
        if (hit)
            fprintf(stderr, "sdmorph %s opened %.60s\n", no_model[i][1], hit);
        CHECK(!hit);
    }
    CHECK_INT(run(render, out, sizeof out, NULL), 0);
    CHECK_CONTAINS(out, "libsdm_torch.so");
    CHECK_CONTAINS(out, "file=libtorch");
    unsetenv("LD_DEBUG");
    CHECK(file_exists(png));

    setenv("SDM_TORCH_LIB", "/nonexistent/libsdm_torch.so", 1);
    CHECK_INT(run(render, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, "sdmorph: cannot load /nonexistent/libsdm_torch.so");
    CHECK_CONTAINS(out, "No such file or directory");
    CHECK(strstr(out, "model file") == NULL); /* said as itself, not as a module's load */
    CHECK_INT(run(check, out, sizeof out, NULL), 0);
    unsetenv("SDM_TORCH_LIB");
}

/* The first `limit` bytes of a file (all of it where limit < 0) into another. */
static void copy_head(const char *from, const char *to, long limit)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    long done = 0;

    while (in && out && (limit < 0 || done < limit) && (n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (limit >= 0 && done + (long)n > limit)
            n = (size_t)(limit - done);
        fwrite(buf, 1, n, out);
        done += (long)n;
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

/* A copy of the analytic bundle in dir, model.yaml with yaml_from replaced by yaml_to. */
static void make_bundle(const char *dir, const char *yaml_from, const char *yaml_to)
{
    CHECK_INT(bundle_variant("build/models/analytic", dir, yaml_from, yaml_to, 1), 0);
}

/* Bad bundles fail before the first frame, exit 1, naming the file. */
static void test_bad_bundles(void)
{
    static const struct {
        const char *name, *from, *to, *says, *and_says;
    } edits[] = {
        /* model.yaml disagrees with the text encoder */
        { "hidden", "hidden_size: 32", "hidden_size: 768", "token_embedding.safetensors", "[vocabulary, 768]" },
        /* a UNet whose channels do not match model.yaml */
        { "channels", "latent_channels: 4", "latent_channels: 3", "unet.pt", "channels" },
        /* an enum value model.yaml does not know: the message lists the known ones */
        { "prediction", "prediction: epsilon", "prediction: sample",
          "model.yaml:5:13: prediction must be epsilon or v_prediction, not 'sample'", "prediction" },
        { "betas", "beta_schedule: scaled_linear", "beta_schedule: cosine",
          "beta_schedule must be scaled_linear or linear, not 'cosine'", "model.yaml" },
    };
    char recipe[256], out[8192], dir[256], file[300], target[300];
    struct stat st;

    snprintf(recipe, sizeof recipe, "%s/bundle.yaml", tmpdir);
    write_file(recipe, "width: 64\nheight: 64\nsteps: 2\nkeyframes:\n  - a city\n");
    snprintf(target, sizeof target, "%s/bundle-out.mp4", tmpdir);
    char *argv[] = { "sdmorph", "render", recipe, "--model", dir, "-o", target, "-q", "--device", "cpu", NULL };

    /* a missing module file */
    snprintf(dir, sizeof dir, "%s/missing", tmpdir);
    make_bundle(dir, NULL, NULL);
    snprintf(file, sizeof file, "%s/unet.pt", dir);
    unlink(file);
    CHECK_INT(run(argv, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, file);
    CHECK_CONTAINS(out, "missing");

    /* a truncated TorchScript file */
    snprintf(dir, sizeof dir, "%s/truncated", tmpdir);
    make_bundle(dir, NULL, NULL);
    snprintf(file, sizeof file, "%s/unet.pt", dir);
    copy_head("build/models/analytic/unet.pt", file, 2000);
    CHECK_INT(run(argv, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, file);

    /* model.yaml edited: what the message says */
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        snprintf(dir, sizeof dir, "%s/%s", tmpdir, edits[i].name);
        make_bundle(dir, edits[i].from, edits[i].to);
        CHECK_INT(run(argv, out, sizeof out, NULL), 1);
        CHECK_CONTAINS(out, edits[i].says);
        CHECK_CONTAINS(out, edits[i].and_says);
    }

    /* the VAE decoder in the UNet's place */
    snprintf(dir, sizeof dir, "%s/swapped", tmpdir);
    make_bundle(dir, NULL, NULL);
    snprintf(file, sizeof file, "%s/unet.pt", dir);
    copy_head("build/models/analytic/vae_decoder.pt", file, -1);
    CHECK_INT(run(argv, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, "unet.pt");

    /* a missing model.yaml names it */
    snprintf(dir, sizeof dir, "%s/noyaml", tmpdir);
    make_bundle(dir, NULL, NULL);
    snprintf(file, sizeof file, "%s/model.yaml", dir);
    unlink(file);
    CHECK_INT(run(argv, out, sizeof out, NULL), 1);
    CHECK_CONTAINS(out, file);

    CHECK(stat(target, &st) != 0); /* nothing was rendered, nothing written */
    printf("bad bundles: last message: %s", out);
}

/* One optional AOTInductor build in model.yaml: its files: line, its
 * section (whole, and without max_batch), and what the errors name. */
typedef struct {
    const char *tag, *file_line, *shapes, *partial_shapes, *package;
    const char *no_shapes_msg, *no_file_msg, *range_msg;
} aoti_entry;

#define MERGES "  merges: merges.txt\n"
static const aoti_entry aoti_entries[] = {
    { "unet", MERGES "  unet_aoti: unet.pt2\n", "aoti:\n  latent_height: 8\n  latent_width: 8\n  max_batch: 64\n",
      "aoti:\n  latent_height: 8\n  latent_width: 8\n", "unet.pt2", "files.unet_aoti needs 'aoti.max_batch'",
      "'aoti:' given without files.unet_aoti", "aoti: shapes out of range (latent 8x8, batch 65..64)" },
    { "vae", MERGES "  vae_decoder_aoti: vae_decoder.pt2\n",
      "aoti_vae:\n  latent_height: 8\n  latent_width: 8\n  max_batch: 8\n",
      "aoti_vae:\n  latent_height: 8\n  latent_width: 8\n", "vae_decoder.pt2",
      "files.vae_decoder_aoti needs 'aoti_vae.max_batch'", "'aoti_vae:' given without files.vae_decoder_aoti",
      "aoti_vae: shapes out of range (latent 8x8, batch 65..8)" },
};

static char last_out[8192];
#define AOTI_DIR_LEN 256

/* The bundle tmpdir/aoti-TAG-CASE (its path in dir, which argv names) with
 * `yaml` in place of the merges line and, if given, a `package` file that is
 * not one: the render fails, saying `says` (the output kept in last_out). */
static void bad_aoti(char **argv, char *dir, const aoti_entry *a, const char *what, const char *yaml,
                     const char *package, const char *says)
{
    char file[300];

    snprintf(dir, AOTI_DIR_LEN, "%s/aoti-%s-%s", tmpdir, a->tag, what);
    make_bundle(dir, MERGES, yaml);
    if (package) {
        snprintf(file, sizeof file, "%s/%s", dir, package);
        write_file(file, "not a package");
    }
    CHECK_INT(run(argv, last_out, sizeof last_out, NULL), 1);
    CHECK_CONTAINS(last_out, says);
}

/* The optional AOTInductor UNet and VAE decoder: each file must exist, its
 * shapes must be given; on the CPU they are not loaded, and the TorchScript
 * modules render. */
static void test_aoti_bundles(void)
{
    char recipe[256], out[8192], dir[AOTI_DIR_LEN], file[300], target[300], yaml[512];
    struct stat st;

    snprintf(recipe, sizeof recipe, "%s/aoti.yaml", tmpdir);
    write_file(recipe, "width: 64\nheight: 64\nsteps: 2\nkeyframes:\n  - a city\n");
    snprintf(target, sizeof target, "%s/aoti-out.mp4", tmpdir);
    char *argv[] = { "sdmorph", "render", recipe, "--model", dir, "-o", target, "-q", "--device", "cpu", NULL };

    for (size_t i = 0; i < sizeof aoti_entries / sizeof *aoti_entries; i++) {
        const aoti_entry *a = &aoti_entries[i];

        /* named, but not there: the path is in the message */
        snprintf(yaml, sizeof yaml, "%s%s", a->file_line, a->shapes);
        bad_aoti(argv, dir, a, "missing", yaml, NULL, "model file missing");
        snprintf(file, sizeof file, "%s/%s", dir, a->package);
        CHECK_CONTAINS(last_out, file);
        /* there, but without all the shapes it was compiled for */
        snprintf(yaml, sizeof yaml, "%s%s", a->file_line, a->partial_shapes);
        bad_aoti(argv, dir, a, "noshapes", yaml, a->package, a->no_shapes_msg);
        /* shapes without a package */
        snprintf(yaml, sizeof yaml, "%s%s", MERGES, a->shapes);
        bad_aoti(argv, dir, a, "nofile", yaml, NULL, a->no_file_msg);
        /* a batch range that is empty */
        snprintf(yaml, sizeof yaml, "%s%s  min_batch: 65\n", a->file_line, a->shapes);
        bad_aoti(argv, dir, a, "range", yaml, a->package, a->range_msg);
    }
    CHECK(stat(target, &st) != 0);

    /* complete entries: the CPU render ignores the packages (they would not
     * even load: they are not ones) and renders with TorchScript */
    snprintf(dir, sizeof dir, "%s/aoti-cpu", tmpdir);
    snprintf(yaml, sizeof yaml, "%s  vae_decoder_aoti: vae_decoder.pt2\n%s%s", aoti_entries[0].file_line,
             aoti_entries[0].shapes, aoti_entries[1].shapes);
    make_bundle(dir, MERGES, yaml);
    snprintf(file, sizeof file, "%s/unet.pt2", dir);
    write_file(file, "not a package");
    snprintf(file, sizeof file, "%s/vae_decoder.pt2", dir);
    write_file(file, "not a package either");
    CHECK_INT(run(argv, out, sizeof out, NULL), 0);
    CHECK(stat(target, &st) == 0 && st.st_size > 0);
    CHECK(strstr(out, ".pt2") == NULL); /* not a word about them */

    /* an FP8 UNet package (export_sd.py --aoti-fp8): its scales by name, and info says so */
    snprintf(yaml, sizeof yaml, "%s%s  fp8: dynamic\n", aoti_entries[0].file_line, aoti_entries[0].shapes);
    bad_aoti(argv, dir, &aoti_entries[0], "fp8", yaml, "unet.pt2", "fp8 must be tensor, row or static, not 'dynamic'");
    snprintf(dir, sizeof dir, "%s/aoti-fp8", tmpdir);
    snprintf(yaml, sizeof yaml, "%s%s  fp8: static\n", aoti_entries[0].file_line, aoti_entries[0].shapes);
    make_bundle(dir, MERGES, yaml);
    snprintf(file, sizeof file, "%s/unet.pt2", dir);
    write_file(file, "not a package");
    {
        char *info[] = { "sdmorph", "info", dir, NULL };
        CHECK_INT(run(info, out, sizeof out, NULL), 0);
        CHECK_CONTAINS(out, "FP8 products (static scales)");
    }
    CHECK_INT(run(argv, out, sizeof out, NULL), 0);
}

static long render_rss(int frames)
{
    char path[256], out[8192], yaml[512], mp4[256];
    long rss = 0;

    snprintf(path, sizeof path, "%s/rss%d.yaml", tmpdir, frames);
    snprintf(mp4, sizeof mp4, "%s/rss%d.mp4", tmpdir, frames);
    snprintf(yaml, sizeof yaml, "width: 192\nheight: 192\nsteps: 2\nframes: %d\nkeyframes:\n  - a city\n  - a forest\n",
             frames - 1);
    write_file(path, yaml);
    char *argv[] = { "sdmorph", "render", path, "-o", mp4, "-q", "--device", "cpu", NULL };
    if (run(argv, out, sizeof out, &rss) != 0) {
        fprintf(stderr, "%s", out);
        return -1;
    }
    return rss;
}

/* Peak memory of a 200-frame render is within 10% of a 20-frame one, and
 * once the H.264 encoder's lookahead is full (about 50 frames) it does not
 * grow at all: 800 frames take what 200 take. */
static void test_flat_memory(void)
{
    long r20, r200, r800;
#ifdef UNDER_ASAN
    /* ASan's quarantine holds up to 256 MB of freed memory back from reuse,
     * so peak RSS would grow with the frames even without a leak: these
     * children run without it (the other render tests keep it). */
    const char *old = getenv("ASAN_OPTIONS");
    char *saved = old ? strdup(old) : NULL, opts[1024];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", saved ? saved : "", saved && *saved ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    r20 = render_rss(20);
    r200 = render_rss(200);
    r800 = render_rss(800);
#ifdef UNDER_ASAN
    if (saved)
        setenv("ASAN_OPTIONS", saved, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(saved);
#endif
    printf("peak RSS: 20 frames %ld kB, 200 frames %ld kB (%+.1f%%), 800 frames %ld kB (%+.1f%%)\n", r20, r200,
           r20 > 0 ? 100.0 * (r200 - r20) / r20 : 0.0, r800, r200 > 0 ? 100.0 * (r800 - r200) / r200 : 0.0);
    CHECK(r20 > 0 && r200 > 0 && r800 > 0);
    CHECK(r200 <= r20 * 1.10);
    CHECK(r800 <= r200 * 1.03);
}

/* Ctrl-C mid-render: a playable partial file, the earlier good file untouched. */
static void test_interrupt(void)
{
    char path[256], target[256], partial[256], yaml[512], log[300];
    const char *good = "an earlier good render";
    int fd;
    pid_t pid;
    sdm_probe_info info;
    sdm_error err = { 0 };
    char buf[64] = { 0 };

    snprintf(path, sizeof path, "%s/long.yaml", tmpdir);
    snprintf(target, sizeof target, "%s/long.mp4", tmpdir);
    snprintf(partial, sizeof partial, "%s/long.partial.mp4", tmpdir);
    snprintf(yaml, sizeof yaml,
             "width: 128\nheight: 128\nsteps: 30\nframes: 2000\nkeyframes:\n  - a city\n  - a forest\n");
    write_file(path, yaml);
    write_file(target, good);
    snprintf(log, sizeof log, "%s/long.log", tmpdir);
    {
        char *argv[] = { "sdmorph", "render",           path, "-o", target, "--device", "cpu", "--batch",
                         "2",       "--progress-every", "0",  NULL };
        pid = start_logged(argv, log);
    }
    /* interrupt once the first frames are shown (the log's progress line
     * says so), however long loading takes (ASan) */
    CHECK(wait_for_text(log, "sdmorph: frame 2/", 300));
    CHECK_INT(stop_with(pid, SIGINT), 130);
    fd = open(target, O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf - 1) == (ssize_t)strlen(good));
    CHECK_STR(buf, good);
    if (fd >= 0)
        close(fd);
    CHECK(sdm_probe_file(partial, NULL, NULL, 0, &info, &err) == 0);
    printf("interrupted render: %d frames in %s\n", info.frames, partial);
    CHECK(info.frames > 0 && info.frames < 2001);
    CHECK_STR(info.codec, "h264");
}

int main(void)
{
    struct stat st;

    if (stat(test_sdmorph(), &st)) {
        SKIP("./sdmorph not built");
        return test_report();
    }
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bad_recipes();
    test_default_model();
    if (stat("build/models/analytic/model.yaml", &st) == 0 || getenv("SDMORPH_MODEL")) {
        test_samplers();
        test_lazy_torch();
        test_bad_bundles();
        test_aoti_bundles();
        test_flat_memory();
        test_interrupt();
    } else {
        SKIP("no analytic bundle (run make first)");
    }
    return test_report();
}
