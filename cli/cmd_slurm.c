/* sdmorph slurm RECIPE --shards N: a sharded render as a Slurm job array
 * and its join job (slurm_script.h); --submit hands both to sbatch. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "commands.h"
#include "fileset.h"
#include "options.h"
#include "paths.h"
#include "preflight.h"
#include "recipe.h"
#include "shard.h"
#include "slurm_script.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdmorph slurm RECIPE --shards N [options]\n"
            "\n"
            "Writes two sbatch scripts beside the recipe's first output: NAME.array.sbatch, a\n"
            "job array whose task I runs `sdmorph render RECIPE --shard auto` (shard I of N),\n"
            "and NAME.join.sbatch, which runs `sdmorph join` on the N segments. With --submit,\n"
            "submits the array, then the join with --dependency=afterok on it, and prints\n"
            "both job ids. Run it from the folder the recipe's outputs are relative to.\n"
            "\n"
            "  --shards N             tasks in the array (at most the recipe's distinct frames)\n"
            "  --partition P          the partition both jobs run in\n"
            "  --gpus-per-task G      GPUs for each render task\n"
            "  --cpus-per-task C      CPUs for each render task\n"
            "  --time T               time limit of each job (Slurm's format, e.g. 1:00:00)\n"
            "  --sbatch OPTION        one more #SBATCH option for both, e.g. --sbatch=--account=x (repeatable)\n"
            "  --model DIR            model bundle (default: as `render` finds it)\n"
            "  --device DEV           render --device for the tasks (default: render's)\n"
            "  --submit               submit both with sbatch --parsable and print the job ids\n");
}

typedef struct {
    const char *recipe, *model, *partition, *time, *device;
    const char **extra;
    int n_extra, shards, gpus, cpus, submit;
} slurm_options;

static int parse_count(const char *opt, const char *v, int hi, int *out)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 0 || x > hi) {
        fprintf(stderr, "sdmorph slurm: %s must be 0..%d, not '%s'\n", opt, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* 1: parsed; 0: --help; -1: bad usage (said). */
static int parse_options(int argc, char **argv, slurm_options *o)
{
    static const char *const valued[] = { "--shards", "--partition", "--gpus-per-task", "--cpus-per-task",
                                          "--time",   "--sbatch",    "--model",         "--device" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int k = -1, got = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 0;
        for (k = 0; k < (int)(sizeof valued / sizeof *valued) && !got; k++)
            got = sdm_option_value(argc, argv, &i, valued[k], &v);
        k--;
        if (got < 0) {
            fprintf(stderr, "sdmorph slurm: %s needs a value\n", a);
            return -1;
        }
        if (got && ((k == 0 && parse_count(a, v, SDM_MAX_SHARDS, &o->shards)) ||
                    (k == 2 && parse_count(a, v, 1024, &o->gpus)) || (k == 3 && parse_count(a, v, 4096, &o->cpus))))
            return -1;
        if (got) {
            const char **slots[] = { NULL, &o->partition, NULL, NULL, &o->time, NULL, &o->model, &o->device };
            if (slots[k])
                *slots[k] = v;
            if (k == 5)
                o->extra[o->n_extra++] = v;
        } else if (!strcmp(a, "--submit")) {
            o->submit = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sdmorph slurm: unknown option '%s'\n", a);
            return -1;
        } else if (o->recipe) {
            fprintf(stderr, "sdmorph slurm: one recipe at a time ('%s' and '%s')\n", o->recipe, a);
            return -1;
        } else {
            o->recipe = a;
        }
    }
    if (!o->recipe || o->shards < 1) {
        fprintf(stderr, "sdmorph slurm: give a recipe and --shards N (N >= 1)\n");
        return -1;
    }
    return 1;
}

/* Each shard's segment manifest, as `render --shard I/N` names it; what
 * render would refuse (too many shards, an output folder missing) is
 * refused here, before anything is submitted. */
static int segment_names(const sdm_recipe *r, int shards, char **names, sdm_error *err)
{
    for (int i = 0; i < shards; i++) {
        sdm_render_params p = sdm_render_default_params();
        sdm_preflight pf;
        char json[SDM_PATH_MAX];
        int rc;
        p.shard.index = i + 1;
        p.shard.count = shards;
        rc = sdm_preflight_run(r, &p, &pf, err);
        if (!rc && sdm_path_with_ext(pf.segment, "json", json, sizeof json))
            rc = sdm_error_set(err, SDM_EXIT_USAGE, "segment %s: path too long", pf.segment);
        if (!rc && !(names[i] = strdup(json)))
            rc = sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        sdm_preflight_free(&pf);
        if (rc)
            return -1;
    }
    return 0;
}

/* Runs `sbatch --parsable [dependency] script`; the job id into id. */
static int sbatch(const char *script, const char *dependency, char *id, size_t len, sdm_error *err)
{
    char q[SDM_PATH_MAX + 64], cmd[SDM_PATH_MAX + 256], line[256] = "";
    FILE *f;
    int st;

    if (sdm_sh_quote(script, q, sizeof q))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: path too long", script);
    snprintf(cmd, sizeof cmd, "sbatch --parsable%s%s %s", dependency ? " --dependency=afterok:" : "",
             dependency ? dependency : "", q);
    fflush(NULL);
    f = popen(cmd, "r");
    if (!f)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot run sbatch: %s", strerror(errno));
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    st = pclose(f);
    line[strcspn(line, ";\r\n")] = '\0';
    if (st != 0 || !line[0] || strspn(line, "0123456789_") != strlen(line))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sbatch %s failed (exit %d%s%s); is Slurm's sbatch on PATH?",
                             script, WIFEXITED(st) ? WEXITSTATUS(st) : -1, line[0] ? ", said: " : "", line);
    if ((size_t)snprintf(id, len, "%s", line) >= len)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sbatch %s: job id '%s' is too long", script, line);
    return 0;
}

/* Writes both scripts as one file set: both in place, or neither. */
static int write_scripts(const sdm_slurm_job *j, const char *array, const char *join, sdm_error *err)
{
    sdm_fileset *fs = NULL;
    int rc = -1, a, b;
    FILE *f;

    if (sdm_fileset_new(&fs, err) || (a = sdm_fileset_add(fs, array, err)) < 0 ||
        (b = sdm_fileset_add(fs, join, err)) < 0)
        goto end;
    for (int k = 0; k < 2; k++) {
        f = fopen(sdm_fileset_temp(fs, k ? b : a), "w");
        if (!f || (k ? sdm_slurm_write_join(f, j) : sdm_slurm_write_array(f, j)) | fclose(f)) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", k ? join : array, strerror(errno));
            goto end;
        }
    }
    rc = sdm_fileset_commit(fs, 0, err);
end:
    sdm_fileset_free(&fs);
    return rc;
}

/* The job's absolute paths: the executable, the recipe, the model, here. */
static int resolve(const slurm_options *o, const sdm_recipe *r, char paths[4][PATH_MAX], sdm_error *err)
{
    char model[PATH_MAX];

    if (sdm_bundle_dir_for(o->model, r->model, model, sizeof model))
        return sdm_error_set(err, SDM_EXIT_USAGE, "the model's path is too long");
    if (!realpath("/proc/self/exe", paths[0]))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot find this executable: %s", strerror(errno));
    if (!realpath(o->recipe, paths[1]))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s", o->recipe, strerror(errno));
    if (!realpath(model, paths[2]))
        return sdm_error_set(err, SDM_EXIT_USAGE, "model %s: %s", model, strerror(errno));
    if (!getcwd(paths[3], PATH_MAX))
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot read the working folder: %s", strerror(errno));
    return 0;
}

int sdm_cmd_slurm(int argc, char **argv)
{
    slurm_options o;
    sdm_slurm_job j;
    sdm_recipe *r = NULL;
    sdm_error err = { 0 };
    char **names = NULL, paths[4][PATH_MAX], stem[SDM_PATH_MAX], array[SDM_PATH_MAX], join[SDM_PATH_MAX];
    char array_id[64], join_id[64], tail[64];
    int rc = SDM_EXIT_USAGE, got;

    memset(&o, 0, sizeof o);
    memset(&j, 0, sizeof j);
    o.extra = calloc((size_t)argc, sizeof *o.extra);
    if (!o.extra)
        return SDM_EXIT_RUNTIME;
    got = parse_options(argc, argv, &o);
    if (got <= 0) {
        usage(got ? stderr : stdout);
        rc = got ? SDM_EXIT_USAGE : SDM_EXIT_OK;
        goto end;
    }
    names = calloc((size_t)o.shards, sizeof *names);
    if (!names || sdm_recipe_load(o.recipe, &r, &err) || resolve(&o, r, paths, &err) ||
        segment_names(r, o.shards, names, &err))
        goto fail;
    snprintf(tail, sizeof tail, ".shard-1-of-%d.json", o.shards);
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(names[0]) - strlen(tail)), names[0]);
    if (snprintf(array, sizeof array, "%s.array.sbatch", stem) >= (int)sizeof array ||
        snprintf(join, sizeof join, "%s.join.sbatch", stem) >= (int)sizeof join) {
        sdm_error_set(&err, SDM_EXIT_USAGE, "%s: no room for the scripts' names", stem);
        goto fail;
    }
    j = (sdm_slurm_job){ paths[0], paths[1], paths[2],    paths[3], "sdmorph",
                         stem,     o.shards, o.partition, o.gpus,   o.cpus,
                         o.time,   o.extra,  o.n_extra,   o.device, (const char *const *)names };
    if (write_scripts(&j, array, join, &err))
        goto fail;
    printf("%s\n%s\n", array, join);
    if (o.submit) {
        if (sbatch(array, NULL, array_id, sizeof array_id, &err) ||
            sbatch(join, array_id, join_id, sizeof join_id, &err))
            goto fail;
        printf("array job %s (%d tasks), join job %s (after the array succeeds)\n", array_id, o.shards, join_id);
    }
    rc = fflush(stdout) ? SDM_EXIT_RUNTIME : SDM_EXIT_OK;
    goto end;
fail:
    fprintf(stderr, "sdmorph: %s\n", err.msg[0] ? err.msg : "out of memory");
    rc = err.code ? err.code : SDM_EXIT_RUNTIME;
end:
    for (int i = 0; names && i < o.shards; i++)
        free(names[i]);
    free(names);
    free(o.extra);
    sdm_recipe_free(&r);
    return rc;
}
