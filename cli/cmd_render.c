/* sdmorph render: options, model lookup, several recipes in one command
 * (one model load for the recipes that share a model and device); signals
 * and the run are run_render.h's. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "commands.h"
#include "devices.h"
#include "engine.h"
#include "overrides.h"
#include "preflight.h"
#include "recipe.h"
#include "render.h"
#include "run_render.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph render RECIPE... [options]\n"
            "  -o, --output FILE    write FILE instead of the recipe's outputs and contact sheet\n"
            "                       (repeatable; .mp4, .gif, or .png for stills: the frame shown, or one\n"
            "                       PNG per frame, numbered where the name has %%d or before .png)\n"
            "  --model DIR          model bundle (default: the recipe's model, $SDMORPH_MODEL,\n"
            "                       else the built-in synthetic analytic model)\n"
            "  --device DEV         cpu, cuda or cuda:N (default: cuda when available)\n"
            "  --devices LIST       several devices of this host, e.g. 0,1 (CUDA), all (every GPU) or cpu,cpu:\n"
            "                       an engine each, taking batches as it frees up; the same files as one\n"
            "  --batch N            frames per UNet call (default: from free GPU memory)\n"
            "  --frames LIST        render only these output frames, e.g. 37 or 0-9,20\n"
            "                       (written to NAME.frames-LIST.mp4 and .png unless -o is given)\n"
            "  --shard I/N          render only the I-th of N equal chunks of the distinct frames into a\n"
            "                       segment, NAME.shard-I-of-N.rgb (raw frames) and .json (manifest), or\n"
            "                       -o FILE.rgb; `sdmorph join` makes the outputs from all N. auto: the\n"
            "                       Slurm array task or Kubernetes Indexed Job (JOB_COMPLETION_INDEX/_COUNT)\n"
            "  --steps N, --size WxH, --seed N, --sampler NAME\n"
            "                       change the recipe's key without editing it (checked as in the file)\n"
            "  --image PATH, --strength S\n"
            "                       start every frame from a picture (PNG, JPEG, WebP), S of the schedule\n"
            "                       run from it (0..1); replaces the keyframes' own\n"
            "  --set KEY=VALUE      the same for any top-level recipe key (VALUE is YAML)\n"
            "  --threads N          CPU threads for libtorch\n"
            "  --no-cuda-graphs     run the sampling loop step by step instead of replaying it as one\n"
            "                       CUDA graph per batch shape (the default on CUDA where the build has them)\n"
            "  --cudnn-benchmark    let cuDNN time its convolution algorithms and keep the fastest: faster,\n"
            "                       but two runs may then differ in the last bits of some pixels\n"
            "  --no-aoti            TorchScript modules only, even where the model has AOTInductor builds\n"
            "  --timings            wait for the device after each batch's sampling and its decode, and say\n"
            "                       how long each took (ms a step, ms a frame), where the loading went, and\n"
            "                       on CUDA the most device memory in use; the render runs a little slower\n"
            "  --json               print each recipe's stats and files as JSON on stdout\n"
            "  --progress-every S   when stderr is not a terminal, a progress line every S seconds (5)\n"
            "  -q, --quiet          no progress\n"
            "Several recipes render in turn, each model loaded once; one that fails does not stop the\n"
            "others, and a table says which failed.\n"
            "Exit status: 0 done, 1 runtime failure, 2 bad usage or recipe (with several recipes, the\n"
            "first failure's), 130 interrupted (Ctrl-C, SIGTERM or SIGHUP: a playable\n"
            "NAME.partial.mp4 holds the frames done).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double lo, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > 86400)
        return -1;
    *out = v;
    return 0;
}

/* "0,1", "cuda:0,cuda:1", "cpu,cpu" or "all" (every CUDA device); the
 * count, or -1 (said). */
static int parse_devices(const char *list, sdm_device *devs)
{
    char buf[1024], *save = NULL, name[64];
    int n = 0, cuda = sdm_cuda_device_count();

    if (!strcmp(list, "all")) {
        if (cuda < 1) {
            fprintf(stderr,
                    "sdmorph render: --devices all: no CUDA device (this libtorch has no CUDA or no GPU is "
                    "visible)\n");
            return -1;
        }
        for (; n < cuda && n < SDM_MAX_DEVICES; n++)
            devs[n] = (sdm_device){ SDM_DEVICE_CUDA, n };
        return n;
    }
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        snprintf(name, sizeof name, "%s%s", strspn(t, "0123456789") == strlen(t) ? "cuda:" : "", t);
        if (n == SDM_MAX_DEVICES || sdm_device_from_str(name, &devs[n])) {
            fprintf(stderr, "sdmorph render: --devices: '%s' is not a device (cpu, N or cuda:N; at most %d)\n", t,
                    SDM_MAX_DEVICES);
            return -1;
        }
        if (devs[n].type == SDM_DEVICE_CUDA && devs[n].index >= cuda) {
            fprintf(stderr, "sdmorph render: --devices: %s is not available (%d CUDA devices)\n", name, cuda);
            return -1;
        }
        n++;
    }
    if (n == 0)
        fprintf(stderr, "sdmorph render: --devices names no device\n");
    return n ? n : -1;
}

/* One recipe of the command and what became of it. */
typedef struct {
    const char *path;
    sdm_recipe *r;
    char model_dir[4096];
    int rc; /* exit status; -1 while not rendered */
    char msg[2048]; /* why it failed */
    sdm_render_stats stats;
    char **files; /* written */
    int n_files;
} job;

typedef struct {
    sdm_render_params p;
    const char *model, *device, *devices;
    sdm_device devs[SDM_MAX_DEVICES];
    int n_devs; /* --devices: more than one renders each recipe on them all */
    int threads, quiet, json;
    sdm_overrides ov;
    job *jobs;
    int n_jobs;
} render_cmd;

static void on_written(void *user, const char *path)
{
    job *j = user;
    char **grown = realloc(j->files, (size_t)(j->n_files + 1) * sizeof *grown);

    if (!grown)
        return;
    j->files = grown;
    if ((j->files[j->n_files] = strdup(path)))
        j->n_files++;
}

static void fail_job(job *j, int code, const char *msg)
{
    j->rc = code ? code : SDM_EXIT_RUNTIME;
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    fprintf(stderr, "sdmorph: %s\n", msg);
}

/* 1 when argv[*i] was an option of C (taken), 0 a recipe, -1 bad usage
 * (said), 2 --help. */
static int take_option(render_cmd *C, int argc, char **argv, int *i)
{
    static const char *const valued[] = { "-o",       "--output",  "--model",          "--device", "--batch",
                                          "--frames", "--threads", "--progress-every", "--shard",  "--devices" };
    const char *a = argv[*i], *v = NULL;
    sdm_error err = { 0 };
    int k = sdm_overrides_take(&C->ov, argc, argv, i, "sdmorph render");

    if (k)
        return k;
    if (!strcmp(a, "-h") || !strcmp(a, "--help"))
        return 2;
    for (size_t n = 0; n < sizeof valued / sizeof *valued; n++) {
        if (strcmp(a, valued[n]))
            continue;
        if (*i + 1 >= argc) {
            fprintf(stderr, "sdmorph render: %s needs a value\n", a);
            return -1;
        }
        v = argv[++*i];
    }
    if (!strcmp(a, "-o") || !strcmp(a, "--output"))
        ((const char **)C->p.outputs)[C->p.n_outputs++] = v;
    else if (!strcmp(a, "--model"))
        C->model = v;
    else if (!strcmp(a, "--device"))
        C->device = v;
    else if (!strcmp(a, "--frames"))
        C->p.frames = v;
    else if (!strcmp(a, "--devices"))
        C->devices = v;
    else if (!strcmp(a, "--shard") && sdm_shard_parse(v, &C->p.shard, &err))
        return fprintf(stderr, "sdmorph render: %s\n", err.msg), -1;
    else if (!strcmp(a, "--batch") && parse_int(v, 1, 1024, &C->p.batch))
        return fprintf(stderr, "sdmorph render: --batch must be 1..1024, not '%s'\n", v), -1;
    else if (!strcmp(a, "--threads") && parse_int(v, 1, 1024, &C->threads))
        return fprintf(stderr, "sdmorph render: --threads must be 1..1024, not '%s'\n", v), -1;
    else if (!strcmp(a, "--progress-every") && parse_double(v, 0, &C->p.progress_every))
        return fprintf(stderr, "sdmorph render: --progress-every must be 0..86400 seconds, not '%s'\n", v), -1;
    else if (!strcmp(a, "--no-cuda-graphs"))
        C->p.cuda_graphs = 0;
    else if (!strcmp(a, "--cudnn-benchmark"))
        C->p.cudnn_benchmark = 1;
    else if (!strcmp(a, "--no-aoti"))
        C->p.aoti = 0;
    else if (!strcmp(a, "--timings"))
        C->p.timings = 1;
    else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
        C->quiet = 1;
    else if (!strcmp(a, "--json"))
        C->json = 1;
    else if (!v && a[0] == '-' && a[1])
        return fprintf(stderr, "sdmorph render: unknown option '%s'\n", a), usage(stderr), -1;
    else if (!v)
        return 0;
    return 1;
}

static int parse_args(render_cmd *C, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int k = take_option(C, argc, argv, &i);
        if (k < 0)
            return SDM_EXIT_USAGE;
        if (k == 2) {
            usage(stdout);
            return SDM_EXIT_OK;
        }
        if (k == 0)
            C->jobs[C->n_jobs++].path = argv[i];
    }
    if (!C->n_jobs) {
        usage(stderr);
        return SDM_EXIT_USAGE;
    }
    return -1;
}

/* --device, or --devices (the first of them for the checks). */
static int pick_device(render_cmd *C)
{
    if (C->devices && C->device) {
        fprintf(stderr, "sdmorph render: --device or --devices, not both\n");
        return SDM_EXIT_USAGE;
    }
    if (C->devices) {
        C->n_devs = parse_devices(C->devices, C->devs);
        if (C->n_devs < 0)
            return SDM_EXIT_USAGE;
        C->p.device = C->devs[0];
        return 0;
    }
    return sdm_run_device("render", C->device, &C->p.device);
}

/* Loads a recipe with the overrides and checks it as render will (no
 * model loaded); 0, or the job has failed. */
static int prepare_job(render_cmd *C, job *j)
{
    sdm_error err = { 0 };
    sdm_preflight pf;
    sdm_render_params p = C->p;
    int rc;

    memset(&pf, 0, sizeof pf);
    if (sdm_recipe_load_with(j->path, C->ov.items, C->ov.n, &j->r, &err))
        goto fail;
    if (sdm_bundle_dir_for(C->model, j->r->model, j->model_dir, sizeof j->model_dir)) {
        sdm_error_set(&err, SDM_EXIT_USAGE, "%s: the model's path is too long", j->path);
        goto fail;
    }
    p.model_dir = j->model_dir;
    rc = sdm_preflight_run(j->r, &p, &pf, &err);
    sdm_preflight_free(&pf);
    if (!rc)
        return 0;
fail:
    fail_job(j, err.code, err.msg);
    return -1;
}

static void report_job(const job *j, int quiet)
{
    size_t used = 0;
    char line[8192] = "";

    sdm_run_print_report(&j->stats, quiet);
    for (int i = 0; i < j->n_files && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", i ? ", " : "", j->files[i]);
    if (j->n_files)
        fprintf(stderr, "sdmorph: wrote %s\n", line);
}

/* Renders job j, on engine (NULL: its own). 130 when interrupted. */
static int run_job(render_cmd *C, job *j, sdm_engine *engine)
{
    sdm_render_params p = C->p;
    sdm_error err = { 0 };
    int d;

    p.model_dir = j->model_dir;
    p.engine = engine;
    p.on_written = on_written;
    p.user = j;
    d = sdm_run_render_stats(j->r, &p, C->devs, C->n_devs, &j->stats, &err);
    if (d < 0) {
        fail_job(j, err.code, err.msg);
        return j->rc;
    }
    if (d == 1) {
        if (j->stats.frames_shown)
            fprintf(stderr, "sdmorph: interrupted: kept the %d frames done in a .partial file beside each output\n",
                    j->stats.frames_shown);
        else
            fprintf(stderr, "sdmorph: interrupted before the first frame: nothing written\n");
        snprintf(j->msg, sizeof j->msg, "interrupted");
        return j->rc = 130;
    }
    report_job(j, C->quiet);
    return j->rc = SDM_EXIT_OK;
}

/* Renders the jobs that share job first's model: one engine for them all
 * when there are several. 130 when interrupted. */
static int run_group(render_cmd *C, int first)
{
    sdm_engine *engine = NULL;
    sdm_error err = { 0 };
    int sharing = 0, rc = 0;

    for (int k = first; k < C->n_jobs; k++)
        sharing += C->jobs[k].rc < 0 && !strcmp(C->jobs[k].model_dir, C->jobs[first].model_dir);
    /* --devices: each device's thread opens its own */
    if (sharing > 1 && C->n_devs <= 1 && sdm_engine_open(C->jobs[first].model_dir, C->p.device, &engine, &err)) {
        for (int k = first; k < C->n_jobs; k++)
            if (C->jobs[k].rc < 0 && !strcmp(C->jobs[k].model_dir, C->jobs[first].model_dir))
                fail_job(&C->jobs[k], err.code, err.msg);
        return 0;
    }
    if (engine)
        sdm_engine_set_aoti(engine, C->p.aoti);
    for (int k = first; k < C->n_jobs && rc != 130; k++) {
        job *j = &C->jobs[k];
        if (j->rc >= 0 || strcmp(j->model_dir, C->jobs[first].model_dir))
            continue;
        if (C->n_jobs > 1 && !C->quiet)
            fprintf(stderr, "sdmorph: rendering %s\n", j->path);
        rc = run_job(C, j, engine);
    }
    sdm_engine_free(&engine);
    return rc == 130 ? 130 : 0;
}

/* Where the render loop's seconds went (render.h). */
static json_object *timing_json(const sdm_render_stats *s)
{
    json_object *t = json_object_new_object();

    json_object_object_add(t, "launch", json_object_new_double(s->launch_seconds));
    json_object_object_add(t, "device_wait", json_object_new_double(s->device_wait_seconds));
    json_object_object_add(t, "frames_out", json_object_new_double(s->frames_out_seconds));
    json_object_object_add(t, "outputs_blocked", json_object_new_double(s->outputs_blocked_seconds));
    json_object_object_add(t, "pace", json_object_new_double(s->pace_seconds));
    json_object_object_add(t, "finish", json_object_new_double(s->finish_seconds));
    if (s->sample_batches) {
        json_object_object_add(t, "sample", json_object_new_double(s->sample_seconds));
        json_object_object_add(t, "sample_steps", json_object_new_int(s->sample_steps));
        json_object_object_add(t, "decode", json_object_new_double(s->decode_seconds));
        json_object_object_add(t, "decoded_frames", json_object_new_int(s->decoded_frames));
    }
    if (s->loading.unet > 0) {
        json_object *l = json_object_new_object();
        json_object_object_add(l, "libtorch", json_object_new_double(s->loading.runtime));
        json_object_object_add(l, "text_encoders", json_object_new_double(s->loading.text));
        json_object_object_add(l, "unet", json_object_new_double(s->loading.unet));
        json_object_object_add(l, "vae_decoder", json_object_new_double(s->loading.vae));
        json_object_object_add(l, "first_calls", json_object_new_double(s->loading.check));
        json_object_object_add(l, "aoti_unet", json_object_new_double(s->loading.aoti_unet));
        json_object_object_add(l, "aoti_vae_decoder", json_object_new_double(s->loading.aoti_vae));
        json_object_object_add(t, "loading", l);
    }
    if (s->device_used_bytes) {
        json_object_object_add(t, "device_memory_used", json_object_new_int64((int64_t)s->device_used_bytes));
        json_object_object_add(t, "device_memory_total", json_object_new_int64((int64_t)s->device_total_bytes));
    }
    return t;
}

static void print_json(const render_cmd *C)
{
    json_object *root = json_object_new_object(), *list = json_object_new_array();

    for (int i = 0; i < C->n_jobs; i++) {
        const job *j = &C->jobs[i];
        const sdm_render_stats *s = &j->stats;
        json_object *o = json_object_new_object(), *files = json_object_new_array();
        json_object_object_add(o, "recipe", json_object_new_string(j->path));
        json_object_object_add(o, "status",
                               json_object_new_string(j->rc == 0     ? "ok"
                                                      : j->rc == 130 ? "interrupted"
                                                                     : "failed"));
        json_object_object_add(o, "exit", json_object_new_int(j->rc));
        if (j->msg[0])
            json_object_object_add(o, "error", json_object_new_string(j->msg));
        json_object_object_add(o, "model", json_object_new_string(j->model_dir));
        json_object_object_add(o, "frames_shown", json_object_new_int(s->frames_shown));
        json_object_object_add(o, "frames_rendered", json_object_new_int(s->frames_rendered));
        json_object_object_add(o, "width", json_object_new_int(s->width));
        json_object_object_add(o, "height", json_object_new_int(s->height));
        json_object_object_add(o, "batch", json_object_new_int(s->batch));
        json_object_object_add(o, "seconds", json_object_new_double(s->seconds));
        json_object_object_add(o, "load_seconds", json_object_new_double(s->load_seconds));
        json_object_object_add(o, "seconds_per_render", json_object_new_double(s->seconds_per_render));
        json_object_object_add(o, "timing", timing_json(s));
        for (int k = 0; k < j->n_files; k++)
            json_object_array_add(files, json_object_new_string(j->files[k]));
        json_object_object_add(o, "files", files);
        json_object_array_add(list, o);
    }
    json_object_object_add(root, "recipes", list);
    printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush(stdout);
    json_object_put(root);
}

/* With several recipes: which rendered and which failed. */
static int summary(const render_cmd *C)
{
    int failed = 0, rc = SDM_EXIT_OK;

    for (int i = 0; i < C->n_jobs; i++) {
        int e = C->jobs[i].rc;
        failed += e != 0;
        if (e && (!rc || e == 130))
            rc = e;
    }
    if (C->n_jobs > 1) {
        fprintf(stderr, "sdmorph: %d recipes: %d rendered, %d failed\n", C->n_jobs, C->n_jobs - failed, failed);
        for (int i = 0; i < C->n_jobs; i++) {
            const job *j = &C->jobs[i];
            fprintf(stderr, "  %-11s %s%s%s\n",
                    j->rc == 0     ? "ok"
                    : j->rc == 130 ? "interrupted"
                                   : "FAILED",
                    j->path, j->msg[0] && j->rc != 130 ? "  " : "", j->rc != 130 ? j->msg : "");
        }
    }
    if (C->json)
        print_json(C);
    return rc;
}

static int render_all(render_cmd *C)
{
    for (int i = 0; i < C->n_jobs; i++)
        prepare_job(C, &C->jobs[i]);
    for (int i = 0; i < C->n_jobs && !*sdm_run_stop_flag(); i++)
        if (C->jobs[i].rc < 0 && run_group(C, i) == 130)
            break;
    for (int i = 0; i < C->n_jobs; i++) {
        job *j = &C->jobs[i];
        if (j->rc >= 0)
            continue;
        j->rc = 130;
        snprintf(j->msg, sizeof j->msg, "interrupted");
        if (C->n_jobs == 1)
            fprintf(stderr, "sdmorph: interrupted before the first frame: nothing written\n");
    }
    return summary(C);
}

int sdm_cmd_render(int argc, char **argv)
{
    render_cmd C;
    int rc, go;

    memset(&C, 0, sizeof C);
    C.p = sdm_render_default_params();
    C.p.outputs = calloc((size_t)argc, sizeof *C.p.outputs);
    C.jobs = calloc((size_t)argc, sizeof *C.jobs);
    if (!C.p.outputs || !C.jobs || sdm_overrides_init(&C.ov, argc)) {
        rc = SDM_EXIT_RUNTIME;
        goto end;
    }
    for (int i = 0; i < argc; i++)
        C.jobs[i].rc = -1;
    /* from the start: a closed terminal (SIGHUP) or Ctrl-C, even while the
     * model loads, ends the render as Ctrl-C does: the frames done are kept
     * in a .partial file, the temporary files removed */
    sdm_run_catch_signals();
    rc = parse_args(&C, argc, argv);
    go = rc < 0;
    if (go)
        rc = pick_device(&C);
    if (go && rc == 0) {
        if (C.threads)
            sdm_torch_set_threads(C.threads);
        C.p.progress = C.quiet ? SDM_PROGRESS_NONE : isatty(STDERR_FILENO) ? SDM_PROGRESS_TERMINAL : SDM_PROGRESS_LOG;
        C.p.stop = sdm_run_stop_flag();
        rc = render_all(&C);
    }
    sdm_run_release_signals();
end:
    for (int i = 0; C.jobs && i < C.n_jobs; i++) {
        sdm_recipe_free(&C.jobs[i].r);
        for (int k = 0; k < C.jobs[i].n_files; k++)
            free(C.jobs[i].files[k]);
        free(C.jobs[i].files);
    }
    free(C.jobs);
    free((void *)C.p.outputs);
    sdm_overrides_free(&C.ov);
    return rc;
}
