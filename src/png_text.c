#include "png_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static const uint8_t SIGNATURE[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Latin-1 bytes as UTF-8 (at most twice as long). */
static char *latin1_to_utf8(const uint8_t *s, size_t n)
{
    char *out = malloc(2 * n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            *o++ = (char)s[i];
        } else {
            *o++ = (char)(0xc0 | s[i] >> 6);
            *o++ = (char)(0x80 | (s[i] & 0x3f));
        }
    }
    *o = '\0';
    return out;
}

/* zlib data inflated, up to SDM_PNG_MAX_TEXT bytes; NULL with *why on failure. */
static uint8_t *inflate_text(const uint8_t *s, size_t n, size_t *out_len, const char **why)
{
    z_stream z;
    size_t cap = 4096;
    uint8_t *out = malloc(cap);
    int rc = Z_OK;

    memset(&z, 0, sizeof z);
    *why = "out of memory";
    if (!out || inflateInit(&z) != Z_OK) {
        free(out);
        return NULL;
    }
    z.next_in = (Bytef *)s;
    z.avail_in = (uInt)n;
    while (rc == Z_OK) {
        if (z.total_out == cap) {
            uint8_t *b = cap < SDM_PNG_MAX_TEXT ? realloc(out, 2 * cap) : NULL;
            if (!b) {
                *why = cap < SDM_PNG_MAX_TEXT ? "out of memory" : "its text inflates to more than 1 MiB";
                break;
            }
            out = b;
            cap *= 2;
        }
        z.next_out = out + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR && z.avail_in == 0) {
            *why = "its compressed text is cut short";
            break;
        }
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            *why = "its compressed text is not valid zlib data";
        free(out);
        return NULL;
    }
    *out_len = z.total_out;
    return out;
}

/* UTF-8 text bytes (iTXt) as a string; NUL bytes end it. */
static char *utf8_text(const uint8_t *s, size_t n)
{
    size_t len = strnlen((const char *)s, n);
    char *out = malloc(len + 1);

    if (out) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

/* One text chunk's keyword and text; 1 where the keyword is key (then *out
 * set, or an error), 0 where it is another, -1 on error. */
static int read_chunk(const char *name, const char *type, const uint8_t *d, size_t n, const char *key, char **out,
                      sdm_error *err)
{
    const uint8_t *nul = memchr(d, 0, n), *t;
    size_t kw = nul ? (size_t)(nul - d) : 0, tn, raw_len = 0;
    int compressed = !strcmp(type, "zTXt"), latin1 = strcmp(type, "iTXt") != 0;
    const char *why = NULL;
    uint8_t *raw = NULL;

    if (!nul || kw == 0 || kw > 79)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: a %s chunk without a keyword", name, type);
    if (kw != strlen(key) || memcmp(d, key, kw))
        return 0;
    t = nul + 1;
    tn = n - kw - 1;
    if (compressed || !latin1) {
        /* zTXt: method; iTXt: flag, method, language\0, translated keyword\0 */
        size_t skip = compressed ? 1 : 2;
        if (tn < skip || (!compressed && t[0] > 1) || t[skip - 1] != 0)
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s chunk '%s' has an unknown compression", name, type, key);
        compressed = compressed || t[0] == 1;
        t += skip;
        tn -= skip;
        for (int i = 0; !latin1 && i < 2; i++) {
            const uint8_t *z = memchr(t, 0, tn);
            if (!z)
                return sdm_error_set(err, SDM_EXIT_USAGE, "%s: iTXt chunk '%s' is cut short", name, key);
            tn -= (size_t)(z - t) + 1;
            t = z + 1;
        }
    }
    if (compressed) {
        raw = inflate_text(t, tn, &raw_len, &why);
        if (!raw)
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s chunk '%s': %s", name, type, key, why);
        t = raw;
        tn = raw_len;
    } else if (tn > SDM_PNG_MAX_TEXT) {
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s chunk '%s' is more than 1 MiB", name, type, key);
    }
    *out = latin1 ? latin1_to_utf8(t, tn) : utf8_text(t, tn);
    free(raw);
    if (!*out)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
    return 1;
}

int sdm_png_text(const char *name, const uint8_t *data, size_t len, const char *key, char **out, sdm_error *err)
{
    size_t at = sizeof SIGNATURE;

    *out = NULL;
    if (len < sizeof SIGNATURE || memcmp(data, SIGNATURE, sizeof SIGNATURE))
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: not a PNG file", name);
    while (len - at >= 12) {
        uint32_t n = be32(data + at);
        char type[5];
        int got;

        memcpy(type, data + at + 4, 4);
        type[4] = '\0';
        if (n > len - at - 12)
            return sdm_error_set(err, SDM_EXIT_USAGE, "%s: chunk %s at byte %zu runs past the end of the file", name,
                                 type, at);
        if (!strcmp(type, "IEND"))
            break;
        if (!strcmp(type, "tEXt") || !strcmp(type, "zTXt") || !strcmp(type, "iTXt")) {
            uLong crc = crc32(crc32(0L, Z_NULL, 0), data + at + 4, (uInt)n + 4);
            if (crc != be32(data + at + 8 + n))
                return sdm_error_set(err, SDM_EXIT_USAGE, "%s: chunk %s at byte %zu has a bad CRC (a damaged file?)",
                                     name, type, at);
            got = read_chunk(name, type, data + at + 8, n, key, out, err);
            if (got)
                return got < 0 ? -1 : 0;
        }
        at += (size_t)n + 12;
    }
    if (at < len && len - at < 12)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: the chunk at byte %zu runs past the end of the file", name, at);
    return 0;
}

int sdm_png_text_file(const char *path, const char *key, char **out, sdm_error *err)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;
    int rc = -1;

    *out = NULL;
    if (!f)
        return sdm_error_set(err, SDM_EXIT_USAGE, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: cannot read it (not a regular file?)", path);
        goto end;
    }
    if ((unsigned long)size > SDM_PNG_MAX_FILE) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: %ld bytes; a PNG of more than 256 MiB is not read", path, size);
        goto end;
    }
    data = malloc(size ? (size_t)size : 1);
    if (!data) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory");
        goto end;
    }
    if (fread(data, 1, (size_t)size, f) != (size_t)size) {
        sdm_error_set(err, SDM_EXIT_USAGE, "%s: cannot read it", path);
        goto end;
    }
    rc = sdm_png_text(path, data, (size_t)size, key, out, err);
end:
    free(data);
    fclose(f);
    return rc;
}
