/* A set of files written together — a render's videos, contact sheet and
 * sidecars. Each is written under a temporary name in its target's folder,
 * DIR/.NAME.tmp-PID, and only once every one of them is complete are they
 * all renamed into place. A failed or interrupted render leaves every file
 * the user had as it was, and a good set is never half-replaced.
 *
 * POSIX renames one file atomically, not several. So the commit first makes
 * every temporary file durable (fsync: a full disk shows here, before
 * anything is replaced), keeps each file it is about to replace under a
 * backup name (a hard link, DIR/.NAME.old-PID), then renames; if one rename
 * fails, the renamed ones are put back from their backups and the earlier
 * set is whole again. What this cannot cover: the process killed (SIGKILL,
 * power loss) in the microseconds between the first and the last rename
 * leaves complete files of two renders, with the backups of the replaced
 * ones beside them; and a put-back rename that fails too (the message then
 * names the files left where).
 *
 * Each temporary file is held open with a lock while its set lives, and is
 * named after its target and the process. A later set that adds the same
 * target removes the temporary files and backups of it that earlier,
 * killed processes left (their process gone, ESRCH, and no lock held),
 * and nothing else. */
#ifndef SDM_FILESET_H
#define SDM_FILESET_H

#include "error.h"

typedef struct sdm_fileset sdm_fileset;

int sdm_fileset_new(sdm_fileset **out, sdm_error *err);

/* Whether target can be in a set: a file name, and room in the system's
 * path limit for its temporary, backup and .partial names beside it (an
 * output's path may be 4073 bytes, its temporary name taking 22 more).
 * What sdm_fileset_add would refuse about the name alone, without touching
 * the disk; SDM_EXIT_USAGE. */
int sdm_fileset_check_target(const char *target, sdm_error *err);

/* Adds target: removes what killed processes left of it, then creates its
 * temporary file (empty). Returns its index, or -1 (the message names the
 * target and why: no such folder, not writable, name too long). */
int sdm_fileset_add(sdm_fileset *fs, const char *target, sdm_error *err);
/* The index of target (compared as written), or -1. */
int sdm_fileset_find(const sdm_fileset *fs, const char *target);
int sdm_fileset_count(const sdm_fileset *fs);
const char *sdm_fileset_target(const sdm_fileset *fs, int i);
/* Where file i is written until the commit. */
const char *sdm_fileset_temp(const sdm_fileset *fs, int i);
/* Leaves file i out of the commit (the sidecars of an interrupted render):
 * its temporary file is removed now. */
void sdm_fileset_skip(sdm_fileset *fs, int i);

/* Renames every file that is not skipped onto its target, or with
 * partial != 0 onto its ".partial" name (out/x.mp4 → out/x.partial.mp4), as
 * described above. On failure nothing of the set is in place, every
 * temporary file is removed, and err says why. */
int sdm_fileset_commit(sdm_fileset *fs, int partial, sdm_error *err);
/* After a commit: where file i went; NULL if it was skipped or not committed. */
const char *sdm_fileset_written(const sdm_fileset *fs, int i);

/* Removes the temporary files of a set that was not committed. NULL-safe. */
void sdm_fileset_free(sdm_fileset **fs);

/* out/x.mp4 → out/x.partial.mp4, the name kept within the name limit. 0, or -1. */
int sdm_partial_path(const char *target, char *out, size_t len);

#endif
