/* A real Slurm: a one-node cluster started here (tests/slurm_one_node.sh,
 * everything in a temporary folder, daemons stopped by their pids), the
 * demo recipe on the analytic model submitted by `sdmorph slurm --shards 3
 * --submit` as an array of three renders and a join job after it; the
 * join's MP4 must equal one render's byte for byte. Skips where Slurm or
 * munge are not installed or not root; every wait is bounded. */
#include <limits.h>
#include <time.h>

#include "cli_run.h"
#include "test.h"

static char dir[] = "/tmp/sdm-slurm-XXXXXX";
static char model[2048], script[2048];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Whether name is an executable on PATH or in /usr/sbin (where Debian puts the daemons). */
static int have(const char *name)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX], list[8192];

    snprintf(list, sizeof list, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, sizeof buf, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Runs a shell command (bounded by `timeout`), its output into out. */
static int shell(const char *cmd, char *out, size_t len)
{
    FILE *f;
    size_t got = 0, n;
    int st;

    fflush(NULL);
    f = popen(cmd, "r");
    if (!f)
        return -1;
    while (got + 1 < len && (n = fread(out + got, 1, len - got - 1, f)) > 0)
        got += n;
    out[got] = '\0';
    st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The demo recipe, its output into dir. */
static int write_demo(const char *recipe)
{
    char *text = slurp_file("recipes/demo.yaml", NULL), *at, buf[16384], dest[4200];

    at = text ? strstr(text, "output: ../out/demo.mp4") : NULL;
    if (!at) {
        free(text);
        return -1;
    }
    snprintf(dest, sizeof dest, "output: %s/demo.mp4", dir);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - text), text, dest, at + strlen("output: ../out/demo.mp4"));
    write_file(recipe, buf);
    free(text);
    return 0;
}

/* Waits (at most limit seconds) for job id to end; its final state into state. */
static void wait_job(const char *id, double limit, char *state, size_t len)
{
    char cmd[256], out[8192];
    double t0 = now_s();

    snprintf(state, len, "not finished after %.0f s", limit);
    snprintf(cmd, sizeof cmd, "timeout 10 scontrol show job %s 2>&1", id);
    while (now_s() - t0 < limit) {
        char *s;
        shell(cmd, out, sizeof out);
        s = strstr(out, "JobState=");
        if (s) {
            s += 9;
            s[strcspn(s, " \n")] = '\0';
            if (strcmp(s, "PENDING") && strcmp(s, "RUNNING") && strcmp(s, "CONFIGURING") && strcmp(s, "COMPLETING")) {
                snprintf(state, len, "%s", s);
                return;
            }
        }
        if (strstr(out, "DependencyNeverSatisfied")) {
            snprintf(state, len, "DependencyNeverSatisfied (a shard failed)");
            return;
        }
        usleep(300000);
    }
}

static void run_cluster(const char *bin)
{
    char recipe[4200], real[PATH_MAX], single[4200], joined[4200], cmd[16384], out[16384], state[128];
    double t0 = now_s(), t_up, t_done;
    char *id;

    snprintf(recipe, sizeof recipe, "%s/demo.yaml", dir);
    CHECK_INT(write_demo(recipe), 0);
    CHECK(realpath(recipe, real) != NULL);
    snprintf(single, sizeof single, "%s/single.mp4", dir);
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' render '%s' --model '%s' -q -o '%s' 2>&1", bin, real, model, single);
    CHECK_INT(shell(cmd, out, sizeof out), 0);
    t_up = now_s();
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout 60 '%s' slurm '%s' --shards 3 --model '%s' --submit 2>&1", dir, bin,
             real, model);
    CHECK_INT(shell(cmd, out, sizeof out), 0);
    id = strstr(out, "join job ");
    CHECK(id != NULL);
    if (!id) {
        fprintf(stderr, "%s\n", out);
        return;
    }
    id += strlen("join job ");
    id[strspn(id, "0123456789")] = '\0';
    wait_job(id, 240, state, sizeof state);
    t_done = now_s();
    CHECK_STR(state, "COMPLETED");
    snprintf(joined, sizeof joined, "%s/demo.mp4", dir);
    long na, nb;
    char *a = slurp_file(single, &na), *b = slurp_file(joined, &nb);
    CHECK(a && b && na == nb && na > 1000 && !memcmp(a, b, (size_t)na));
    free(a);
    free(b);
    if (strcmp(state, "COMPLETED")) {
        snprintf(cmd, sizeof cmd, "tail -n 5 '%s'/demo.*.log 2>&1", dir);
        shell(cmd, out, sizeof out);
        fprintf(stderr, "the jobs' logs:\n%s\n", out);
    }
    printf("slurm: one render %.1f s; array of 3 shards + join on the one-node cluster %.1f s\n", t_up - t0,
           t_done - t_up);
}

int main(void)
{
    char cwd[1024], bin[PATH_MAX], cmd[8192], out[8192];
    double t0 = now_s();
    int up;

#ifdef UNDER_ASAN
    /* its renders and scripts are test_shard's under ASan; this adds the daemons */
    SKIP("Slurm test under ASan: the sharded renders and scripts are test_shard's (make test runs this)");
    return test_report();
#endif
    if (!have("slurmctld") || !have("slurmd") || !have("munged") || !have("sbatch") || !have("scontrol")) {
        SKIP(
            "Slurm test: slurmctld, slurmd, munged, sbatch or scontrol missing (apt-get install slurm-wlm munge, "
            "or make deps)");
        return test_report();
    }
    if (geteuid() != 0) {
        SKIP("Slurm test: needs root (slurmd runs the jobs as their user)");
        return test_report();
    }
    if (!getcwd(cwd, sizeof cwd) || !realpath(test_sdmorph(), bin) || !mkdtemp(dir)) {
        fprintf(stderr, "no temporary folder or no sdmorph\n");
        return 1;
    }
    snprintf(model, sizeof model, "%s/%s/models/analytic", cwd, test_build_dir());
    snprintf(script, sizeof script, "%s/tests/slurm_one_node.sh", cwd);
    snprintf(cmd, sizeof cmd, "%s/slurm.conf", dir);
    setenv("SLURM_CONF", cmd, 1);
    snprintf(cmd, sizeof cmd, "timeout 90 sh '%s' start '%s' 2>&1", script, dir);
    up = shell(cmd, out, sizeof out) == 0;
    CHECK(up);
    if (up) {
        printf("slurm: one-node cluster up in %.1f s\n", now_s() - t0);
        run_cluster(bin);
    } else {
        fprintf(stderr, "the cluster did not start: %s\n", out);
    }
    snprintf(cmd, sizeof cmd, "timeout 30 sh '%s' stop '%s' 2>&1", script, dir);
    CHECK_INT(shell(cmd, out, sizeof out), 0);
    printf("slurm: the whole test took %.1f s\n", now_s() - t0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", dir);
    return test_report();
}
