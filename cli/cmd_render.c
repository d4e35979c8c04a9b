/* sdmorph render: options, model lookup, signals, several recipes in one
 * command (one model load for the recipes that share a model and device);
 * the work is sdm_render. */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "commands.h"
#include "engine.h"
#include "overrides.h"
#include "preflight.h"
#include "recipe.h"
#include "render.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

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
            "  --batch N            frames per UNet call (default: from free GPU memory)\n"
            "  --frames LIST        render only these output frames, e.g. 37 or 0-9,20\n"
            "                       (written to NAME.frames-LIST.mp4 and .png unless -o is given)\n"
            "  --steps N, --size WxH, --seed N, --sampler NAME\n"
            "                       change the recipe's key without editing it (checked as in the file)\n"
            "  --set KEY=VALUE      the same for any top-level recipe key (VALUE is YAML)\n"
            "  --threads N          CPU threads for libtorch\n"
            "  --no-cuda-graphs     run the sampling loop step by step instead of replaying it as one\n"
            "                       CUDA graph per batch shape (the default on CUDA where the build has them)\n"
            "  --cudnn-benchmark    let cuDNN time its convolution algorithms and keep the fastest: faster,\n"
            "                       but two runs may then differ in the last bits of some pixels\n"
            "  --no-aoti            TorchScript modules only, even where the model has AOTInductor builds\n"
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

/* One recipe of the command and what became of it. */
typedef struct {
    const char *path;
    sdm_recipe *r;
    char model_dir[4096];
    int rc;                 /* exit status; -1 while not rendered */
    char msg[2048];         /* why it failed */
    sdm_render_stats stats;
    char **files;           /* written */
    int n_files;
} job;

typedef struct {
    sdm_render_params p;
    const char *model, *device;
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
    static const char *const valued[] = { "-o", "--output", "--model", "--device", "--batch", "--frames",
                                          "--threads", "--progress-every" };
    const char *a = argv[*i], *v = NULL;
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

static int pick_device(render_cmd *C)
{
    sdm_render_params *p = &C->p;

    if (!C->device) {
        p->device.type = sdm_cuda_device_count() > 0 ? SDM_DEVICE_CUDA : SDM_DEVICE_CPU;
        p->device.index = 0;
        return 0;
    }
    if (sdm_device_from_str(C->device, &p->device)) {
        fprintf(stderr, "sdmorph render: --device must be cpu, cuda or cuda:N, not '%s'\n", C->device);
        return SDM_EXIT_USAGE;
    }
    if (p->device.type == SDM_DEVICE_CUDA && p->device.index >= sdm_cuda_device_count()) {
        fprintf(stderr, "sdmorph render: %s is not available (%d CUDA devices%s)\n", C->device,
                sdm_cuda_device_count(), sdm_cuda_device_count() ? "" : "; this libtorch has no CUDA or no GPU is visible");
        return SDM_EXIT_RUNTIME;
    }
    return 0;
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

static void report_job(const job *j)
{
    const sdm_render_stats *s = &j->stats;
    size_t used = 0;
    char line[8192] = "";

    fprintf(stderr, "sdmorph: %d frames (%d rendered) at %dx%d in %.1f s (+%.1f s loading), "
            "%.4f s per rendered frame, batch %d\n", s->frames_shown, s->frames_rendered, s->width,
            s->height, s->seconds, s->load_seconds, s->seconds_per_render, s->batch);
    for (int i = 0; i < j->n_files && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", i ? ", " : "", j->files[i]);
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
    d = sdm_render(j->r, &p, &j->stats, &err);
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
    report_job(j);
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
    if (sharing > 1 && sdm_engine_open(C->jobs[first].model_dir, C->p.device, &engine, &err)) {
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

static void print_json(const render_cmd *C)
{
    json_object *root = json_object_new_object(), *list = json_object_new_array();

    for (int i = 0; i < C->n_jobs; i++) {
        const job *j = &C->jobs[i];
        const sdm_render_stats *s = &j->stats;
        json_object *o = json_object_new_object(), *files = json_object_new_array();
        json_object_object_add(o, "recipe", json_object_new_string(j->path));
        json_object_object_add(o, "status", json_object_new_string(j->rc == 0 ? "ok" : j->rc == 130 ? "interrupted"
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
            fprintf(stderr, "  %-11s %s%s%s\n", j->rc == 0 ? "ok" : j->rc == 130 ? "interrupted" : "FAILED", j->path, j->msg[0] && j->rc != 130 ? "  " : "",
                    j->rc != 130 ? j->msg : "");
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
    for (int i = 0; i < C->n_jobs && !stop_requested; i++)
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
    static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa, old[3];
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
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &sa, &old[i]);
    rc = parse_args(&C, argc, argv);
    go = rc < 0;
    if (go)
        rc = pick_device(&C);
    if (go && rc == 0) {
        if (C.threads)
            sdm_torch_set_threads(C.threads);
        C.p.progress = C.quiet ? SDM_PROGRESS_NONE : isatty(STDERR_FILENO) ? SDM_PROGRESS_TERMINAL : SDM_PROGRESS_LOG;
        C.p.stop = &stop_requested;
        rc = render_all(&C);
    }
    for (int i = 0; i < 3; i++)
        sigaction(signals[i], &old[i], NULL);
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
