// safetensors.c: see safetensors.h. Our own strict JSON parser and a minimal JSON writer.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- dtypes ------------------------------------------------------------------------------------

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1, 0}, [ST_U8] = {"U8", 1, 0},     [ST_I8] = {"I8", 1, 0},
    [ST_F8_E4M3] = {"F8_E4M3", 1, 0}, [ST_F8_E5M2] = {"F8_E5M2", 1, 0},
    [ST_I16] = {"I16", 2, 0}, [ST_U16] = {"U16", 2, 0},     [ST_F16] = {"F16", 2, 1},
    [ST_BF16] = {"BF16", 2, 1}, [ST_I32] = {"I32", 4, 0},   [ST_U32] = {"U32", 4, 0},
    [ST_F32] = {"F32", 4, 1}, [ST_F64] = {"F64", 8, 1},     [ST_I64] = {"I64", 8, 0},
    [ST_U64] = {"U64", 8, 0},
};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_N_DTYPES ? dtypes[d].name : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_N_DTYPES ? dtypes[d].size : 0; }
int st_dtype_is_float(StDtype d) { return (unsigned)d < ST_N_DTYPES && dtypes[d].is_float; }

static int dtype_from_name(const char *s, StDtype *out) {
    for (int d = 0; d < ST_N_DTYPES; d++)
        if (strcmp(s, dtypes[d].name) == 0) {
            *out = (StDtype)d;
            return 0;
        }
    return -1;
}

static int host_is_le(void) {
    const uint16_t x = 1;
    return *(const uint8_t *)&x == 1;
}

static void swap_bytes(void *p, size_t n, size_t size) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += size)
        for (size_t a = 0, z = size - 1; a < z; a++, z--) {
            unsigned char t = b[a];
            b[a] = b[z];
            b[z] = t;
        }
}

float st_half_to_float(uint16_t h) {
    const int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);                 // zero / subnormal: m * 2^-24
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), e - 25);           // (1024 + m) * 2^(e - 15 - 10)
    return sign ? -v : v;
}

float st_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- UTF-8 -------------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence at s (n bytes available), or 0 when invalid.
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0; // continuation byte, overlong lead (C0, C1) or > U+13FFFF lead
    if ((size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int st_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        int k = utf8_seq(u + i, len - i);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

// ---- growable byte buffer ----------------------------------------------------------------------

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_fmt(Buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

// JSON string literal of s (valid UTF-8 assumed): escapes ", \ and control characters.
static void buf_json_str(Buf *b, const char *s) {
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"') buf_put(b, "\\\"", 2);
        else if (*p == '\\') buf_put(b, "\\\\", 2);
        else if (*p == '\n') buf_put(b, "\\n", 2);
        else if (*p == '\t') buf_put(b, "\\t", 2);
        else if (*p == '\r') buf_put(b, "\\r", 2);
        else if (*p < 0x20) buf_fmt(b, "\\u%04x", *p);
        else buf_put(b, p, 1);
    }
    buf_put(b, "\"", 1);
}

// ---- JSON parser (strict RFC 8259 subset: no NUL in strings, integers as int64) ----------------

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ } JKind;

typedef struct JVal {
    JKind kind;
    size_t pos;        // byte offset of the value in the header
    int is_int;        // J_NUM: an integer (no fraction/exponent) that fits int64
    int64_t i;
    char *s;           // J_STR
    int n, cap;        // J_ARR / J_OBJ
    struct JVal *items;
    char **keys;       // J_OBJ
} JVal;

typedef struct {
    const unsigned char *p;
    size_t len, i;
    char *err;
    size_t cap;
    const char *path;
    int failed;
} JP;

static int jfail(JP *j, size_t at, const char *fmt, ...) {
    if (j->failed) return -1;
    j->failed = 1;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(j->err, j->cap, "safetensors '%s': invalid JSON header at byte %zu (of %zu): %s", j->path, at, j->len,
             what);
    return -1;
}

static void jfree(JVal *v) {
    if (v->kind == J_STR) free(v->s);
    if (v->kind == J_ARR || v->kind == J_OBJ) {
        for (int k = 0; k < v->n; k++) {
            jfree(&v->items[k]);
            if (v->keys) free(v->keys[k]);
        }
        free(v->items);
        free(v->keys);
    }
    memset(v, 0, sizeof *v);
}

static void jws(JP *j) {
    while (j->i < j->len && (j->p[j->i] == ' ' || j->p[j->i] == '\t' || j->p[j->i] == '\n' || j->p[j->i] == '\r'))
        j->i++;
}

static int hex4(JP *j, uint32_t *out) {
    if (j->i + 4 > j->len) return jfail(j, j->i, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = j->p[j->i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return jfail(j, j->i + k, "bad hex digit in \\u escape");
    }
    j->i += 4;
    *out = v;
    return 0;
}

static void put_utf8(Buf *b, uint32_t cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800) u[0] = 0xC0 | (cp >> 6), u[1] = 0x80 | (cp & 0x3f), n = 2;
    else if (cp < 0x10000) u[0] = 0xE0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 0x3f), u[2] = 0x80 | (cp & 0x3f), n = 3;
    else u[0] = 0xF0 | (cp >> 18), u[1] = 0x80 | ((cp >> 12) & 0x3f), u[2] = 0x80 | ((cp >> 6) & 0x3f),
         u[3] = 0x80 | (cp & 0x3f), n = 4;
    buf_put(b, u, n);
}

// Parses a string literal at j->i (which is '"') into a malloc'd, NUL-terminated, valid UTF-8 string.
static int jstring(JP *j, char **out) {
    size_t start = j->i++;
    Buf b = {0};
    buf_put(&b, "", 0);
    for (;;) {
        if (j->i >= j->len) {
            free(b.p);
            return jfail(j, start, "unterminated string");
        }
        unsigned c = j->p[j->i];
        if (c == '"') {
            j->i++;
            break;
        }
        if (c < 0x20) {
            free(b.p);
            return jfail(j, j->i, "raw control character 0x%02x in a string (must be escaped)", c);
        }
        if (c == '\\') {
            if (j->i + 1 >= j->len) {
                free(b.p);
                return jfail(j, j->i, "unterminated escape");
            }
            unsigned e = j->p[j->i + 1];
            size_t at = j->i;
            j->i += 2;
            switch (e) {
            case '"': buf_put(&b, "\"", 1); break;
            case '\\': buf_put(&b, "\\", 1); break;
            case '/': buf_put(&b, "/", 1); break;
            case 'b': buf_put(&b, "\b", 1); break;
            case 'f': buf_put(&b, "\f", 1); break;
            case 'n': buf_put(&b, "\n", 1); break;
            case 'r': buf_put(&b, "\r", 1); break;
            case 't': buf_put(&b, "\t", 1); break;
            case 'u': {
                uint32_t cp;
                if (hex4(j, &cp) < 0) {
                    free(b.p);
                    return -1;
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(b.p);
                    return jfail(j, at, "lone low surrogate \\u%04X", cp);
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (j->i + 2 > j->len || j->p[j->i] != '\\' || j->p[j->i + 1] != 'u') {
                        free(b.p);
                        return jfail(j, at, "high surrogate \\u%04X not followed by a low surrogate", cp);
                    }
                    j->i += 2;
                    if (hex4(j, &lo) < 0) {
                        free(b.p);
                        return -1;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(b.p);
                        return jfail(j, at, "high surrogate \\u%04X followed by \\u%04X, not a low surrogate", cp, lo);
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0) {
                    free(b.p);
                    return jfail(j, at, "\\u0000 (NUL) is not allowed in names or metadata");
                }
                put_utf8(&b, cp);
                break;
            }
            default:
                free(b.p);
                return jfail(j, at, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? (char)e : '?');
            }
            continue;
        }
        int k = utf8_seq(j->p + j->i, j->len - j->i);
        if (!k) {
            free(b.p);
            return jfail(j, j->i, "string is not valid UTF-8 (byte 0x%02x)", c);
        }
        buf_put(&b, j->p + j->i, (size_t)k);
        j->i += (size_t)k;
    }
    if (b.oom) {
        free(b.p);
        return jfail(j, start, "out of memory");
    }
    *out = b.p;
    return 0;
}

static int jnumber(JP *j, JVal *v) {
    size_t s = j->i;
    int neg = 0, is_int = 1;
    uint64_t mag = 0;
    if (j->p[j->i] == '-') neg = 1, j->i++;
    if (j->i >= j->len || j->p[j->i] < '0' || j->p[j->i] > '9') return jfail(j, s, "invalid number");
    if (j->p[j->i] == '0') {
        j->i++;
        if (j->i < j->len && j->p[j->i] >= '0' && j->p[j->i] <= '9') return jfail(j, s, "number with a leading zero");
    } else {
        while (j->i < j->len && j->p[j->i] >= '0' && j->p[j->i] <= '9') {
            unsigned d = j->p[j->i++] - '0';
            if (mag > (UINT64_MAX - d) / 10) is_int = 0, mag = UINT64_MAX; // overflow: not an int64
            else mag = mag * 10 + d;
        }
    }
    if (j->i < j->len && j->p[j->i] == '.') {
        j->i++;
        is_int = 0;
        if (j->i >= j->len || j->p[j->i] < '0' || j->p[j->i] > '9') return jfail(j, s, "invalid number (no digit after '.')");
        while (j->i < j->len && j->p[j->i] >= '0' && j->p[j->i] <= '9') j->i++;
    }
    if (j->i < j->len && (j->p[j->i] == 'e' || j->p[j->i] == 'E')) {
        j->i++;
        is_int = 0;
        if (j->i < j->len && (j->p[j->i] == '+' || j->p[j->i] == '-')) j->i++;
        if (j->i >= j->len || j->p[j->i] < '0' || j->p[j->i] > '9') return jfail(j, s, "invalid number (bad exponent)");
        while (j->i < j->len && j->p[j->i] >= '0' && j->p[j->i] <= '9') j->i++;
    }
    if (is_int && (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)) is_int = 0;
    v->kind = J_NUM;
    v->is_int = is_int;
    v->i = is_int ? (neg ? (int64_t)(0 - mag) : (int64_t)mag) : 0;
    return 0;
}

static int jvalue(JP *j, JVal *v, int depth);

static int jcmp_keys(const void *a, const void *b) { return strcmp(**(char *const *const *)a, **(char *const *const *)b); }

// Finds a duplicate key of object v; returns its index or -1.
static int dup_key(const JVal *v) {
    if (v->n < 2) return -1;
    if (v->n <= 32) {
        for (int a = 1; a < v->n; a++)
            for (int b = 0; b < a; b++)
                if (strcmp(v->keys[a], v->keys[b]) == 0) return a;
        return -1;
    }
    char ***idx = malloc((size_t)v->n * sizeof *idx);
    if (!idx) return -1;
    for (int k = 0; k < v->n; k++) idx[k] = &v->keys[k];
    qsort(idx, (size_t)v->n, sizeof *idx, jcmp_keys);
    int found = -1;
    for (int k = 1; k < v->n && found < 0; k++)
        if (strcmp(*idx[k], *idx[k - 1]) == 0) found = (int)(idx[k] - v->keys);
    free(idx);
    return found;
}

static int jpush(JP *j, JVal *v, size_t at) {
    if (v->n == v->cap) {
        int c = v->cap ? 2 * v->cap : 8;
        JVal *it = realloc(v->items, (size_t)c * sizeof *it);
        if (!it) return jfail(j, at, "out of memory");
        v->items = it;
        if (v->kind == J_OBJ) {
            char **ks = realloc(v->keys, (size_t)c * sizeof *ks);
            if (!ks) return jfail(j, at, "out of memory");
            v->keys = ks;
        }
        v->cap = c;
    }
    memset(&v->items[v->n], 0, sizeof v->items[v->n]);
    if (v->kind == J_OBJ) v->keys[v->n] = NULL;
    v->n++;
    return 0;
}

static int jcontainer(JP *j, JVal *v, int depth, int obj) {
    v->kind = obj ? J_OBJ : J_ARR;
    const char close = obj ? '}' : ']';
    j->i++;
    jws(j);
    if (j->i < j->len && j->p[j->i] == close) {
        j->i++;
        return 0;
    }
    for (;;) {
        jws(j);
        size_t at = j->i;
        if (jpush(j, v, at) < 0) return -1;
        if (obj) {
            if (j->i >= j->len || j->p[j->i] != '"') return jfail(j, j->i, "expected a string key");
            if (jstring(j, &v->keys[v->n - 1]) < 0) return -1;
            jws(j);
            if (j->i >= j->len || j->p[j->i] != ':') return jfail(j, j->i, "expected ':' after key \"%.100s\"", v->keys[v->n - 1]);
            j->i++;
            jws(j);
        }
        if (jvalue(j, &v->items[v->n - 1], depth + 1) < 0) return -1;
        jws(j);
        if (j->i >= j->len) return jfail(j, j->i, "unterminated %s", obj ? "object" : "array");
        if (j->p[j->i] == ',') {
            j->i++;
            jws(j);
            if (j->i < j->len && j->p[j->i] == close) return jfail(j, j->i, "trailing comma");
            continue;
        }
        if (j->p[j->i] == close) {
            j->i++;
            break;
        }
        return jfail(j, j->i, "expected ',' or '%c'", close);
    }
    if (obj) {
        int d = dup_key(v);
        if (d >= 0) {
            if (depth == 0) return jfail(j, v->items[d].pos, "duplicate tensor name \"%.200s\"", v->keys[d]);
            return jfail(j, v->items[d].pos, "duplicate key \"%.200s\"", v->keys[d]);
        }
    }
    return 0;
}

static int jvalue(JP *j, JVal *v, int depth) {
    memset(v, 0, sizeof *v);
    jws(j);
    v->pos = j->i;
    if (depth > ST_MAX_DEPTH) return jfail(j, j->i, "nested deeper than %d levels", ST_MAX_DEPTH);
    if (j->i >= j->len) return jfail(j, j->i, "unexpected end of the header");
    unsigned c = j->p[j->i];
    if (c == '{') return jcontainer(j, v, depth, 1);
    if (c == '[') return jcontainer(j, v, depth, 0);
    if (c == '"') {
        v->kind = J_STR;
        return jstring(j, &v->s);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return jnumber(j, v);
    static const struct {
        const char *lit;
        JKind k;
    } lits[] = {{"true", J_TRUE}, {"false", J_FALSE}, {"null", J_NULL}};
    for (int k = 0; k < 3; k++) {
        size_t L = strlen(lits[k].lit);
        if (j->i + L <= j->len && memcmp(j->p + j->i, lits[k].lit, L) == 0) {
            j->i += L;
            v->kind = lits[k].k;
            return 0;
        }
    }
    return jfail(j, j->i, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? (char)c : '?');
}

// ---- reader ------------------------------------------------------------------------------------

static int ferr(char *err, size_t cap, const char *path, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, cap, "safetensors '%s': %s", path, what);
    return -1;
}

static const char *jkind_name(JKind k) {
    static const char *n[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    return n[k];
}

// Fills t from the JSON object v of tensor `name`.
static int tensor_from_json(const char *path, const char *name, const JVal *v, StTensor *t, char *err, size_t cap) {
    if (v->kind != J_OBJ)
        return ferr(err, cap, path, "tensor \"%s\": entry is %s, expected an object with dtype, shape, data_offsets", name,
                    jkind_name(v->kind));
    const JVal *dt = NULL, *sh = NULL, *off = NULL;
    for (int k = 0; k < v->n; k++) {
        if (!strcmp(v->keys[k], "dtype")) dt = &v->items[k];
        else if (!strcmp(v->keys[k], "shape")) sh = &v->items[k];
        else if (!strcmp(v->keys[k], "data_offsets")) off = &v->items[k];
        else return ferr(err, cap, path, "tensor \"%s\": unknown key \"%s\"", name, v->keys[k]);
    }
    if (!dt || !sh || !off)
        return ferr(err, cap, path, "tensor \"%s\": missing \"%s\"", name, !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (dt->kind != J_STR) return ferr(err, cap, path, "tensor \"%s\": dtype is %s, expected a string", name, jkind_name(dt->kind));
    if (dtype_from_name(dt->s, &t->dtype) < 0)
        return ferr(err, cap, path, "tensor \"%s\": unknown dtype \"%s\" (known: BOOL U8 I8 F8_E4M3 F8_E5M2 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)",
                    name, dt->s);
    if (sh->kind != J_ARR) return ferr(err, cap, path, "tensor \"%s\": shape is %s, expected an array", name, jkind_name(sh->kind));
    if (sh->n > ST_MAX_DIMS) return ferr(err, cap, path, "tensor \"%s\": %d dimensions (at most %d)", name, sh->n, ST_MAX_DIMS);
    t->ndim = sh->n;
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < sh->n; d++) {
        const JVal *e = &sh->items[d];
        if (e->kind != J_NUM || !e->is_int || e->i < 0)
            return ferr(err, cap, path, "tensor \"%s\": shape[%d] is not a non-negative integer", name, d);
        t->shape[d] = e->i;
        if (e->i && numel > UINT64_MAX / (uint64_t)e->i) overflow = 1;
        else numel *= (uint64_t)e->i;
    }
    if (off->kind != J_ARR || off->n != 2)
        return ferr(err, cap, path, "tensor \"%s\": data_offsets must be an array of two integers [begin, end]", name);
    for (int k = 0; k < 2; k++)
        if (off->items[k].kind != J_NUM || !off->items[k].is_int || off->items[k].i < 0)
            return ferr(err, cap, path, "tensor \"%s\": data_offsets[%d] is not a non-negative integer", name, k);
    t->begin = (uint64_t)off->items[0].i;
    t->end = (uint64_t)off->items[1].i;
    if (t->end < t->begin)
        return ferr(err, cap, path, "tensor \"%s\": data_offsets [%llu, %llu] end before begin", name,
                    (unsigned long long)t->begin, (unsigned long long)t->end);
    size_t es = st_dtype_size(t->dtype);
    if (overflow || numel > (uint64_t)INT64_MAX / es)
        return ferr(err, cap, path, "tensor \"%s\": shape has too many elements", name);
    t->numel = (int64_t)numel;
    if (t->end - t->begin != numel * es) {
        char shs[160] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(shs + strlen(shs), sizeof shs - strlen(shs), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        return ferr(err, cap, path,
                    "tensor \"%s\": shape/offset mismatch: shape [%s] of %s needs %llu bytes, data_offsets [%llu, %llu] span %llu",
                    name, shs, dt->s, (unsigned long long)(numel * es), (unsigned long long)t->begin,
                    (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
    }
    return 0;
}

static int cmp_range(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y;
}

void st_close(StFile *f) {
    if (f->fp) fclose(f->fp);
    for (int k = 0; k < f->n; k++) free(f->tensors[k].name);
    for (int k = 0; k < f->n_meta; k++) {
        free(f->meta[k].key);
        free(f->meta[k].value);
    }
    free(f->tensors);
    free(f->meta);
    memset(f, 0, sizeof *f);
}

// Checks that the byte ranges tile [0, data_size) exactly.
static int check_layout(StFile *f, uint64_t data_size, char *err, size_t cap) {
    const char *path = f->path;
    if (f->n == 0) {
        if (data_size) return ferr(err, cap, path, "%llu bytes of data after a header without tensors", (unsigned long long)data_size);
        return 0;
    }
    StTensor **ord = malloc((size_t)f->n * sizeof *ord);
    if (!ord) return ferr(err, cap, path, "out of memory");
    for (int k = 0; k < f->n; k++) ord[k] = &f->tensors[k];
    qsort(ord, (size_t)f->n, sizeof *ord, cmp_range);
    int rc = 0;
    const StTensor *last = ord[f->n - 1];
    uint64_t max_end = 0;
    const StTensor *far = NULL;
    for (int k = 0; k < f->n; k++)
        if (ord[k]->end >= max_end) max_end = ord[k]->end, far = ord[k];
    if (max_end > data_size) {
        rc = ferr(err, cap, path,
                  "truncated file: tensor \"%s\" needs data up to byte %llu of the data section, which has only %llu bytes (file %llu bytes)",
                  far->name, (unsigned long long)max_end, (unsigned long long)data_size, (unsigned long long)f->file_size);
        goto done;
    }
    if (ord[0]->begin != 0) {
        rc = ferr(err, cap, path, "gap: the first tensor \"%s\" starts at data byte %llu, not 0", ord[0]->name,
                  (unsigned long long)ord[0]->begin);
        goto done;
    }
    for (int k = 1; k < f->n; k++) {
        const StTensor *a = ord[k - 1], *b = ord[k];
        if (b->begin < a->end) {
            rc = ferr(err, cap, path, "overlapping data_offsets: \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu)", a->name,
                      (unsigned long long)a->begin, (unsigned long long)a->end, b->name, (unsigned long long)b->begin,
                      (unsigned long long)b->end);
            goto done;
        }
        if (b->begin > a->end) {
            rc = ferr(err, cap, path, "gap of %llu bytes between \"%s\" (ends at %llu) and \"%s\" (begins at %llu)",
                      (unsigned long long)(b->begin - a->end), a->name, (unsigned long long)a->end, b->name,
                      (unsigned long long)b->begin);
            goto done;
        }
    }
    if (last->end != data_size)
        rc = ferr(err, cap, path, "%llu unused bytes after the last tensor's data (the data section has %llu bytes, tensors use %llu)",
                  (unsigned long long)(data_size - last->end), (unsigned long long)data_size, (unsigned long long)last->end);
done:
    free(ord);
    return rc;
}

int st_open(StFile *f, const char *path, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return ferr(err, cap, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return ferr(err, cap, path, "not a regular file");
    }
    f->file_size = (uint64_t)st.st_size;
    if (f->file_size < 8) {
        fclose(fp);
        return ferr(err, cap, path, "truncated file: %llu bytes, a safetensors file starts with an 8-byte header length",
                    (unsigned long long)f->file_size);
    }
    unsigned char lb[8];
    if (fread(lb, 1, 8, fp) != 8) {
        fclose(fp);
        return ferr(err, cap, path, "cannot read the header length: %s", strerror(errno));
    }
    uint64_t N = 0;
    for (int k = 7; k >= 0; k--) N = (N << 8) | lb[k];
    f->header_len = N;
    f->data_start = 8 + N;
    if (N > ST_MAX_HEADER) {
        fclose(fp);
        return ferr(err, cap, path, "header length %llu is absurd (limit %llu bytes; not a safetensors file?)",
                    (unsigned long long)N, ST_MAX_HEADER);
    }
    if (N > f->file_size - 8) {
        fclose(fp);
        return ferr(err, cap, path, "header length %llu runs past the end of the file (%llu bytes): truncated or not a safetensors file",
                    (unsigned long long)N, (unsigned long long)f->file_size);
    }
    if (N == 0) {
        fclose(fp);
        return ferr(err, cap, path, "empty header (length 0)");
    }
    unsigned char *h = malloc(N);
    if (!h) {
        fclose(fp);
        return ferr(err, cap, path, "out of memory for a %llu-byte header", (unsigned long long)N);
    }
    if (fread(h, 1, N, fp) != N) {
        free(h);
        fclose(fp);
        return ferr(err, cap, path, "cannot read the %llu-byte header (truncated?)", (unsigned long long)N);
    }
    f->fp = fp;
    JP j = {h, (size_t)N, 0, err, cap, path, 0};
    JVal root;
    memset(&root, 0, sizeof root);
    int rc = -1;
    if (h[0] != '{') {
        jfail(&j, 0, "the header must start with '{'");
        goto out;
    }
    if (jvalue(&j, &root, 0) < 0) goto out;
    jws(&j);
    if (j.i != j.len) {
        jfail(&j, j.i, "unexpected data after the top-level object (only space padding may follow)");
        goto out;
    }
    int ntens = 0;
    for (int k = 0; k < root.n; k++) ntens += strcmp(root.keys[k], "__metadata__") != 0;
    f->tensors = calloc(ntens ? (size_t)ntens : 1, sizeof *f->tensors);
    if (!f->tensors) {
        ferr(err, cap, path, "out of memory");
        goto out;
    }
    for (int k = 0; k < root.n; k++) {
        const JVal *v = &root.items[k];
        if (!strcmp(root.keys[k], "__metadata__")) {
            if (v->kind != J_OBJ) {
                ferr(err, cap, path, "__metadata__ is %s, expected an object of strings", jkind_name(v->kind));
                goto out;
            }
            f->meta = calloc(v->n ? (size_t)v->n : 1, sizeof *f->meta);
            if (!f->meta) {
                ferr(err, cap, path, "out of memory");
                goto out;
            }
            for (int m = 0; m < v->n; m++) {
                if (v->items[m].kind != J_STR) {
                    ferr(err, cap, path, "__metadata__ value of \"%s\" is %s, expected a string", v->keys[m],
                         jkind_name(v->items[m].kind));
                    goto out;
                }
                f->meta[f->n_meta].key = strdup(v->keys[m]);
                f->meta[f->n_meta].value = strdup(v->items[m].s);
                f->n_meta++;
            }
            continue;
        }
        StTensor *t = &f->tensors[f->n];
        if (tensor_from_json(path, root.keys[k], v, t, err, cap) < 0) goto out;
        t->name = strdup(root.keys[k]);
        f->n++;
    }
    if (check_layout(f, f->file_size - f->data_start, err, cap) < 0) goto out;
    rc = 0;
out:
    jfree(&root);
    free(h);
    if (rc != 0) st_close(f);
    return rc;
}

int st_find(const StFile *f, const char *name) {
    for (int k = 0; k < f->n; k++)
        if (strcmp(f->tensors[k].name, name) == 0) return k;
    return -1;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int k = 0; k < f->n_meta; k++)
        if (strcmp(f->meta[k].key, key) == 0) return f->meta[k].value;
    return NULL;
}

int st_read_f32(StFile *f, int i, float *out, char *err, size_t cap) {
    if (i < 0 || i >= f->n) return ferr(err, cap, f->path, "no tensor number %d", i);
    const StTensor *t = &f->tensors[i];
    if (!st_dtype_is_float(t->dtype))
        return ferr(err, cap, f->path, "tensor \"%s\" has dtype %s, which cannot be read as fp32 (F32, F64, F16, BF16 can)",
                    t->name, st_dtype_name(t->dtype));
    if (fseeko(f->fp, (off_t)(f->data_start + t->begin), SEEK_SET) != 0)
        return ferr(err, cap, f->path, "cannot seek to tensor \"%s\": %s", t->name, strerror(errno));
    const size_t n = (size_t)t->numel, es = st_dtype_size(t->dtype);
    const int le = host_is_le();
    if (t->dtype == ST_F32) {
        if (fread(out, 4, n, f->fp) != n)
            return ferr(err, cap, f->path, "short read in tensor \"%s\" (file truncated or changed since it was opened?)", t->name);
        if (!le) swap_bytes(out, n, 4);
        return 0;
    }
    enum { CHUNK = 8192 };
    unsigned char tmp[CHUNK * 8];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        if (fread(tmp, es, k, f->fp) != k)
            return ferr(err, cap, f->path, "short read in tensor \"%s\" (file truncated or changed since it was opened?)", t->name);
        if (!le) swap_bytes(tmp, k, es);
        for (size_t e = 0; e < k; e++) {
            if (t->dtype == ST_F64) {
                double d;
                memcpy(&d, tmp + 8 * e, 8);
                out[done + e] = (float)d;
            } else {
                uint16_t h;
                memcpy(&h, tmp + 2 * e, 2);
                out[done + e] = t->dtype == ST_F16 ? st_half_to_float(h) : st_bf16_to_float(h);
            }
        }
        done += k;
    }
    return 0;
}

// ---- writer ------------------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// Returns a duplicate among n strings, or NULL.
static const char *find_dup(const char **s, int n) {
    if (n < 2) return NULL;
    const char **c = malloc((size_t)n * sizeof *c);
    if (!c) return NULL;
    memcpy(c, s, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_str);
    const char *d = NULL;
    for (int k = 1; k < n && !d; k++)
        if (strcmp(c[k], c[k - 1]) == 0) d = c[k];
    free(c);
    return d;
}

int st_write_f32(const char *path, const StOut *t, int n, const StMeta *meta, int n_meta, uint64_t *bytes_out,
                 char *err, size_t cap) {
    // Validate names.
    const char **names = malloc((size_t)(n > n_meta ? n : n_meta) * sizeof *names + 1);
    if (!names) return ferr(err, cap, path, "out of memory");
    for (int k = 0; k < n; k++) {
        if (!t[k].name || !t[k].name[0] || !st_utf8_valid(t[k].name, strlen(t[k].name)) || !strcmp(t[k].name, "__metadata__")) {
            free(names);
            return ferr(err, cap, path, "cannot write tensor %d: name %s", k,
                        !t[k].name || !t[k].name[0] ? "is empty" : !strcmp(t[k].name, "__metadata__") ? "__metadata__ is reserved" : "is not valid UTF-8");
        }
        if (t[k].ndim < 0 || t[k].ndim > ST_MAX_DIMS) {
            free(names);
            return ferr(err, cap, path, "cannot write tensor \"%s\": %d dimensions", t[k].name, t[k].ndim);
        }
        names[k] = t[k].name;
    }
    const char *d = find_dup(names, n);
    if (d) {
        char nm[256];
        snprintf(nm, sizeof nm, "%s", d);
        free(names);
        return ferr(err, cap, path, "cannot write: duplicate tensor name \"%s\"", nm);
    }
    for (int k = 0; k < n_meta; k++) {
        if (!meta[k].key || !meta[k].value || !st_utf8_valid(meta[k].key, strlen(meta[k].key)) ||
            !st_utf8_valid(meta[k].value, strlen(meta[k].value))) {
            free(names);
            return ferr(err, cap, path, "cannot write metadata entry %d: missing or not valid UTF-8", k);
        }
        names[k] = meta[k].key;
    }
    d = find_dup(names, n_meta);
    if (d) {
        char nm[256];
        snprintf(nm, sizeof nm, "%s", d);
        free(names);
        return ferr(err, cap, path, "cannot write: duplicate metadata key \"%s\"", nm);
    }
    free(names);

    // Header.
    Buf h = {0};
    buf_str(&h, "{");
    if (n_meta > 0) {
        buf_str(&h, "\"__metadata__\":{");
        for (int k = 0; k < n_meta; k++) {
            if (k) buf_str(&h, ",");
            buf_json_str(&h, meta[k].key);
            buf_str(&h, ":");
            buf_json_str(&h, meta[k].value);
        }
        buf_str(&h, "}");
    }
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        uint64_t numel = 1;
        for (int e = 0; e < t[k].ndim; e++) {
            if (t[k].shape[e] < 0) {
                free(h.p);
                return ferr(err, cap, path, "cannot write tensor \"%s\": negative dimension", t[k].name);
            }
            numel *= (uint64_t)t[k].shape[e];
        }
        if (n_meta > 0 || k) buf_str(&h, ",");
        buf_json_str(&h, t[k].name);
        buf_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int e = 0; e < t[k].ndim; e++) buf_fmt(&h, "%s%lld", e ? "," : "", (long long)t[k].shape[e]);
        buf_fmt(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + 4 * numel));
        off += 4 * numel;
    }
    buf_str(&h, "}");
    while (h.n % 8) buf_str(&h, " ");
    if (h.oom) {
        free(h.p);
        return ferr(err, cap, path, "out of memory for the header");
    }

    // Data, to <path>.tmp, then fsync + rename.
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(h.p);
        return ferr(err, cap, path, "path too long");
    }
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(h.p);
        return ferr(err, cap, path, "cannot create '%s': %s", tmp, strerror(errno));
    }
    unsigned char lb[8];
    uint64_t N = h.n;
    for (int k = 0; k < 8; k++) lb[k] = (unsigned char)(N >> (8 * k));
    int ok = fwrite(lb, 1, 8, fp) == 8 && fwrite(h.p, 1, h.n, fp) == h.n;
    free(h.p);
    const int le = host_is_le();
    float chunk[4096];
    for (int k = 0; ok && k < n; k++) {
        size_t numel = 1;
        for (int e = 0; e < t[k].ndim; e++) numel *= (size_t)t[k].shape[e];
        if (le) {
            ok = numel == 0 || fwrite(t[k].data, 4, numel, fp) == numel;
        } else {
            for (size_t s = 0; ok && s < numel; s += 4096) {
                size_t m = numel - s < 4096 ? numel - s : 4096;
                memcpy(chunk, t[k].data + s, m * 4);
                swap_bytes(chunk, m, 4);
                ok = fwrite(chunk, 4, m, fp) == m;
            }
        }
    }
    int saved = errno;
    if (ok) ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    if (!ok) saved = errno;
    if (fclose(fp) != 0 && ok) ok = 0, saved = errno;
    if (!ok) {
        remove(tmp);
        return ferr(err, cap, path, "write to '%s' failed: %s (disk full?)", tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        remove(tmp);
        return ferr(err, cap, path, "rename '%s' -> '%s' failed: %s", tmp, path, strerror(saved));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    int dfd = open(dir[0] ? dir : "/", O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (bytes_out) *bytes_out = 8 + N + off;
    return 0;
}
