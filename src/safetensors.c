/* safetensors, read and checked. The header is parsed strictly (json-c's
 * strict mode, UTF-8 validated, nothing but spaces after it); each tensor's
 * numbers are checked with overflow-checked arithmetic before any is used,
 * then the tensors, sorted by offset, must tile the data section exactly
 * (what the format's reference implementation requires). Data is read
 * with pread, so a file of any size costs only its header in memory. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

static const char *const dtype_names[SDM_ST_DTYPE_COUNT] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
};
static const unsigned char dtype_sizes[SDM_ST_DTYPE_COUNT] = { 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8 };

struct sdm_safetensors {
    char *name; /* for messages */
    int fd; /* -1 for memory */
    const unsigned char *mem;
    uint64_t data_start, data_len;
    json_object *header; /* owns the tensor names */
    json_object *metadata; /* inside header; NULL if none */
    sdm_st_tensor *tensors;
    int n;
};

const char *sdm_st_dtype_name(sdm_st_dtype d)
{
    return d >= 0 && d < SDM_ST_DTYPE_COUNT ? dtype_names[d] : "?";
}

int sdm_st_dtype_from_str(const char *s, sdm_st_dtype *out)
{
    for (int i = 0; i < SDM_ST_DTYPE_COUNT; i++) {
        if (!strcmp(s, dtype_names[i])) {
            *out = (sdm_st_dtype)i;
            return 0;
        }
    }
    return -1;
}

size_t sdm_st_dtype_size(sdm_st_dtype d)
{
    return d >= 0 && d < SDM_ST_DTYPE_COUNT ? dtype_sizes[d] : 0;
}

/* ------------------------------------------------------------------ */
/* reading bytes                                                        */

static int read_at(const sdm_safetensors *st, uint64_t off, void *buf, size_t n, sdm_error *err)
{
    size_t done = 0;

    if (st->mem) {
        memcpy(buf, st->mem + off, n);
        return 0;
    }
    while (done < n) {
        ssize_t got = pread(st->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot read %s: %s", st->name, strerror(errno));
        if (got == 0)
            return sdm_error_set(err, SDM_EXIT_RUNTIME,
                                 "%s ends before its header says it does (was it cut "
                                 "short while open?)",
                                 st->name);
        done += (size_t)got;
    }
    return 0;
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* ------------------------------------------------------------------ */
/* the header                                                           */

/* A file that is not valid safetensors: what is wrong, and with which tensor. */
static int bad(const sdm_safetensors *st, sdm_error *err, const char *tensor, const char *what)
{
    return sdm_error_set(err, SDM_EXIT_USAGE, "%s is not a valid safetensors file: %s%.80s%s%s", st->name,
                         tensor ? "tensor \"" : "", tensor ? tensor : "", tensor ? "\": " : "", what);
}

/* A non-negative JSON integer. */
static int get_u64(json_object *o, uint64_t *out)
{
    if (!json_object_is_type(o, json_type_int) || json_object_get_int64(o) < 0)
        return -1;
    *out = json_object_get_uint64(o);
    return 0;
}

static int parse_shape(const sdm_safetensors *st, const char *name, json_object *shape, sdm_st_tensor *t,
                       sdm_error *err)
{
    size_t nd;
    char what[96];

    if (!json_object_is_type(shape, json_type_array))
        return bad(st, err, name, "\"shape\" is not a list");
    nd = json_object_array_length(shape);
    if (nd > SDM_ST_MAX_DIMS) {
        snprintf(what, sizeof what, "%zu dimensions; at most %d are read", nd, SDM_ST_MAX_DIMS);
        return bad(st, err, name, what);
    }
    t->ndim = (int)nd;
    t->numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_object_array_get_idx(shape, i), &d) || d > INT64_MAX)
            return bad(st, err, name, "a \"shape\" entry is not a non-negative integer");
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(t->numel, d, &t->numel))
            return bad(st, err, name, "its element count overflows 64 bits");
    }
    if (__builtin_mul_overflow(t->numel, (uint64_t)dtype_sizes[t->dtype], &t->nbytes))
        return bad(st, err, name, "its size in bytes overflows 64 bits");
    return 0;
}

static int parse_tensor(const sdm_safetensors *st, const char *name, json_object *info, sdm_st_tensor *t,
                        sdm_error *err)
{
    json_object *dtype, *shape, *offs;
    uint64_t begin, end;
    char what[160];

    memset(t, 0, sizeof *t);
    t->name = name;
    if (!json_object_is_type(info, json_type_object) || !json_object_object_get_ex(info, "dtype", &dtype) ||
        !json_object_object_get_ex(info, "shape", &shape) || !json_object_object_get_ex(info, "data_offsets", &offs))
        return bad(st, err, name, "not an object with \"dtype\", \"shape\" and \"data_offsets\"");
    if (!json_object_is_type(dtype, json_type_string) ||
        sdm_st_dtype_from_str(json_object_get_string(dtype), &t->dtype))
        return bad(st, err, name, "unknown \"dtype\"");
    if (parse_shape(st, name, shape, t, err))
        return -1;
    if (!json_object_is_type(offs, json_type_array) || json_object_array_length(offs) != 2 ||
        get_u64(json_object_array_get_idx(offs, 0), &begin) || get_u64(json_object_array_get_idx(offs, 1), &end))
        return bad(st, err, name, "\"data_offsets\" is not two non-negative integers");
    if (begin > end || end > st->data_len) {
        snprintf(what, sizeof what, "data_offsets [%llu, %llu] are not inside the %llu bytes of data",
                 (unsigned long long)begin, (unsigned long long)end, (unsigned long long)st->data_len);
        return bad(st, err, name, what);
    }
    if (end - begin != t->nbytes) {
        snprintf(what, sizeof what, "data_offsets hold %llu bytes, its dtype and shape %llu",
                 (unsigned long long)(end - begin), (unsigned long long)t->nbytes);
        return bad(st, err, name, what);
    }
    t->offset = begin;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const sdm_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Sorted by offset, the tensors must follow each other with no gap and no
 * overlap, and end where the data does. */
static int check_layout(sdm_safetensors *st, sdm_error *err)
{
    uint64_t at = 0;
    char what[160];

    if (st->n)
        qsort(st->tensors, (size_t)st->n, sizeof *st->tensors, by_offset);
    for (int i = 0; i < st->n; i++) {
        const sdm_st_tensor *t = &st->tensors[i];
        if (t->offset != at) {
            snprintf(what, sizeof what, "starts at byte %llu of the data, where %s", (unsigned long long)t->offset,
                     t->offset < at ? "the tensor before it has not ended" : "nothing has ended (a gap)");
            return bad(st, err, t->name, what);
        }
        at += t->nbytes;
    }
    if (at != st->data_len) {
        snprintf(what, sizeof what, "its tensors end at byte %llu of the data, the file at byte %llu",
                 (unsigned long long)at, (unsigned long long)st->data_len);
        return bad(st, err, NULL, what);
    }
    return 0;
}

static int check_metadata(sdm_safetensors *st, json_object *meta, sdm_error *err)
{
    if (!json_object_is_type(meta, json_type_object))
        return bad(st, err, NULL, "\"__metadata__\" is not an object");
    json_object_object_foreach(meta, key, val)
    {
        (void)key;
        if (!json_object_is_type(val, json_type_string))
            return bad(st, err, NULL, "a \"__metadata__\" value is not a string");
    }
    st->metadata = meta;
    return 0;
}

static int parse_tensors(sdm_safetensors *st, sdm_error *err)
{
    int cap;

    if (!json_object_is_type(st->header, json_type_object))
        return bad(st, err, NULL, "its header is not a JSON object");
    cap = json_object_object_length(st->header);
    st->tensors = calloc((size_t)(cap ? cap : 1), sizeof *st->tensors);
    if (!st->tensors)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory reading %s", st->name);
    json_object_object_foreach(st->header, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            if (check_metadata(st, val, err))
                return -1;
            continue;
        }
        if (parse_tensor(st, key, val, &st->tensors[st->n], err))
            return -1;
        st->n++;
    }
    return check_layout(st, err);
}

/* What json-c accepts even in strict mode and JSON does not: strings in
 * single quotes, raw control characters inside strings. */
static int not_json(const char *text, size_t len)
{
    int in_string = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!in_string) {
            if (c == '\'')
                return 1;
            in_string = c == '"';
        } else if (c < 0x20) {
            return 1;
        } else if (c == '\\') {
            i++;
        } else if (c == '"') {
            in_string = 0;
        }
    }
    return 0;
}

static int parse_header(sdm_safetensors *st, const char *text, size_t len, sdm_error *err)
{
    json_tokener *tok = json_tokener_new();
    int rc = -1;

    if (!tok)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory reading %s", st->name);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    if (memchr(text, '\0', len) || len == 0 || text[0] != '{') {
        bad(st, err, NULL, "its header does not start with '{' or holds a NUL byte");
        goto end;
    }
    if (not_json(text, len)) {
        bad(st, err, NULL, "its JSON header does not parse (a single quote, or a control character in a string)");
        goto end;
    }
    st->header = json_tokener_parse_ex(tok, text, (int)len);
    if (!st->header) {
        char what[128];
        enum json_tokener_error e = json_tokener_get_error(tok);
        if (e == json_tokener_continue)
            snprintf(what, sizeof what, "its JSON header ends before its JSON does");
        else
            snprintf(what, sizeof what, "its JSON header does not parse (%s at byte %zu)", json_tokener_error_desc(e),
                     json_tokener_get_parse_end(tok));
        bad(st, err, NULL, what);
        goto end;
    }
    /* strict mode refuses anything but white space after the JSON (the
     * format pads with spaces) */
    rc = parse_tensors(st, err);
end:
    json_tokener_free(tok);
    return rc;
}

/* ------------------------------------------------------------------ */
/* opening                                                              */

static int open_common(sdm_safetensors *st, uint64_t size, sdm_error *err)
{
    unsigned char len8[8];
    uint64_t n;
    char *text = NULL, what[160];
    int rc = -1;

    if (size < 8) {
        snprintf(what, sizeof what, "it is %llu bytes long, shorter than the 8 bytes of the header length",
                 (unsigned long long)size);
        return bad(st, err, NULL, what);
    }
    if (read_at(st, 0, len8, 8, err))
        return -1;
    n = le64(len8);
    if (n > SDM_ST_MAX_HEADER || n > size - 8) {
        snprintf(what, sizeof what, "its header length, %llu bytes, is %s", (unsigned long long)n,
                 n > size - 8 ? "more than the file holds" : "over the format's limit of 100 MB");
        return bad(st, err, NULL, what);
    }
    st->data_start = 8 + n;
    st->data_len = size - st->data_start;
    text = malloc((size_t)n + 1);
    if (!text)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory reading %s", st->name);
    if (read_at(st, 8, text, (size_t)n, err))
        goto end;
    text[n] = '\0';
    rc = parse_header(st, text, (size_t)n, err);
end:
    free(text);
    return rc;
}

static sdm_safetensors *new_st(const char *name)
{
    sdm_safetensors *st = calloc(1, sizeof *st);

    if (!st)
        return NULL;
    st->fd = -1;
    st->name = strdup(name ? name : "(memory)");
    if (!st->name) {
        free(st);
        return NULL;
    }
    return st;
}

int sdm_safetensors_open(const char *path, sdm_safetensors **out, sdm_error *err)
{
    sdm_safetensors *st = new_st(path);
    struct stat sb;
    int rc = -1;

    *out = NULL;
    if (!st)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory opening %s", path);
    st->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (st->fd < 0) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno));
        goto end;
    }
    if (fstat(st->fd, &sb) || !S_ISREG(sb.st_mode)) {
        sdm_error_set(err, SDM_EXIT_RUNTIME, "%s is not a regular file", path);
        goto end;
    }
    if (open_common(st, (uint64_t)sb.st_size, err))
        goto end;
    *out = st;
    st = NULL;
    rc = 0;
end:
    sdm_safetensors_free(&st);
    return rc;
}

int sdm_safetensors_open_memory(const char *name, const void *data, size_t len, sdm_safetensors **out, sdm_error *err)
{
    sdm_safetensors *st = new_st(name);
    static const unsigned char empty[1];

    *out = NULL;
    if (!st)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory opening %s", name);
    st->mem = data ? data : empty;
    if (open_common(st, data ? len : 0, err)) {
        sdm_safetensors_free(&st);
        return -1;
    }
    *out = st;
    return 0;
}

/* ------------------------------------------------------------------ */
/* access                                                               */

int sdm_safetensors_count(const sdm_safetensors *st)
{
    return st ? st->n : 0;
}

const sdm_st_tensor *sdm_safetensors_tensor(const sdm_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

const sdm_st_tensor *sdm_safetensors_find(const sdm_safetensors *st, const char *name)
{
    for (int i = 0; st && name && i < st->n; i++) {
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    }
    return NULL;
}

const char *sdm_safetensors_metadata(const sdm_safetensors *st, const char *key)
{
    json_object *v;

    if (!st || !st->metadata || !key || !json_object_object_get_ex(st->metadata, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;

    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else {
        f = (float)man * 0x1p-24f; /* zero or subnormal: exact in float */
        return sign ? -f : f;
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void convert(sdm_st_dtype d, const unsigned char *b, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = b + i * dtype_sizes[d];
        uint32_t u32;
        uint64_t u64;
        double f64;

        switch (d) {
        case SDM_ST_F16:
            out[i] = half_to_float((uint16_t)(p[0] | p[1] << 8));
            break;
        case SDM_ST_BF16:
            u32 = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 24;
            memcpy(&out[i], &u32, sizeof u32);
            break;
        case SDM_ST_F32:
            u32 = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &u32, sizeof u32);
            break;
        default: /* F64 */
            u64 = le64(p);
            memcpy(&f64, &u64, sizeof f64);
            out[i] = (float)f64;
            break;
        }
    }
}

int sdm_safetensors_read_f32(const sdm_safetensors *st, const sdm_st_tensor *t, float *out, uint64_t n, sdm_error *err)
{
    enum { CHUNK = 65536 };
    unsigned char *buf = NULL;
    size_t esize;
    uint64_t done = 0;
    int rc = -1;

    if (t->dtype != SDM_ST_F32 && t->dtype != SDM_ST_F16 && t->dtype != SDM_ST_BF16 && t->dtype != SDM_ST_F64)
        return sdm_error_set(err, SDM_EXIT_USAGE,
                             "%s: tensor \"%.80s\" is %s; only F32, F16, BF16 and F64 are "
                             "read",
                             st->name, t->name, dtype_names[t->dtype]);
    if (n != t->numel)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "%s: tensor \"%.80s\" has %llu elements, not %llu", st->name,
                             t->name, (unsigned long long)t->numel, (unsigned long long)n);
    esize = dtype_sizes[t->dtype];
    buf = malloc(CHUNK * esize);
    if (!buf)
        return sdm_error_set(err, SDM_EXIT_RUNTIME, "out of memory reading %s", st->name);
    while (done < n) {
        size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
        if (read_at(st, st->data_start + t->offset + done * esize, buf, k * esize, err))
            goto end;
        convert(t->dtype, buf, k, out + done);
        done += k;
    }
    rc = 0;
end:
    free(buf);
    return rc;
}

void sdm_safetensors_free(sdm_safetensors **st)
{
    if (!st || !*st)
        return;
    if ((*st)->fd >= 0)
        close((*st)->fd);
    json_object_put((*st)->header);
    free((*st)->tensors);
    free((*st)->name);
    free(*st);
    *st = NULL;
}
