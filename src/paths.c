#include "paths.h"

#include "hash.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sdm_path_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

const char *sdm_path_ext(const char *path)
{
    const char *base = sdm_path_base(path), *dot = strrchr(base, '.');
    return dot && dot != base ? dot : NULL;
}

int sdm_path_with_ext(const char *path, const char *ext, char *buf, size_t len)
{
    const char *dot = sdm_path_ext(path);
    size_t stem = dot ? (size_t)(dot - path) : strlen(path);

    return snprintf(buf, len, "%.*s.%s", (int)stem, path, ext) >= (int)len ? -1 : 0;
}

/* Where a cut at n bytes of s falls back to, so no UTF-8 character is split. */
static size_t utf8_floor(const char *s, size_t n)
{
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

const char *sdm_path_excerpt(const char *path, char *buf, size_t len)
{
    size_t n = strlen(path), head, tail;

    if (n <= 160 && n < len) {
        memcpy(buf, path, n + 1);
        return buf;
    }
    head = len > 200 ? 60 : len / 4;
    tail = len > 200 ? 90 : len / 3;
    if (head + tail + 4 > len || head + tail >= n) {
        snprintf(buf, len, "%s", path);
        return buf;
    }
    head = utf8_floor(path, head);
    tail = n - utf8_floor(path, n - tail);
    snprintf(buf, len, "%.*s...%s", (int)head, path, path + n - tail);
    return buf;
}

int sdm_name_fit(const char *head, size_t reserve, char *out, size_t len)
{
    size_t n = strlen(head), room, keep;

    if (reserve + 16 > SDM_NAME_MAX)
        return -1;
    room = SDM_NAME_MAX - reserve;
    if (n <= room)
        return snprintf(out, len, "%s", head) >= (int)len ? -1 : 0;
    keep = utf8_floor(head, room - 9); /* room for "~" and 8 hex digits */
    return snprintf(out, len, "%.*s~%08llx", (int)keep, head, sdm_hash_string(head) & 0xffffffffull) >= (int)len ? -1
                                                                                                                 : 0;
}

/* Moves the last component of dir (with the slashes after it) to the front
 * of rest: "a/b/" + "c/" → "a/" + "b/c/". 0, or -1 when dir has none left. */
static int pop_component(char *dir, char *rest, size_t rest_len)
{
    size_t n = strlen(dir);
    char moved[SDM_PATH_MAX];
    char *slash;

    while (n > 0 && dir[n - 1] == '/')
        n--;
    if (n == 0 || (n == 1 && dir[0] == '.'))
        return -1;
    dir[n] = '\0';
    slash = strrchr(dir, '/');
    snprintf(moved, sizeof moved, "%s/%s", slash ? slash + 1 : dir, rest);
    snprintf(rest, rest_len, "%s", moved);
    if (slash)
        slash[1] = '\0';
    else
        strcpy(dir, ".");
    return 0;
}

/* Appends the components of rest to the real path in out: "." is dropped,
 * ".." goes up, as the system will once the folders exist. */
static int append_lexical(char *out, size_t len, char *rest)
{
    char *save = NULL;

    for (char *c = strtok_r(rest, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t n = strlen(out);
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(out, '/');
            if (slash && slash != out)
                *slash = '\0';
            else
                strcpy(out, "/");
            continue;
        }
        if (snprintf(out + n, len - n, "%s%s", n > 1 ? "/" : "", c) >= (int)(len - n))
            return -1;
    }
    return 0;
}

int sdm_path_normalize(const char *path, char *out, size_t len, sdm_error *err)
{
    const char *base = sdm_path_base(path);
    char dir[SDM_PATH_MAX], rest[SDM_PATH_MAX] = "", real[PATH_MAX], shown[256];
    size_t n = strlen(path), dlen = (size_t)(base - path);

    sdm_path_excerpt(path, shown, sizeof shown);
    if (n >= SDM_PATH_MAX)
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s': the path is %zu bytes long; the system allows at most %d",
                             shown, n, SDM_PATH_MAX - 1);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s' names a folder, not a file", shown);
    if (strlen(base) > SDM_NAME_MAX)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "'%s': the file name is %zu bytes long; the system allows at "
                             "most %d",
                             shown, strlen(base), SDM_NAME_MAX);
    if (dlen)
        snprintf(dir, sizeof dir, "%.*s", (int)dlen, path);
    else
        strcpy(dir, ".");
    while (!realpath(dir, real)) {
        if (errno != ENOENT || pop_component(dir, rest, sizeof rest))
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "'%s': %s%s", shown, strerror(errno),
                                 errno == ENOTDIR ? " (a part of the path is a file, not a folder)" : "");
    }
    if (append_lexical(real, sizeof real, rest) ||
        snprintf(out, len, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base) >= (int)len)
        return sdm_error_set(err, SDM_EXIT_USAGE, "'%s': the full path is longer than the system allows (%d bytes)",
                             shown, SDM_PATH_MAX - 1);
    return 0;
}
