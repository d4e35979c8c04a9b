/* The two sbatch scripts of a sharded render on Slurm: a job array whose
 * task I runs `sdmorph render RECIPE --shard auto` (shard I of N), and a
 * join job, submitted with --dependency=afterok on the array, that runs
 * `sdmorph join` on every segment. Paths are absolute, so the scripts run
 * from any node that sees the same files. */
#ifndef SDM_SLURM_SCRIPT_H
#define SDM_SLURM_SCRIPT_H

#include <stdio.h>

typedef struct {
    const char *sdmorph; /* the executable, absolute */
    const char *recipe; /* absolute */
    const char *model; /* absolute bundle directory */
    const char *workdir; /* where the jobs run (the recipe's outputs are relative to it) */
    const char *name; /* job name */
    const char *log_stem; /* logs: STEM.shard-%a.log, STEM.join.log */
    int shards;
    const char *partition; /* NULL: the cluster's default */
    int gpus_per_task; /* 0: none asked for */
    int cpus_per_task; /* 0: the cluster's default */
    const char *time; /* --time, NULL: the partition's default */
    const char *const *extra; /* more #SBATCH lines' options, e.g. "--account=x" */
    int n_extra;
    const char *device; /* render --device, NULL: render's default */
    const char *const *segments; /* the N manifests, in shard order */
} sdm_slurm_job;

/* 0, or -1 on a write error. */
int sdm_slurm_write_array(FILE *f, const sdm_slurm_job *j);
int sdm_slurm_write_join(FILE *f, const sdm_slurm_job *j);

/* s quoted for sh: 'it'\''s'. Into buf of len; 0, or -1 if it does not fit. */
int sdm_sh_quote(const char *s, char *buf, size_t len);

#endif
