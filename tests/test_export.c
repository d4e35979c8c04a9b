/* What a bundle says it was exported from (model.yaml's source: section,
 * read by src/bundle.c and printed for people), and the exporter's CPU
 * checks (tests/export_checks.py: refused pickles run nothing, LoRA
 * fusion in both layouts), with the machine's own python3 and torch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "test.h"

static char tmpdir[] = "/tmp/sdm_export_XXXXXX";

static const char *BASE_YAML =
    "format: 1\nfamily: sd1\nprediction: epsilon\ndtype: float32\nlatent_channels: 4\nvae_scale: 8\n"
    "scaling_factor: 0.18215\nwidth: 512\nheight: 512\n"
    "text:\n  token_length: 77\n  hidden_size: 768\n  bos_id: 49406\n  eos_id: 49407\n  pad_id: 49407\n"
    "schedule:\n  train_steps: 1000\n  beta_start: 0.00085\n  beta_end: 0.012\n  beta_schedule: scaled_linear\n"
    "files:\n  text_encoder: te.pt\n  unet: unet.pt\n  vae_decoder: vae.pt\n  vocab: vocab.json\n"
    "  merges: merges.txt\n";

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A bundle directory whose model.yaml is BASE_YAML + extra. */
static void make_bundle(const char *name, const char *extra, char *dir, size_t len)
{
    const char *files[] = { "te.pt", "unet.pt", "vae.pt", "vocab.json", "merges.txt" };
    char yaml[4096];

    snprintf(dir, len, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    snprintf(yaml, sizeof yaml, "%s%s", BASE_YAML, extra);
    write_file(dir, "model.yaml", yaml);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        write_file(dir, files[i], "");
}

static void test_source(void)
{
    char dir[600], printed[2048] = "";
    sdm_bundle b;
    sdm_error err = { 0 };
    FILE *f;

    make_bundle("with-source",
                "source:\n  exporter: \"export_sd.py 2\"\n"
                "  checkpoint: \"dream: #8.safetensors\"\n  checkpoint_sha256: \"0123abcd\"\n"
                "  vae: \"ft-mse.vae.pt\"\n  vae_sha256: \"feed\"\n"
                "  loras:\n    - file: \"ink.safetensors\"\n      scale: 0.8\n      sha256: \"aa\"\n"
                "    - file: \"fog.safetensors\"\n      scale: -1.5\n      sha256: \"bb\"\n",
                dir, sizeof dir);
    CHECK_INT(sdm_bundle_load(dir, &b, &err), 0);
    if (err.code)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_STR(b.source.exporter, "export_sd.py 2");
    CHECK_STR(b.source.checkpoint, "dream: #8.safetensors");
    CHECK_STR(b.source.checkpoint_sha256, "0123abcd");
    CHECK_STR(b.source.vae, "ft-mse.vae.pt");
    CHECK_INT(b.source.n_loras, 2);
    CHECK_STR(b.source.loras[1].file, "fog.safetensors");
    CHECK(b.source.loras[0].scale == 0.8 && b.source.loras[1].scale == -1.5);
    CHECK_STR(b.source.loras[1].sha256, "bb");
    f = fmemopen(printed, sizeof printed - 1, "w");
    if (f) {
        sdm_bundle_print_source(&b, f);
        fclose(f);
    }
    CHECK_STR(printed,
              "  exported by: export_sd.py 2\n"
              "  checkpoint: dream: #8.safetensors  sha256 0123abcd\n"
              "  vae: ft-mse.vae.pt  sha256 feed\n"
              "  lora: ink.safetensors at scale 0.8  sha256 aa\n"
              "  lora: fog.safetensors at scale -1.5  sha256 bb\n");

    /* older bundles have none: nothing is printed */
    make_bundle("no-source", "", dir, sizeof dir);
    CHECK_INT(sdm_bundle_load(dir, &b, &err), 0);
    CHECK_INT(b.source.n_loras, 0);
    CHECK_STR(b.source.checkpoint, "");

    /* a bad entry names file:line:col */
    make_bundle("bad-scale", "source:\n  loras:\n    - file: a\n      scale: lots\n", dir, sizeof dir);
    CHECK_INT(sdm_bundle_load(dir, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "model.yaml:30:14: source.loras: scale must be a number, not 'lots'");
    memset(&err, 0, sizeof err);
    make_bundle("bad-list", "source:\n  loras: a.safetensors\n", dir, sizeof dir);
    CHECK_INT(sdm_bundle_load(dir, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "source.loras must be a list");
}

/* tests/export_checks.py: each "ok NAME" passes, each "FAIL NAME: why" fails. */
static void test_exporter(void)
{
    const char *py = getenv("SDM_PYTHON");
    char cmd[512], line[1024];
    int ok = 0, bad = 0;
    FILE *p;

#ifdef UNDER_ASAN
    /* python3 and torch alone: nothing of ours to instrument (make test runs it) */
    SKIP("exporter checks under ASan: they run python3 only, as in make test");
    return;
#endif
    if (!py || !*py)
        py = "python3";
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' 2>/dev/null", py);
    if (system(cmd) != 0) {
        SKIP("exporter checks: no python3 with torch (apt-get install python3-torch)");
        return;
    }
    snprintf(cmd, sizeof cmd, "%s tests/export_checks.py 2>&1", py);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p)
        return;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "ok ", 3)) {
            ok++;
            test_passed++;
        } else {
            bad++;
            test_failed++;
            fprintf(stderr, "export_checks.py: %s", line);
        }
    }
    CHECK_INT(pclose(p), 0);
    printf("exporter: %d checks passed, %d failed\n", ok, bad);
    CHECK(ok >= 16);
}

/* SDXL's keys: the second encoder's come together, vae_dtype is read and
 * defaults to the bundle's dtype. */
static void test_xl_keys(void)
{
    static const char *xl =
        "text_2:\n  hidden_size: 1280\n  pad_id: 0\n  layers: 32\n  pooled_size: 1280\n"
        "force_zeros_for_empty_prompt: true\nvae_dtype: float32\n";
    char dir[600], extra[1024];
    sdm_bundle b;
    sdm_error err = { 0 };

    make_bundle("plain", "", dir, sizeof dir);
    CHECK(sdm_bundle_load(dir, &b, &err) == 0);
    CHECK_STR(b.vae_dtype, "float32");
    CHECK(!sdm_bundle_is_xl(&b) && sdm_bundle_context_size(&b) == 768);
    /* the second encoder without its files, or the first without layers: refused */
    make_bundle("xl-no-files", xl, dir, sizeof dir);
    CHECK(sdm_bundle_load(dir, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "text_encoder_2");
    /* files: goes last in BASE_YAML, so the extra file keys join it; text.layers is missing */
    snprintf(extra, sizeof extra,
             "  text_encoder_2: te2.pt\n  token_embedding_2: tok2.safetensors\n  token_embedding: tok.safetensors\n%s",
             xl);
    make_bundle("xl-no-layers", extra, dir, sizeof dir);
    write_file(dir, "te2.pt", "");
    write_file(dir, "tok2.safetensors", "");
    write_file(dir, "tok.safetensors", "");
    memset(&err, 0, sizeof err);
    CHECK(sdm_bundle_load(dir, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "text.layers");
    make_bundle("bad-vae-dtype", "vae_dtype: int8\n", dir, sizeof dir);
    memset(&err, 0, sizeof err);
    CHECK(sdm_bundle_load(dir, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "vae_dtype");
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_source();
    test_exporter();
    test_xl_keys();
    {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    return test_report();
}
