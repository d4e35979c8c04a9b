#include "fileset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

/* A temporary name is HEAD.tmp-PID (HEAD.tmp-PID.spool for a GIF's frame
 * spool), a backup HEAD.old-PID, HEAD being "." and the target's name, cut
 * to leave room for the longest of those tails. */
#define TAIL_RESERVE (sizeof ".tmp-" - 1 + 10 + sizeof ".spool" - 1)

typedef enum { OLD_NONE, OLD_LINKED, OLD_TO_MOVE, OLD_MOVED } old_state;

typedef struct {
    char *target, *temp, *backup, *dst;
    char *written; /* after a commit */
    int fd; /* the temporary file, locked: its owner is alive */
    int skip, renamed;
    old_state old;
} set_file;

struct sdm_fileset {
    set_file *f;
    int n, cap;
    int committed;
};

int sdm_fileset_new(sdm_fileset **out, sdm_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
}

/* "out/" of "out/x.mp4" ("" for "x.mp4") and the head of its derived names. */
static int split_target(const char *target, char *dir, size_t dir_len, char *head, size_t head_len)
{
    const char *base = sdm_path_base(target);
    char dotted[SDM_NAME_MAX + 2];

    if (snprintf(dir, dir_len, "%.*s", (int)(base - target), target) >= (int)dir_len)
        return -1;
    snprintf(dotted, sizeof dotted, ".%s", base);
    return sdm_name_fit(dotted, TAIL_RESERVE, head, head_len);
}

/* pid from "DIGITS" or "DIGITS.spool"; 0 if the text is neither. */
static long parse_pid(const char *s, int allow_spool)
{
    char *end;
    long pid;

    if (*s < '1' || *s > '9')
        return 0;
    pid = strtol(s, &end, 10);
    if (*end && !(allow_spool && !strcmp(end, ".spool")))
        return 0;
    return pid > 0 ? pid : 0;
}

/* A temporary file with no lock on it: its set is gone. */
static int unlocked(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), free_ = 0;

    if (fd < 0)
        return 0;
    free_ = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return free_;
}

/* Left by a process that is gone. A temporary file's lock also guards
 * against pids of other machines (a shared folder) and of other pid
 * namespaces, which kill() cannot see. */
static int is_stale(const char *path, long pid, int is_tmp)
{
    if (pid == (long)getpid())
        return is_tmp && unlocked(path); /* an earlier process had our pid */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return 0;
    return !is_tmp || unlocked(path);
}

/* Removes HEAD.tmp-PID[.spool] and HEAD.old-PID in dir whose process is
 * gone: what a killed render of the same target left. */
static void remove_stale(const char *dir, const char *head)
{
    size_t hl = strlen(head);
    DIR *d = opendir(*dir ? dir : ".");
    struct dirent *e;

    while (d && (e = readdir(d))) {
        const char *tail = e->d_name + hl;
        char path[SDM_PATH_MAX];
        struct stat st;
        long pid = 0;
        int is_tmp = 0;

        if (strncmp(e->d_name, head, hl))
            continue;
        if (!strncmp(tail, ".tmp-", 5)) {
            pid = parse_pid(tail + 5, 1);
            is_tmp = !strstr(tail, ".spool");
        } else if (!strncmp(tail, ".old-", 5)) {
            pid = parse_pid(tail + 5, 0);
        }
        if (!pid || snprintf(path, sizeof path, "%s%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &st) || !S_ISREG(st.st_mode) || !is_stale(path, pid, is_tmp))
            continue;
        if (unlink(path) == 0)
            sdm_info("removed %s, left by process %ld, which is gone", path, pid);
    }
    if (d)
        closedir(d);
}

static int grow(sdm_fileset *fs, sdm_error *err)
{
    set_file *f;

    if (fs->n < fs->cap)
        return 0;
    f = realloc(fs->f, sizeof *f * (fs->cap ? 2 * fs->cap : 8));
    if (!f)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    fs->f = f;
    fs->cap = fs->cap ? 2 * fs->cap : 8;
    return 0;
}

int sdm_fileset_check_target(const char *target, sdm_error *err)
{
    char dir[SDM_PATH_MAX], head[SDM_NAME_MAX + 1], partial[SDM_PATH_MAX], shown[256];

    sdm_path_excerpt(target, shown, sizeof shown);
    if (!*sdm_path_base(target))
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s' names a folder, not a file", shown);
    if (strlen(sdm_path_base(target)) > SDM_NAME_MAX)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "'%s': the file name is %zu bytes long; the system allows at most "
                             "%d",
                             shown, strlen(sdm_path_base(target)), SDM_NAME_MAX);
    if (strlen(target) >= SDM_PATH_MAX || split_target(target, dir, sizeof dir, head, sizeof head))
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s': the path is %zu bytes long; the system allows at most %d",
                             shown, strlen(target), SDM_PATH_MAX - 1);
    /* the longest name made beside it: HEAD.tmp-PID.spool */
    if (strlen(dir) + strlen(head) + TAIL_RESERVE >= SDM_PATH_MAX || sdm_partial_path(target, partial, sizeof partial))
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "'%s': the path is %zu bytes long; at most %ld for this name, to "
                             "leave room for its temporary files' names in the system's %d",
                             shown, strlen(target),
                             (long)(SDM_PATH_MAX - 1 - TAIL_RESERVE) - (long)strlen(head) +
                                 (long)strlen(sdm_path_base(target)),
                             SDM_PATH_MAX - 1);
    return 0;
}

int sdm_fileset_add(sdm_fileset *fs, const char *target, sdm_error *err)
{
    char dir[SDM_PATH_MAX], head[SDM_NAME_MAX + 1], shown[256];
    set_file *f;
    int fd;

    sdm_path_excerpt(target, shown, sizeof shown);
    if (sdm_fileset_check_target(target, err))
        return -1;
    if (sdm_fileset_find(fs, target) >= 0)
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s' is named twice", shown);
    if (split_target(target, dir, sizeof dir, head, sizeof head) || grow(fs, err))
        return -1;
    f = &fs->f[fs->n];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (asprintf(&f->temp, "%s%s.tmp-%ld", dir, head, (long)getpid()) < 0 ||
        asprintf(&f->backup, "%s%s.old-%ld", dir, head, (long)getpid()) < 0 || !(f->target = strdup(target))) {
        free(f->temp);
        free(f->backup);
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    }
    fs->n++;
    remove_stale(dir, head);
    fd = open(f->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", shown, strerror(errno));
        goto fail;
    }
    f->fd = fd;
    flock(fd, LOCK_EX | LOCK_NB);
    return fs->n - 1;
fail:
    /* not created, or someone else's: never removed as ours */
    free(f->temp);
    f->temp = NULL;
    f->skip = 1;
    return -1;
}

int sdm_fileset_find(const sdm_fileset *fs, const char *target)
{
    for (int i = 0; fs && i < fs->n; i++)
        if (!strcmp(fs->f[i].target, target))
            return i;
    return -1;
}

int sdm_fileset_count(const sdm_fileset *fs)
{
    return fs ? fs->n : 0;
}

const char *sdm_fileset_target(const sdm_fileset *fs, int i)
{
    return fs && i >= 0 && i < fs->n ? fs->f[i].target : NULL;
}

const char *sdm_fileset_temp(const sdm_fileset *fs, int i)
{
    return fs && i >= 0 && i < fs->n ? fs->f[i].temp : NULL;
}

const char *sdm_fileset_written(const sdm_fileset *fs, int i)
{
    return fs && i >= 0 && i < fs->n ? fs->f[i].written : NULL;
}

static void release(set_file *f, int remove_temp)
{
    if (remove_temp && f->temp)
        unlink(f->temp);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

void sdm_fileset_skip(sdm_fileset *fs, int i)
{
    if (!fs || i < 0 || i >= fs->n || fs->f[i].skip)
        return;
    fs->f[i].skip = 1;
    release(&fs->f[i], 1);
}

int sdm_partial_path(const char *target, char *out, size_t len)
{
    const char *ext = sdm_path_ext(target), *base = sdm_path_base(target);
    char stem[SDM_NAME_MAX + 1], tail[64], name[SDM_NAME_MAX + 1];

    if (!ext)
        ext = base + strlen(base);
    if (snprintf(tail, sizeof tail, ".partial%s", ext) >= (int)sizeof tail)
        return -1;
    snprintf(stem, sizeof stem, "%.*s", (int)(ext - base), base);
    if (sdm_name_fit(stem, strlen(tail), name, sizeof name))
        return -1;
    return snprintf(out, len, "%.*s%s%s", (int)(base - target), target, name, tail) >= (int)len ? -1 : 0;
}

/* Before anything is renamed: where each file goes, made durable, and a
 * backup link of each file it replaces. */
static int prepare(sdm_fileset *fs, int partial, sdm_error *err)
{
    char dst[SDM_PATH_MAX];

    for (int i = 0; i < fs->n; i++) {
        set_file *f = &fs->f[i];
        struct stat st;

        if (f->skip)
            continue;
        if (partial ? sdm_partial_path(f->target, dst, sizeof dst) : snprintf(dst, sizeof dst, "%s", f->target) < 0)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: no room for its .partial name", f->target);
        if (!(f->dst = strdup(dst)))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        if (f->fd < 0 || fsync(f->fd) < 0)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: write failed: %s", f->target,
                                 f->fd < 0 ? "its temporary file is gone" : strerror(errno));
        if (lstat(f->dst, &st) < 0) {
            if (errno != ENOENT)
                return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: %s", f->dst, strerror(errno));
            continue;
        }
        if (S_ISDIR(st.st_mode))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s is a folder; nothing was written", f->dst);
        unlink(f->backup);
        /* no hard links here (some network and FAT file systems): the old
         * file is moved aside just before its rename instead */
        f->old = link(f->dst, f->backup) == 0 ? OLD_LINKED : OLD_TO_MOVE;
    }
    return 0;
}

/* Puts back every file renamed so far; names in `left` what could not be. */
static void roll_back(sdm_fileset *fs, char *left, size_t left_len)
{
    for (int i = fs->n - 1; i >= 0; i--) {
        set_file *f = &fs->f[i];
        int ok = 1;

        if (f->renamed && f->old == OLD_NONE)
            ok = unlink(f->dst) == 0;
        else if (f->renamed || f->old == OLD_MOVED)
            ok = rename(f->backup, f->dst) == 0;
        else if (f->old == OLD_LINKED)
            unlink(f->backup);
        if (!ok) {
            size_t n = strlen(left);
            snprintf(left + n, left_len - n, "%s%s (the earlier one is %s)", n ? ", " : "", f->dst,
                     f->old == OLD_NONE ? "none" : f->backup);
        }
        f->renamed = 0;
        f->old = OLD_NONE;
    }
}

static void sync_folder(const char *path)
{
    char dir[SDM_PATH_MAX];
    const char *base = sdm_path_base(path);
    int fd;

    if (base == path)
        strcpy(dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(base - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int sdm_fileset_commit(sdm_fileset *fs, int partial, sdm_error *err)
{
    char left[1024] = "";
    int rc = -1;

    if (!fs || fs->committed)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "sdm_fileset_commit: %s", fs ? "called twice" : "no set");
    fs->committed = 1;
    if (prepare(fs, partial, err))
        goto end;
    for (int i = 0; i < fs->n; i++) {
        set_file *f = &fs->f[i];
        if (f->skip)
            continue;
        if (f->old == OLD_TO_MOVE) {
            if (rename(f->dst, f->backup) < 0) {
                sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot replace %s: %s", f->dst, strerror(errno));
                goto end;
            }
            f->old = OLD_MOVED;
        }
        if (rename(f->temp, f->dst) < 0) {
            sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot write %s: %s", f->dst, strerror(errno));
            goto end;
        }
        f->renamed = 1;
    }
    for (int i = 0; i < fs->n; i++) {
        set_file *f = &fs->f[i];
        if (f->skip)
            continue;
        if (f->old != OLD_NONE)
            unlink(f->backup);
        sync_folder(f->dst);
        f->written = f->dst;
        f->dst = NULL;
        release(f, 0);
    }
    rc = 0;
end:
    if (rc) {
        roll_back(fs, left, sizeof left);
        if (*left && strlen(err->msg) + 64 < sizeof err->msg)
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), "; could not put back %s", left);
        else if (strlen(err->msg) + 64 < sizeof err->msg)
            strcat(err->msg, "; the earlier files are as they were");
        for (int i = 0; i < fs->n; i++)
            release(&fs->f[i], 1);
    }
    return rc;
}

void sdm_fileset_free(sdm_fileset **pfs)
{
    sdm_fileset *fs = pfs ? *pfs : NULL;

    if (!fs)
        return;
    for (int i = 0; i < fs->n; i++) {
        set_file *f = &fs->f[i];
        release(f, !f->written);
        free(f->target);
        free(f->temp);
        free(f->backup);
        free(f->dst);
        free(f->written);
    }
    free(fs->f);
    free(fs);
    *pfs = NULL;
}
