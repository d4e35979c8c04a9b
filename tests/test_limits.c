/* `check` and `render` agree on every limit: each boundary value, on both
 * sides, goes to both commands with the same options, and both give the
 * same exit status (0 renders, 2 refused as usage, 1 refused as runtime:
 * model or folder). Every limit here is in recipes/README.md. A render
 * that is accepted renders on the CPU, small (a row that sets a large
 * count renders its first frame alone, --frames 0, in both commands).
 * The commands run in this process, through the same functions as
 * `sdmorph check` and `sdmorph render`. */
#include <limits.h>
#include <stdarg.h>

#include "cli_run.h"
#include "commands.h"
#include "test.h"

static char tmp[] = "/tmp/sdm-limits-XXXXXX";
static char row_dir[PATH_MAX]; /* tmp/rowN: each row's recipe and outputs */
static char model[PATH_MAX], vae16[PATH_MAX + 16], bad_betas[PATH_MAX + 16], ddpm[PATH_MAX + 16],
    bad_spacing[PATH_MAX + 16];

typedef struct {
    const char *what; /* the limit, for the table */
    const char *keys; /* recipe keys; width 64, height 64, steps 2, frames 2 unless given */
    const char *body; /* keyframes or walk; NULL: two keyframes */
    const char *out; /* the output in the row's folder, or @special (below); given in
                               the recipe's output: list, except @16 and @17 (-o) */
    const char *args[4]; /* more options for both commands */
    int want; /* exit status of both */
} limit_row;

#define ONE "--frames", "0"
#define ELEVEN                                                                                        \
    "keyframes:\n  - prompt: k0\n    frames: 99999\n  - k1\n  - k2\n  - k3\n  - k4\n  - k5\n  - k6\n" \
    "  - k7\n  - k8\n  - k9\n  - k10\n"

static const limit_row rows[] = {
    { "width", "width: 56\n", NULL, "t.mp4", { 0 }, 2 },
    { "width", "width: 64\n", NULL, "t.mp4", { 0 }, 0 },
    { "width", "width: 4096\n", NULL, "t.mp4", { 0 }, 0 },
    { "width", "width: 4104\n", NULL, "t.mp4", { 0 }, 2 },
    { "width, a multiple of 8", "width: 68\n", NULL, "t.mp4", { 0 }, 2 },
    { "height", "height: 56\n", NULL, "t.mp4", { 0 }, 2 },
    { "height", "height: 4096\n", NULL, "t.mp4", { 0 }, 0 },
    { "height", "height: 4104\n", NULL, "t.mp4", { 0 }, 2 },
    { "size, a multiple of the model's VAE scale (16)", "width: 72\nmodel: @vae16\n", NULL, "t.mp4", { 0 }, 2 },
    { "steps", "steps: 0\n", NULL, "t.mp4", { 0 }, 2 },
    { "steps", "steps: 1\n", NULL, "t.mp4", { 0 }, 0 },
    { "steps, ddim: train_steps - steps_offset", "steps: 999\n", NULL, "t.mp4", { ONE }, 0 },
    { "steps, ddim: train_steps - steps_offset", "steps: 1000\n", NULL, "t.mp4", { ONE }, 2 },
    { "steps, euler: train_steps", "steps: 1000\nsampler: euler\n", NULL, "t.mp4", { ONE }, 0 },
    { "steps", "steps: 1001\nsampler: euler\n", NULL, "t.mp4", { ONE }, 2 },
    { "steps, euler_a: train_steps", "steps: 1000\nsampler: euler_a\n", NULL, "t.mp4", { ONE }, 0 },
    { "steps, dpmpp_2m: train_steps - 1", "steps: 999\nsampler: dpmpp_2m\n", NULL, "t.mp4", { ONE }, 0 },
    { "steps, dpmpp_2m: train_steps - 1", "steps: 1000\nsampler: dpmpp_2m\n", NULL, "t.mp4", { ONE }, 2 },
    { "guidance", "guidance: -0.1\n", NULL, "t.mp4", { 0 }, 2 },
    { "guidance", "guidance: 0\n", NULL, "t.mp4", { 0 }, 0 },
    { "guidance", "guidance: 100\n", NULL, "t.mp4", { 0 }, 0 },
    { "guidance", "guidance: 100.1\n", NULL, "t.mp4", { 0 }, 2 },
    { "keyframe guidance", "", "keyframes:\n  - prompt: a\n    guidance: 100.5\n  - b\n", "t.mp4", { 0 }, 2 },
    { "seed", "seed: -1\n", NULL, "t.mp4", { 0 }, 2 },
    { "seed", "seed: 0\n", NULL, "t.mp4", { 0 }, 0 },
    { "seed", "seed: 18446744073709551615\n", NULL, "t.mp4", { 0 }, 0 },
    { "seed", "seed: 18446744073709551616\n", NULL, "t.mp4", { 0 }, 2 },
    { "fps", "fps: 1e-300\n", NULL, "t.mp4", { 0 }, 2 },
    { "fps", "fps: 0.0009\n", NULL, "t.mp4", { 0 }, 2 },
    { "fps", "fps: 0.001\n", NULL, "t.mp4", { 0 }, 0 },
    { "fps", "fps: 240\n", NULL, "t.mp4", { 0 }, 0 },
    { "fps", "fps: 240.1\n", NULL, "t.mp4", { 0 }, 2 },
    { "fps of a GIF: as low as an MP4's", "fps: 0.0009\n", NULL, "t.gif", { 0 }, 2 },
    { "fps of a GIF: as low as an MP4's", "fps: 0.001\n", NULL, "t.gif", { 0 }, 0 },
    { "fps of a GIF: as low as an MP4's", "fps: 0.0015259\n", NULL, "t.gif", { 0 }, 0 },
    { "fps of a GIF: at most 50", "fps: 50\n", NULL, "t.gif", { 0 }, 0 },
    { "fps of a GIF: at most 50", "fps: 50.01\n", NULL, "t.gif", { 0 }, 2 },
    { "fps of an MP4 above 50", "fps: 60\n", NULL, "t.mp4", { 0 }, 0 },
    { "eta", "eta: -0.1\n", NULL, "t.mp4", { 0 }, 2 },
    { "eta", "eta: 1\n", NULL, "t.mp4", { 0 }, 0 },
    { "eta", "eta: 1.01\n", NULL, "t.mp4", { 0 }, 2 },
    { "eta, ddim only", "eta: 0.5\nsampler: euler\n", NULL, "t.mp4", { 0 }, 2 },
    { "karras: samplers that take it", "karras: true\n", NULL, "t.mp4", { 0 }, 2 },
    { "karras: samplers that take it", "karras: true\nsampler: euler\n", NULL, "t.mp4", { 0 }, 0 },
    { "karras: samplers that take it", "karras: true\nsampler: euler_a\n", NULL, "t.mp4", { 0 }, 2 },
    { "karras: samplers that take it", "karras: true\nsampler: dpmpp_2m\n", NULL, "t.mp4", { 0 }, 0 },
    { "sampler", "sampler: euler_b\n", NULL, "t.mp4", { 0 }, 2 },
    { "sampler", "sampler: DPM++ 2M SDE Karras\n", NULL, "t.mp4", { 0 }, 0 },
    { "sampler: pndm at most 999 steps", "sampler: pndm\nsteps: 999\n", NULL, "t.mp4", { 0 }, 0 },
    { "sampler: pndm at most 999 steps", "sampler: pndm\nsteps: 1000\n", NULL, "t.mp4", { 0 }, 2 },
    { "sampler: lcm at most 50 steps", "sampler: lcm\nsteps: 51\n", NULL, "t.mp4", { 0 }, 2 },
    { "timestep_spacing", "timestep_spacing: trailing\nsampler: euler\n", NULL, "t.mp4", { 0 }, 0 },
    { "guidance_rescale", "guidance_rescale: 1\n", NULL, "t.mp4", { 0 }, 0 },
    { "guidance_rescale", "guidance_rescale: 1.01\n", NULL, "t.mp4", { 0 }, 2 },
    { "batch", "batch: -1\n", NULL, "t.mp4", { 0 }, 2 },
    { "batch", "batch: 1024\n", NULL, "t.mp4", { 0 }, 0 },
    { "batch", "batch: 1025\n", NULL, "t.mp4", { 0 }, 2 },
    { "frames", "frames: 0\n", NULL, "t.mp4", { 0 }, 2 },
    { "frames", "frames: 1\n", NULL, "t.mp4", { 0 }, 0 },
    { "frames", "frames: 100000\n", NULL, "t.mp4", { ONE }, 0 },
    { "frames", "frames: 100001\n", NULL, "t.mp4", { ONE }, 2 },
    { "hold", "hold: -1\n", NULL, "t.mp4", { 0 }, 2 },
    { "hold", "hold: 100000\n", NULL, "t.mp4", { ONE }, 0 },
    { "hold", "hold: 100001\n", NULL, "t.mp4", { ONE }, 2 },
    { "frames shown: 1,000,000", "frames: 100000\n", ELEVEN, "t.mp4", { ONE }, 0 },
    { "frames shown: 1,000,000", "frames: 100000\nhold: 1\n", ELEVEN, "t.mp4", { ONE }, 2 },
    { "loop: cycle, 2 keyframes", "loop: cycle\n", "keyframes: [a]\n", "t.mp4", { 0 }, 2 },
    { "loop: cycle, 2 keyframes", "loop: cycle\n", NULL, "t.mp4", { 0 }, 0 },
    { "walk sigma", "", "walk:\n  prompt: a\n  sigma: 10\n", "t.mp4", { 0 }, 0 },
    { "walk sigma", "", "walk:\n  prompt: a\n  sigma: 10.1\n", "t.mp4", { 0 }, 2 },
    { "walk anchor", "", "walk:\n  prompt: a\n  anchor: 1\n", "t.mp4", { 0 }, 0 },
    { "walk anchor", "", "walk:\n  prompt: a\n  anchor: 1.1\n", "t.mp4", { 0 }, 2 },
    { "walk frames", "", "walk:\n  prompt: a\n  frames: 100000\n", "t.mp4", { ONE }, 0 },
    { "walk frames", "", "walk:\n  prompt: a\n  frames: 100001\n", "t.mp4", { ONE }, 2 },
    { "--frames: frames shown", "", NULL, "t.mp4", { "--frames", "2" }, 0 },
    { "--frames: frames shown", "", NULL, "t.mp4", { "--frames", "3" }, 2 },
    { "--frames: frames shown", "", NULL, "t.mp4", { "--frames", "18446744073709551617" }, 2 },
    { "outputs (-o)", "", NULL, "@16", { 0 }, 0 },
    { "outputs (-o)", "", NULL, "@17", { 0 }, 2 },
    { "outputs (output:)", "", NULL, "@recipe16", { 0 }, 0 },
    { "outputs (output:)", "", NULL, "@recipe17", { 0 }, 2 },
    { "output format", "", NULL, "t.mkv", { 0 }, 2 },
    { "contact sheet format", "contact_sheet: @tmp/s.jpg\n", NULL, "@recipe1", { 0 }, 2 },
    { "contact sheet format", "contact_sheet: @tmp/s.png\n", NULL, "@recipe1", { 0 }, 0 },
    { "output: not a folder", "", NULL, "@dir", { 0 }, 2 },
    { "steps (--steps)", "", NULL, "t.mp4", { "--steps", "0" }, 2 },
    { "steps (--steps)", "", NULL, "t.mp4", { "--steps", "1" }, 0 },
    { "size (--size)", "", NULL, "t.mp4", { "--size", "64x56" }, 2 },
    { "size (--size)", "", NULL, "t.mp4", { "--size", "64x72" }, 0 },
    { "fps (--set)", "", NULL, "t.mp4", { "--set", "fps=0.0009" }, 2 },
    { "fps (--set)", "", NULL, "t.mp4", { "--set", "fps=0.001" }, 0 },
    { "stills: at most 100", "frames: 99\n", NULL, "s.png", { 0 }, 0 },
    { "stills: at most 100", "frames: 100\n", NULL, "s.png", { 0 }, 2 },
    { "output: a missing folder is made", "", NULL, "@missing", { 0 }, 0 },
    { "output: its folder is a folder", "", NULL, "@underfile", { 0 }, 1 },
    { "output: one file once", "", NULL, "@twice", { 0 }, 2 },
    { "output path: 4072 bytes (its sidecar 4073)", "", NULL, "@path4072", { 0 }, 0 },
    { "output path: 4072 bytes (its sidecar 4073)", "", NULL, "@path4073", { 0 }, 2 },
    { "output name: 254 bytes (its sidecar 255)", "", NULL, "@name254", { 0 }, 0 },
    { "output name: 254 bytes (its sidecar 255)", "", NULL, "@name255", { 0 }, 2 },
    { "model.yaml: beta_start below beta_end", "model: @bad_betas\n", NULL, "t.mp4", { 0 }, 1 },
    { "model.yaml: timestep_spacing", "model: @bad_spacing\n", NULL, "t.mp4", { 0 }, 1 },
    { "auto: a scheduler sdmorph has", "model: @ddpm\n", NULL, "t.mp4", { 0 }, 2 },
    { "auto: a scheduler sdmorph has", "model: @ddpm\nsampler: euler\n", NULL, "t.mp4", { 0 }, 0 },
    { "model: found", "model: /nonexistent/model\n", NULL, "t.mp4", { 0 }, 1 },
    { "model: found (--model)", "", NULL, "t.mp4", { "--model", "/nonexistent/model" }, 1 },
};

static char *dup_at(const char *name)
{
    char *p = malloc(strlen(row_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", row_dir, name);
    return p;
}

/* An output path of exactly n bytes in the row's folder: ./ padding, then a name. */
static char *path_of(size_t n)
{
    char *p = malloc(n + 1);
    size_t len = (size_t)sprintf(p, "%s/", row_dir);

    while (len + 2 + 6 <= n) {
        memcpy(p + len, "./", 2);
        len += 2;
    }
    memset(p + len, 'p', n - len - 4);
    memcpy(p + n - 4, ".mp4", 5);
    return p;
}

static char *name_of(size_t n)
{
    char name[300];

    memset(name, 'n', n - 4);
    strcpy(name + n - 4, ".mp4");
    return dup_at(name);
}

/* The row's outputs as -o options (or as the recipe's output: list). */
static int row_outputs(const limit_row *row, char **o, char *list, size_t list_len)
{
    int n = 0, count = 1, in_recipe = strcmp(row->out, "@16") && strcmp(row->out, "@17");

    if (!strncmp(row->out, "@recipe", 7) || !in_recipe)
        count = atoi(row->out + (in_recipe ? 7 : 1));
    if (!strcmp(row->out, "@dir"))
        o[n++] = dup_at("dir.mp4");
    else if (!strcmp(row->out, "@missing"))
        o[n++] = dup_at("nofolder/deeper/t.mp4");
    else if (!strcmp(row->out, "@underfile"))
        o[n++] = dup_at("afile/t.mp4");
    else if (!strcmp(row->out, "@twice")) {
        o[n++] = dup_at("t.mp4");
        o[n++] = dup_at("./t.mp4");
    } else if (!strncmp(row->out, "@path", 5))
        o[n++] = path_of((size_t)atoi(row->out + 5));
    else if (!strncmp(row->out, "@name", 5))
        o[n++] = name_of((size_t)atoi(row->out + 5));
    else if (row->out[0] == '@') {
        for (int i = 0; i < count; i++) {
            char name[32];
            snprintf(name, sizeof name, "o%d.mp4", i);
            o[n++] = dup_at(name);
        }
    } else
        o[n++] = dup_at(row->out);
    list[0] = '\0';
    if (in_recipe) {
        snprintf(list, list_len, "output:\n");
        for (int i = 0; i < n; i++) {
            snprintf(list + strlen(list), list_len - strlen(list), "  - %s\n", o[i]);
            free(o[i]);
        }
        return 0;
    }
    return n;
}

/* key ("width:") starts a line of keys */
static int has_key(const char *keys, const char *key)
{
    const char *hit = strstr(keys, key);
    return hit && (hit == keys || hit[-1] == '\n');
}

/* The recipe text: the row's keys, the defaults it does not set, the body. */
static void row_recipe(const limit_row *row, const char *list, char *text, size_t len)
{
    static const char *const defaults[] = { "width: 64\n", "height: 64\n", "steps: 2\n", "frames: 2\n" };
    const char *keys = row->keys;

    /* @tmp, @vae16, ...: the row's folder, the bundles made for the table */
    const struct {
        const char *token, *with;
    } subst[] = { { "@tmp", row_dir },
                  { "@vae16", vae16 },
                  { "@bad_betas", bad_betas },
                  { "@ddpm", ddpm },
                  { "@bad_spacing", bad_spacing } };

    text[0] = '\0';
    for (const char *k = keys; *k;) {
        size_t n = strlen(text), i = 0;
        while (i < sizeof subst / sizeof *subst && strncmp(k, subst[i].token, strlen(subst[i].token)))
            i++;
        if (i < sizeof subst / sizeof *subst) {
            snprintf(text + n, len - n, "%s", subst[i].with);
            k += strlen(subst[i].token);
        } else {
            snprintf(text + n, len - n, "%c", *k++);
        }
    }
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        char key[16];
        snprintf(key, sizeof key, "%.*s", (int)(strchr(defaults[i], ':') - defaults[i] + 1), defaults[i]);
        if (!has_key(keys, key))
            snprintf(text + strlen(text), len - strlen(text), "%s", defaults[i]);
    }
    snprintf(text + strlen(text), len - strlen(text), "%s%s", list, row->body ? row->body : "keyframes: [a, b]\n");
}

/* One command on the row, check or render with the same options, run as
 * sdmorph runs it (cli/cmd_*.c) but in this process: a command started
 * anew would spend half a second starting libtorch, a minute for the table.
 * Its stdout and stderr go to out. */
static int run_row(const limit_row *row, const char *recipe, char **o, int n_out, int render, char *out, size_t len)
{
    char *argv[64], log[PATH_MAX + 16], *text;
    int n = 0, rc, fd, saved_out, saved_err;

    argv[n++] = render ? "render" : "check";
    argv[n++] = (char *)recipe;
    for (int i = 0; i < 4 && row->args[i]; i++)
        argv[n++] = (char *)row->args[i];
    for (int i = 0; i < n_out; i++) {
        argv[n++] = "-o";
        argv[n++] = o[i];
    }
    argv[n++] = "-q";
    if (render) {
        argv[n++] = "--device";
        argv[n++] = "cpu";
    }
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/command.log", tmp);
    fflush(NULL);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    saved_out = dup(1);
    saved_err = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    rc = render ? sdm_cmd_render(n, argv) : sdm_cmd_check(n, argv);
    fflush(NULL);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    text = slurp_file(log, NULL);
    snprintf(out, len, "%s", text ? text : "");
    free(text);
    return rc;
}

/* A bundle: the analytic one's files, model.yaml with `from` replaced by `to`. */
static void bundle(char *dir, const char *from, const char *to)
{
    static const char *files[] = { "text_encoder.pt", "unet.pt",    "vae_decoder.pt",
                                   "vocab.json",      "merges.txt", "token_embedding.safetensors",
                                   "vae_encoder.pt" };
    char src[PATH_MAX + 32], dst[PATH_MAX + 32];
    long n;
    char *yaml, *hit;
    FILE *f;

    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(src, sizeof src, "%s/%s", model, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        symlink(src, dst);
    }
    snprintf(src, sizeof src, "%s/model.yaml", model);
    yaml = slurp_file(src, &n);
    hit = yaml ? strstr(yaml, from) : NULL;
    snprintf(dst, sizeof dst, "%s/model.yaml", dir);
    f = fopen(dst, "wb");
    if (f && hit)
        fprintf(f, "%.*s%s%s", (int)(hit - yaml), yaml, to, hit + strlen(from));
    if (f)
        fclose(f);
    CHECK(hit != NULL);
    free(yaml);
}

/* Runs row i in its own folder: the exit status of check and of render,
 * what they said in out. */
static void run_one(size_t i, int *rc_c, int *rc_r, char *out, size_t len)
{
    const limit_row *row = &rows[i];
    char recipe[PATH_MAX + 16], text[8192], list[4096], out_c[4096], out_r[4096], *o[20];
    int n_out;

    snprintf(row_dir, sizeof row_dir, "%s/row%zu", tmp, i);
    mkdir(row_dir, 0755);
    snprintf(recipe, sizeof recipe, "%s/dir.mp4", row_dir);
    mkdir(recipe, 0755);
    snprintf(recipe, sizeof recipe, "%s/afile", row_dir);
    write_file(recipe, "a file, not a folder");
    snprintf(recipe, sizeof recipe, "%s/limit.yaml", row_dir);
    n_out = row_outputs(row, o, list, sizeof list);
    row_recipe(row, list, text, sizeof text);
    write_file(recipe, text);
    *rc_c = run_row(row, recipe, o, n_out, 0, out_c, sizeof out_c);
    *rc_r = run_row(row, recipe, o, n_out, 1, out_r, sizeof out_r);
    snprintf(out, len, "check said: %s      render said: %s", out_c, out_r);
    for (int k = 0; k < n_out; k++)
        free(o[k]);
}

int main(void)
{
    size_t n = sizeof rows / sizeof *rows;
    int agree = 0;

    if (cli_test_setup(model, tmp))
        return test_report();
    snprintf(vae16, sizeof vae16, "%s/vae16", tmp);
    bundle(vae16, "vae_scale: 8", "vae_scale: 16");
    snprintf(bad_betas, sizeof bad_betas, "%s/betas", tmp);
    bundle(bad_betas, "beta_start: 0.00085", "beta_start: 0.5");
    snprintf(ddpm, sizeof ddpm, "%s/ddpm", tmp);
    bundle(ddpm, "scheduler: DDIMScheduler", "scheduler: DDPMScheduler");
    snprintf(bad_spacing, sizeof bad_spacing, "%s/spacing", tmp);
    bundle(bad_spacing, "scheduler: DDIMScheduler", "scheduler: DDIMScheduler\n  timestep_spacing: even");

    printf("%-48s %-28s %5s %6s\n", "limit", "value", "check", "render");
    for (size_t i = 0; i < n; i++) {
        const limit_row *row = &rows[i];
        char value[64], said[8400];
        int rc_c, rc_r;

        run_one(i, &rc_c, &rc_r, said, sizeof said);
        snprintf(value, sizeof value, "%s%s%s %s %s", row->keys, row->body && !*row->keys ? row->body : "",
                 *row->keys || row->body ? "" : row->out, row->args[0] ? row->args[0] : "",
                 row->args[1] ? row->args[1] : "");
        for (char *c = value; *c; c++)
            *c = *c == '\n' ? ' ' : *c;
        printf("%-48s %-28.28s %5d %6d\n", row->what, value, rc_c, rc_r);
        CHECK_INT(rc_c, row->want);
        CHECK_INT(rc_r, row->want);
        if (rc_c != row->want || rc_r != row->want)
            fprintf(stderr, "row %zu (%s): %s\n", i, row->what, said);
        agree += rc_c == rc_r;
    }
    printf("check and render agree on %d of %zu boundary values\n", agree, n);
    CHECK_INT(agree, (int)n);
    return test_report();
}
