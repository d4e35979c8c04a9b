/* Paths of the files sdmorph reads and writes: one normal form to compare
 * them by, the system's length limits said up front instead of paths cut
 * silently, names derived from a user's name (temporary, .partial,
 * .frames-LIST) that always fit the name limit, and paths short enough to
 * leave room for the reason in a message. */
#ifndef SDM_PATHS_H
#define SDM_PATHS_H

#include <stddef.h>

#include "error.h"

/* The system's limits: a path (PATH_MAX, with its NUL) and one name in it. */
#define SDM_PATH_MAX 4096
#define SDM_NAME_MAX 255

/* The name part: "x.mp4" of "out/x.mp4", "" of "out/". */
const char *sdm_path_base(const char *path);

/* The extension of the name (".mp4"), NULL if it has none (".hidden" has none). */
const char *sdm_path_ext(const char *path);

/* "out/x.mp4" → "out/x.json" (ext without the dot); 0, or -1 if it does not fit len. */
int sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len);

/* The path two names of one file share: the real path of its folder (links
 * and "." and ".." resolved) and the name. A folder that does not exist yet
 * is resolved below its deepest existing ancestor, so "new/a.mp4" and
 * "new/./a.mp4" still compare equal. The file itself may be missing; a
 * link in its place is not followed (a rename replaces the link, not what
 * it points to). Errors name the path and the reason: SDM_EXIT_USAGE for
 * one too long or naming a folder, SDM_EXIT_RUNTIME for one the system
 * refuses (a file where a folder should be, no permission). */
int sdm_path_normalize(const char *path, char *out, size_t len, sdm_error *err);

/* A path for a message: a long one keeps its start and its end with "..."
 * between, so the message still has room to say what went wrong. */
const char *sdm_path_excerpt(const char *path, char *buf, size_t len);

/* A file name made of head and a tail of at most `reserve` bytes, within
 * SDM_NAME_MAX: head as is when it fits, else head cut (never inside a
 * UTF-8 character) and marked "~" plus 8 hex digits of a hash of the whole
 * head, so two long names still differ. 0, or -1 if len is too small. */
int sdm_name_fit(const char *head, size_t reserve, char *out, size_t len);


#endif
