/* Running ./sdmorph from a test as a user would, and the files it leaves:
 * shared by the command-line tests (test_cli, test_outputs, test_limits). */
#ifndef SDM_CLI_RUN_H
#define SDM_CLI_RUN_H

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* The whole file (NUL-terminated), *size its length; NULL if unreadable. */
static inline char *slurp_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;

    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        if (buf)
            buf[n] = '\0';
    }
    if (f)
        fclose(f);
    if (size)
        *size = buf ? n : -1;
    return buf;
}

/* A raw RGB24 output (.rgb): its bytes, *n whole frames of frame_bytes. */
static inline unsigned char *slurp_frames(const char *path, size_t frame_bytes, long *n)
{
    long size;
    unsigned char *b = (unsigned char *)slurp_file(path, &size);

    *n = b ? size / (long)frame_bytes : 0;
    return b;
}

static inline int file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of dir whose name contains `what`. */
static inline int count_entries(const char *dir, const char *what)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)))
        n += strstr(e->d_name, what) != NULL;
    if (d)
        closedir(d);
    return n;
}

static inline void copy_file(const char *from, const char *to)
{
    long n;
    char *text = slurp_file(from, &n);
    FILE *f = fopen(to, "wb");

    if (text && f)
        fwrite(text, 1, (size_t)n, f);
    if (f)
        fclose(f);
    free(text);
}

/* A variant of the bundle `model` in dir: its files, linked (copied where
 * copy is set: a test that writes beside them), and its model.yaml with
 * `from` replaced by `to` (from NULL: as it is). 0, or -1 where from is
 * not in model.yaml. */
static const char *const bundle_variant_files[] = { "text_encoder.pt", "unet.pt",    "vae_decoder.pt",
                                                    "vocab.json",      "merges.txt", "token_embedding.safetensors",
                                                    "vae_encoder.pt",  "model.yaml" };

static inline int bundle_variant(const char *model, const char *dir, const char *from, const char *to, int copy)
{
    const char *const *files = bundle_variant_files;
    const size_t n_files = sizeof bundle_variant_files / sizeof *bundle_variant_files - 1; /* model.yaml: below */
    char src[PATH_MAX + 32], dst[PATH_MAX + 32], *yaml, *hit;
    FILE *f;

    mkdir(dir, 0755);
    for (size_t i = 0; i < n_files; i++) {
        snprintf(src, sizeof src, "%s/%s", model, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (copy)
            copy_file(src, dst);
        else if (symlink(src, dst))
            return -1;
    }
    snprintf(src, sizeof src, "%s/model.yaml", model);
    snprintf(dst, sizeof dst, "%s/model.yaml", dir);
    yaml = slurp_file(src, NULL);
    hit = yaml && from ? strstr(yaml, from) : NULL;
    f = fopen(dst, "wb");
    if (f && yaml && hit)
        fprintf(f, "%.*s%s%s", (int)(hit - yaml), yaml, to, hit + strlen(from));
    else if (f && yaml)
        fputs(yaml, f);
    if (f)
        fclose(f);
    free(yaml);
    return !yaml || (from && !hit) ? -1 : 0;
}

/* Removes what bundle_variant made in dir, and dir once empty. */
static inline void bundle_variant_remove(const char *dir)
{
    char path[PATH_MAX + 32];

    for (size_t i = 0; i < sizeof bundle_variant_files / sizeof *bundle_variant_files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bundle_variant_files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Runs the program `path` with args (argv[0] included); captures stdout
 * and stderr together into out; returns the exit status (or 128+signal);
 * *maxrss_kb gets the child's peak RSS. A non-NULL `input` is its stdin,
 * `input_len` bytes (written from a child, so any size works). */
static inline int run_program(const char *path, char *const argv[], const char *input, size_t input_len, char *out,
                              size_t outlen, long *maxrss_kb)
{
    int fds[2], in[2] = { -1, -1 }, status = 0;
    struct rusage ru;
    pid_t pid, feeder = -1;
    size_t got = 0;
    ssize_t n;

    if (pipe(fds) || (input && pipe(in)))
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        if (input) {
            dup2(in[0], 0);
            close(in[1]);
        }
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    if (input) {
        close(in[0]);
        feeder = fork();
        if (feeder == 0) {
            signal(SIGPIPE, SIG_IGN);
            for (size_t done = 0; done < input_len;) {
                ssize_t w = write(in[1], input + done, input_len - done);
                if (w <= 0)
                    break;
                done += (size_t)w;
            }
            _exit(0);
        }
        close(in[1]);
    }
    for (;;) {
        char sink[4096];
        int room = got + 1 < outlen;
        n = read(fds[0], room ? out + got : sink, room ? outlen - got - 1 : sizeof sink);
        if (n <= 0)
            break;
        if (room)
            got += (size_t)n; /* past the buffer: read on, so the child never blocks */
    }
    out[got] = '\0';
    close(fds[0]);
    wait4(pid, &status, 0, &ru);
    if (feeder > 0)
        waitpid(feeder, NULL, 0);
    if (maxrss_kb)
        *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ./sdmorph, as run_program runs it. */
static inline int run_input(char *const argv[], const char *input, size_t input_len, char *out, size_t outlen,
                            long *maxrss_kb)
{
    return run_program(test_sdmorph(), argv, input, input_len, out, outlen, maxrss_kb);
}

static inline int run(char *const argv[], char *out, size_t outlen, long *maxrss_kb)
{
    return run_input(argv, NULL, 0, out, outlen, maxrss_kb);
}

/* Starts ./sdmorph with argv (argv[0] included, NULL-terminated) in the
 * background, its stderr into the file log; its pid (stop_with ends it). */
static inline pid_t start_logged(char *const argv[], const char *log)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execv(test_sdmorph(), argv);
        _exit(127);
    }
    return pid;
}

/* Sends sig to pid and waits for it to end: its exit status, or 128 plus
 * the signal that ended it. */
static inline int stop_with(pid_t pid, int sig)
{
    int status = 0;

    kill(pid, sig);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Waits up to `seconds` for `what` in the file path; 1 when it came. */
static inline int wait_for_text(const char *path, const char *what, int seconds)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };

    for (int i = 0; i < seconds * 50; i++) {
        char *text = slurp_file(path, NULL);
        int seen = text && strstr(text, what);
        free(text);
        if (seen)
            return 1;
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Waits up to `seconds` until process pid catches signal sig (its handler
 * is installed: /proc/PID/status, SigCgt); 1 when it does. Starting can
 * take seconds on a busy machine. */
static inline int wait_catches(pid_t pid, int sig, int seconds)
{
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    char path[64], text[4096], *line;
    unsigned long long mask;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    for (int i = 0; i < seconds * 100; i++) {
        int fd = open(path, O_RDONLY); /* a /proc file says its size is 0: read it */
        ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
        if (fd >= 0)
            close(fd);
        text[n > 0 ? n : 0] = '\0';
        line = strstr(text, "\nSigCgt:");
        mask = line ? strtoull(line + 8, NULL, 16) : 0;
        if (mask & (1ull << (sig - 1)))
            return 1;
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* The commands' tests start here: ./sdmorph and the analytic bundle built
 * (model gets its real path, and $SDMORPH_MODEL is set to it), and a
 * fresh folder from the template tmp. 0, or -1 after saying why not
 * (a skip, or an error). */
static inline int cli_test_setup(char *model, char *tmp)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s/models/analytic", test_build_dir());
    if (getenv("SDMORPH_MODEL"))
        snprintf(path, sizeof path, "%s", getenv("SDMORPH_MODEL"));
    if (!file_exists(test_sdmorph()) || !realpath(path, model)) {
        SKIP("./sdmorph or the analytic bundle not built (run make first)");
        return -1;
    }
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        test_failed++;
        return -1;
    }
    setenv("SDMORPH_MODEL", model, 1);
    return 0;
}

#endif
