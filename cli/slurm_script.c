#include "slurm_script.h"

#include <string.h>

int sdm_sh_quote(const char *s, char *buf, size_t len)
{
    size_t n = 0;

    if (len < 3)
        return -1;
    buf[n++] = '\'';
    for (; *s; s++) {
        if (n + 6 >= len)
            return -1;
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n++] = '\'';
    buf[n] = '\0';
    return 0;
}

/* Writes s quoted, after a space. */
static void put_quoted(FILE *f, const char *s)
{
    char q[8192];

    if (sdm_sh_quote(s, q, sizeof q))
        q[0] = '\0';
    fprintf(f, " %s", q);
}

static void header(FILE *f, const sdm_slurm_job *j, const char *name, const char *log)
{
    fprintf(f,
            "#!/bin/sh\n# Written by `sdmorph slurm`; submit with sbatch (see README: one GPU, a host, a cluster).\n");
    fprintf(f, "#SBATCH --job-name=%s\n#SBATCH --ntasks=1\n#SBATCH --chdir=%s\n#SBATCH --output=%s\n", name, j->workdir,
            log);
    if (j->partition)
        fprintf(f, "#SBATCH --partition=%s\n", j->partition);
    if (j->time)
        fprintf(f, "#SBATCH --time=%s\n", j->time);
    for (int i = 0; i < j->n_extra; i++)
        fprintf(f, "#SBATCH %s\n", j->extra[i]);
}

int sdm_slurm_write_array(FILE *f, const sdm_slurm_job *j)
{
    char log[4200];

    snprintf(log, sizeof log, "%s.shard-%%a.log", j->log_stem);
    header(f, j, j->name, log);
    fprintf(f, "#SBATCH --array=1-%d\n", j->shards);
    if (j->gpus_per_task > 0)
        fprintf(f, "#SBATCH --gpus-per-task=%d\n", j->gpus_per_task);
    if (j->cpus_per_task > 0)
        fprintf(f, "#SBATCH --cpus-per-task=%d\n", j->cpus_per_task);
    fprintf(f, "# task I renders shard I of %d (SLURM_ARRAY_TASK_ID from SLURM_ARRAY_TASK_MIN)\nexec", j->shards);
    put_quoted(f, j->sdmorph);
    fprintf(f, " render");
    put_quoted(f, j->recipe);
    fprintf(f, " --shard auto --model");
    put_quoted(f, j->model);
    if (j->device) {
        fprintf(f, " --device");
        put_quoted(f, j->device);
    }
    fprintf(f, " --quiet\n");
    return ferror(f) ? -1 : 0;
}

int sdm_slurm_write_join(FILE *f, const sdm_slurm_job *j)
{
    char name[300], log[4200];

    snprintf(name, sizeof name, "%s-join", j->name);
    snprintf(log, sizeof log, "%s.join.log", j->log_stem);
    header(f, j, name, log);
    fprintf(f, "# runs once every shard finished (sbatch --dependency=afterok:ARRAY); needs no GPU\nexec");
    put_quoted(f, j->sdmorph);
    fprintf(f, " join");
    put_quoted(f, j->recipe);
    for (int i = 0; i < j->shards; i++) {
        fprintf(f, " \\\n    ");
        put_quoted(f, j->segments[i]);
    }
    fprintf(f, "\n");
    return ferror(f) ? -1 : 0;
}
