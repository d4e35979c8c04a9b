#include "outputs.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output_name.h"
#include "paths.h"
#include "png.h"
#include "sidecar.h"
#include "version.h"
#include "workpool.h"

/* out/x.mp4 with --frames 0-9,20 → out/x.frames-0-9_20.mp4: the whole list,
 * so two selections never share a file (a name past the system's limit is
 * cut and marked with a hash of it, paths.h). */
static int frames_name(const char *path, const char *frames, char *out, size_t len)
{
    const char *base = sdm_path_base(path), *ext = sdm_path_ext(path);
    size_t stem = ext ? (size_t)(ext - base) : strlen(base), n;
    char *head = malloc(stem + strlen(frames) + 16);
    char name[SDM_NAME_MAX + 1];
    int rc;

    if (!head)
        return -1;
    n = (size_t)sprintf(head, "%.*s.frames-", (int)stem, base);
    for (const char *c = frames; *c; c++)
        if (*c != ' ')
            head[n++] = (*c >= '0' && *c <= '9') || *c == '-' ? *c : '_';
    head[n] = '\0';
    rc = sdm_name_fit(head, ext ? strlen(ext) : 0, name, sizeof name);
    free(head);
    if (rc || snprintf(out, len, "%.*s%s%s", (int)(base - path), path, name, ext ? ext : "") >= (int)len)
        return -1;
    return 0;
}

static int add_file(sdm_outputs *o, const char *path, sdm_out_kind kind, int of, sdm_error *err)
{
    char norm[SDM_PATH_MAX];
    sdm_out_file *f = &o->files[o->n];

    if (sdm_path_normalize(path, norm, sizeof norm, err))
        return -1;
    /* outputs that differ only in their extension share one sidecar */
    for (int i = 0; kind == SDM_OUT_SIDECAR && i < o->n; i++)
        if (o->files[i].kind == SDM_OUT_SIDECAR && !strcmp(o->files[i].norm, norm))
            return 0;
    f->path = strdup(path);
    f->norm = strdup(norm);
    f->kind = kind;
    f->of = of;
    o->n++;
    if (!f->path || !f->norm)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    return 0;
}

/* The output itself may not be a folder; its folder must be there and
 * writable, or be made (sdm_outputs_open) in the nearest one that is. */
static int check_place(const sdm_out_file *f, sdm_error *err)
{
    const char *base = sdm_path_base(f->path);
    char dir[SDM_PATH_MAX], shown[256], *slash;
    struct stat st;

    sdm_path_excerpt(f->path, shown, sizeof shown);
    if (lstat(f->path, &st) == 0 && S_ISDIR(st.st_mode))
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s' is a folder; name a file in it", shown);
    if (base == f->path)
        strcpy(dir, "./");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(base - f->path), f->path);
    /* a folder not there yet: the nearest one that is */
    while (stat(dir, &st) < 0 && errno == ENOENT) {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            dir[--n] = '\0';
        slash = strrchr(dir, '/');
        if (!slash || slash == dir) {
            strcpy(dir, slash ? "/" : ".");
            break;
        }
        slash[1] = '\0';
    }
    if (stat(dir, &st) < 0)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: folder %s: %s", shown, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s is not a folder", shown, dir);
    if (access(dir, W_OK | X_OK) < 0)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: folder %s: %s", shown, dir, strerror(errno));
    return 0;
}

/* Makes the folders of path that are not there (mkdir -p of its folder). */
static int make_folders(const char *path, sdm_error *err)
{
    char dir[SDM_PATH_MAX];
    const char *base = sdm_path_base(path);

    if (base == path || (size_t)(base - path) >= sizeof dir)
        return 0;
    snprintf(dir, sizeof dir, "%.*s", (int)(base - path), path);
    for (char *c = dir + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(dir, 0777) < 0 && errno != EEXIST)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot make folder %s for %s: %s", dir, path, strerror(errno));
        *c = '/';
    }
    return 0;
}

/* The normal forms of an input: its folder resolved (as outputs are), and
 * the whole path resolved (what is read, through links). */
static int input_is(const sdm_input *in, const char *norm)
{
    char a[SDM_PATH_MAX], b[PATH_MAX];
    sdm_error ignored = { 0 };

    if (!sdm_path_normalize(in->path, a, sizeof a, &ignored) && !strcmp(a, norm))
        return 1;
    return realpath(in->path, b) && !strcmp(b, norm);
}

/* Output i against the render's inputs and the other outputs. */
static int check_clash(const sdm_outputs *o, int i, const sdm_outputs_request *q, sdm_error *err)
{
    const sdm_out_file *f = &o->files[i];
    char partial[SDM_PATH_MAX], pnorm[SDM_PATH_MAX], shown[256], other[256], owner[300] = "";
    int has_partial = f->kind != SDM_OUT_SIDECAR && !sdm_partial_path(f->path, partial, sizeof partial) &&
                      !sdm_path_normalize(partial, pnorm, sizeof pnorm, err);

    sdm_path_excerpt(f->path, shown, sizeof shown);
    if (f->kind == SDM_OUT_SIDECAR)
        snprintf(owner, sizeof owner, " of output '%s'", sdm_path_excerpt(o->files[f->of].path, other, sizeof other));
    for (int k = 0; k < q->n_inputs; k++) {
        sdm_path_excerpt(q->inputs[k].path, other, sizeof other);
        if (input_is(&q->inputs[k], f->norm))
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "%s '%s'%s would overwrite %s %s, which this render reads; "
                                 "name the output otherwise",
                                 f->kind == SDM_OUT_SIDECAR ? "the sidecar" : "output", shown, owner, q->inputs[k].what,
                                 other);
        if (has_partial && input_is(&q->inputs[k], pnorm))
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "output '%s': an interrupted render would write %s, which is "
                                 "%s; name the output otherwise",
                                 shown, partial, q->inputs[k].what);
    }
    for (int j = 0; j < o->n; j++) {
        if (j == i)
            continue;
        sdm_path_excerpt(o->files[j].path, other, sizeof other);
        if (j < i && !strcmp(o->files[j].norm, f->norm))
            return sdm_error_set(err, SDM_EXIT_USAGE, "outputs '%s' and '%s' are the same file", other, shown);
        if (has_partial && !strcmp(o->files[j].norm, pnorm))
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "output '%s' is where an interrupted render of '%s' goes "
                                 "(%s); name it otherwise",
                                 other, shown, partial);
    }
    return 0;
}

static int is_still(const char *name)
{
    return sdm_output_kind_of(name, 0) == SDM_OUTPUT_STILL;
}

/* The name a requested output gets: the -o names are the user's own; the
 * recipe's get the frames said. */
static int requested_name(const sdm_outputs_request *q, const char *name, char *buf, size_t len, const char **out,
                          sdm_error *err)
{
    *out = name;
    if (!q->frames || q->n_outputs > 0)
        return 0;
    if (frames_name(name, q->frames, buf, len))
        return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': no room for the frames in its name", name);
    *out = buf;
    return 0;
}

/* A still's name for frame `number`: its one %d (%04d: width, zero-padded)
 * replaced, else with several frames "-NUMBER" before its extension. */
static int still_name(const char *name, int number, int several, char *out, size_t len, sdm_error *err)
{
    const char *ext = sdm_path_ext(name), *c = name;
    size_t n = 0;
    int done = 0;

    if (!strchr(name, '%') && !several)
        return snprintf(out, len, "%s", name) >= (int)len ? -1 : 0;
    if (!strchr(name, '%'))
        return snprintf(out, len, "%.*s-%d%s", ext ? (int)(ext - name) : INT_MAX, name, number, ext ? ext : "") >=
                       (int)len
                   ? -1
                   : 0;
    while (*c && n + 32 < len) {
        char *end;
        long width;
        if (*c != '%') {
            out[n++] = *c++;
            continue;
        }
        if (c[1] == '%') {
            out[n++] = '%';
            c += 2;
            continue;
        }
        width = strtol(c + 1, &end, 10);
        if (done || *end != 'd' || width < 0 || width > 9 || c[1] == '-' || c[1] == '+' || c[1] == ' ')
            return sdm_error_set(err, SDM_EXIT_USAGE,
                                 "output '%s': a still's name takes one %%d for the frame "
                                 "number (e.g. pick-%%04d.png)",
                                 name);
        if (c[1] == '0')
            n += (size_t)sprintf(out + n, "%0*d", (int)width, number);
        else
            n += (size_t)sprintf(out + n, "%*d", (int)width, number);
        c = end + 1;
        done = 1;
    }
    out[n] = '\0';
    return *c ? -1 : 0;
}

/* The stills: one per frame shown for each .png name. */
static int add_stills(sdm_outputs *o, const sdm_outputs_request *q, const char *const *names, int n, sdm_error *err)
{
    int shown = q->plan ? q->plan->n_sequence : 1;
    char buf[SDM_PATH_MAX], still[SDM_PATH_MAX];
    const char *name;

    o->first_still = o->n;
    for (int i = 0; i < n; i++) {
        if (!is_still(names[i]))
            continue;
        if (requested_name(q, names[i], buf, sizeof buf, &name, err))
            return -1;
        for (int k = 0; k < shown; k++) {
            int number = q->plan ? q->plan->frame_index[k] : 0;
            if (still_name(name, number, shown > 1, still, sizeof still, err))
                return err->code ? -1 : sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': its name is too long", name);
            if (add_file(o, still, SDM_OUT_STILL, -1, err))
                return -1;
            o->files[o->n - 1].frame = k;
        }
    }
    o->n_stills = o->n - o->first_still;
    return 0;
}

/* The videos, then the contact sheet, then the stills. */
static int add_requested(sdm_outputs *o, const sdm_outputs_request *q, const char *const *names, int n,
                         const char *sheet, sdm_error *err)
{
    char buf[SDM_PATH_MAX];
    const char *name;

    for (int i = 0; i <= n; i++) {
        const char *asked = i < n ? names[i] : sheet;
        if (!asked || (i < n && is_still(asked)))
            continue;
        if (requested_name(q, asked, buf, sizeof buf, &name, err) ||
            add_file(o, name, i < n ? SDM_OUT_VIDEO : SDM_OUT_SHEET, -1, err))
            return -1;
        if (i < n)
            o->videos[o->n_videos++] = o->files[o->n - 1].path;
        else
            o->sheet = o->files[o->n - 1].path;
    }
    return add_stills(o, q, names, n, err);
}

int sdm_outputs_make(const sdm_recipe *r, const sdm_outputs_request *q, sdm_outputs *o, sdm_error *err)
{
    const char *const *names = q->n_outputs > 0 ? q->outputs : (const char *const *)r->outputs;
    int n = q->n_outputs > 0 ? q->n_outputs : r->n_outputs, n_stills = 0;
    const char *sheet = q->n_outputs > 0 ? NULL : r->contact_sheet;
    char side[SDM_PATH_MAX];

    memset(o, 0, sizeof *o);
    for (int i = 0; i < n; i++)
        n_stills += is_still(names[i]) ? (q->plan ? q->plan->n_sequence : 1) : 0;
    if (n_stills > SDM_MAX_STILLS)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%d PNG stills; at most %d in one render (pick frames with "
                             "--frames)",
                             n_stills, SDM_MAX_STILLS);
    o->files = calloc(2 * ((size_t)n + (size_t)n_stills) + 2, sizeof *o->files);
    o->videos = calloc((size_t)n + 1, sizeof *o->videos);
    if (!o->files || !o->videos)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    if (add_requested(o, q, names, n, sheet, err))
        return -1;
    for (int i = 0, m = o->n; i < m; i++) {
        sdm_error e = { 0 };
        char shown[256];
        sdm_path_excerpt(o->files[i].path, shown, sizeof shown);
        if (sdm_path_with_ext(o->files[i].path, "json", side, sizeof side))
            return sdm_error_set(err, SDM_EXIT_USAGE, "output '%s': its sidecar's path is too long", shown);
        if (add_file(o, side, SDM_OUT_SIDECAR, i, &e))
            return sdm_error_set(err, e.code, "the sidecar of output '%s': %s", shown, e.msg);
    }
    for (int i = 0; i < o->n; i++)
        if (sdm_fileset_check_target(o->files[i].path, err) || check_place(&o->files[i], err) ||
            check_clash(o, i, q, err))
            return -1;
    return 0;
}

void sdm_outputs_free(sdm_outputs *o)
{
    for (int i = 0; o->files && i < o->n; i++) {
        free(o->files[i].path);
        free(o->files[i].norm);
    }
    free(o->files);
    free(o->videos);
    memset(o, 0, sizeof *o);
}

void sdm_outputs_comment(char *buf, size_t len, const char *recipe_path, const char *recipe_fp, const char *model_dir,
                         const char *model_fp)
{
    snprintf(buf, len, "sdmorph %s; recipe %s (fnv1a %s); model %s (fingerprint %s)", SDM_VERSION,
             recipe_path ? recipe_path : "-", recipe_fp, model_dir, model_fp);
}

int sdm_outputs_open(const sdm_outputs *o, sdm_fileset **out, sdm_error *err)
{
    sdm_fileset *fs = NULL;

    *out = NULL;
    if (sdm_fileset_new(&fs, err))
        return -1;
    for (int i = 0; i < o->n; i++) {
        if (make_folders(o->files[i].path, err) || sdm_fileset_add(fs, o->files[i].path, err) < 0) {
            sdm_fileset_free(&fs);
            return -1;
        }
    }
    *out = fs;
    return 0;
}

int sdm_outputs_write_sidecars(const sdm_outputs *o, sdm_fileset *fs, const sdm_recipe *r, const sdm_plan *plan,
                               const sdm_sidecar_used *used, sdm_error *err)
{
    for (int i = 0; i < o->n; i++) {
        int k = sdm_fileset_find(fs, o->files[i].path);
        if (o->files[i].kind != SDM_OUT_SIDECAR)
            continue;
        if (k < 0)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: sidecar %s is not in the file set",
                                 o->files[i].path);
        if (o->has_segment
                ? sdm_segment_write(sdm_fileset_temp(fs, k), o->files[i].path, &o->segment, r, plan, used, err)
                : sdm_sidecar_write(sdm_fileset_temp(fs, k), o->files[i].path, r, plan, used, err))
            return -1;
    }
    return 0;
}

void sdm_outputs_skip_sidecars(const sdm_outputs *o, sdm_fileset *fs)
{
    for (int i = 0; i < o->n; i++)
        if (o->files[i].kind == SDM_OUT_SIDECAR)
            sdm_fileset_skip(fs, sdm_fileset_find(fs, o->files[i].path));
}

int sdm_outputs_commit(const sdm_outputs *o, sdm_fileset *fs, const sdm_recipe *r, const sdm_plan *plan,
                       const sdm_sidecar_used *used, int partial, sdm_error *err)
{
    if (partial)
        sdm_outputs_skip_sidecars(o, fs);
    else if (sdm_outputs_write_sidecars(o, fs, r, plan, used, err))
        return -1;
    return sdm_fileset_commit(fs, partial, err);
}

/* ---- stills, written on workers ---------------------------------------------- */

/* Workers at most, and stills waiting per worker. */
#define STILL_THREADS 4
#define STILL_DEPTH 2

typedef struct {
    const char *tmp, *target;
    uint8_t *rgb;
    sdm_error err;
} still_job;

struct sdm_stills {
    const sdm_outputs *o;
    sdm_fileset *fs;
    int width, height;
    char *comment;
    sdm_workpool *pool;
    still_job *jobs; /* the pool's depth: the n-th put's at n % depth */
    int depth;
    int64_t put;
    sdm_error err; /* the first failure */
    int failed;
};

static int write_still(void *ctx, int worker, void *job)
{
    sdm_stills *st = ctx;
    still_job *j = job;

    (void)worker;
    return sdm_png_write(j->tmp, j->rgb, st->width, st->height, st->comment, j->target, &j->err);
}

/* The oldest still in flight, waited for; its failure kept. 0 if none. */
static int still_take(sdm_stills *st)
{
    int rc = 0;
    still_job *j = sdm_workpool_take(st->pool, &rc);

    if (j && rc && !st->failed) {
        st->failed = 1;
        sdm_error_set(&st->err, j->err.code, "%s", j->err.msg);
    }
    return j != NULL;
}

int sdm_stills_open(const sdm_outputs *o, sdm_fileset *fs, int width, int height, const char *comment, sdm_stills **out,
                    sdm_error *err)
{
    sdm_stills *st;
    int threads = sdm_workpool_threads(0) > STILL_THREADS ? STILL_THREADS : sdm_workpool_threads(0), rc = -1;
    sigset_t block, old;

    *out = NULL;
    if (!o->n_stills || !fs)
        return 0;
    st = calloc(1, sizeof *st);
    if (!st)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    *st = (sdm_stills){ .o = o, .fs = fs, .width = width, .height = height, .depth = STILL_DEPTH * threads };
    st->comment = strdup(comment ? comment : "");
    st->jobs = calloc((size_t)st->depth, sizeof *st->jobs);
    for (int i = 0; st->jobs && i < st->depth; i++)
        if (!(st->jobs[i].rgb = malloc((size_t)width * height * 3)))
            break;
    if (!st->comment || !st->jobs || !st->jobs[st->depth - 1].rgb) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    /* the render's thread alone takes the signals (as the sink's encoders) */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = sdm_workpool_open(threads, st->depth, write_still, st, &st->pool, err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
end:
    if (rc)
        sdm_stills_free(&st);
    *out = st;
    return rc;
}

int sdm_stills_put(sdm_stills *st, int shown, const uint8_t *rgb, sdm_error *err)
{
    const sdm_outputs *o = st ? st->o : NULL;

    for (int i = o ? o->first_still : 0; o && i < o->first_still + o->n_stills; i++) {
        int k = o->files[i].frame == shown ? sdm_fileset_find(st->fs, o->files[i].path) : -2;
        still_job *j = &st->jobs[st->put % st->depth];
        if (k == -1)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: still %s is not in the file set", o->files[i].path);
        if (k < 0)
            continue;
        if (sdm_workpool_in_flight(st->pool) == st->depth)
            still_take(st);
        if (st->failed)
            return sdm_error_set(err, st->err.code, "%s", st->err.msg);
        memcpy(j->rgb, rgb, (size_t)st->width * st->height * 3);
        j->tmp = sdm_fileset_temp(st->fs, k);
        j->target = o->files[i].path;
        memset(&j->err, 0, sizeof j->err);
        if (sdm_workpool_submit(st->pool, j))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "internal: the stills' queue is full");
        st->put++;
    }
    return 0;
}

int sdm_stills_finish(sdm_stills *st, sdm_error *err)
{
    while (st && still_take(st))
        ;
    if (st && st->failed)
        return sdm_error_set(err, st->err.code, "%s", st->err.msg);
    return 0;
}

void sdm_stills_free(sdm_stills **pst)
{
    sdm_stills *st = pst ? *pst : NULL;

    if (!st)
        return;
    sdm_workpool_free(&st->pool); /* first: its workers write from the jobs */
    for (int i = 0; st->jobs && i < st->depth; i++)
        free(st->jobs[i].rgb);
    free(st->jobs);
    free(st->comment);
    free(st);
    *pst = NULL;
}
