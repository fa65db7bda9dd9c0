// config.c: YAML (libyaml document API) -> Config, driven by the schema tables of config_schema.c.
// See config.h for the file syntax and the rules for YAML's traps.
//
// Loading applies values straight into the Config in order: schema defaults, section default
// snippets, the file's `defaults:` includes (depth first), the file's own keys, overrides. A later
// assignment overwrites an earlier one, which is exactly "merge in order, own keys win". The
// origin (file, line) of every key's last assignment is remembered so validation errors can point
// at the line that set the value.
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common.h"
#include "config_schema.h"

#define MAX_KEYS 512
#define KEY_LEN 192
#define MAX_FILES 64
#define MAX_INCLUDE_DEPTH 16
#define CMDLINE "command line"

// ---------------------------------------------------------------------------------------------
// Key index: full dotted keys ("ae.loss.losses") -> (section, row). Built once.

typedef struct {
    char key[KEY_LEN];
    const CfgSection *sec;
    const CfgRow *row;
} KeyEntry;

static KeyEntry g_keys[MAX_KEYS];
static int g_nkeys = 0;

static int is_list_type(CfgType t) {
    return t == CT_INT_LIST || t == CT_FLOAT_LIST || t == CT_STR_LIST || t == CT_ENUM_LIST;
}
static int is_map_type(CfgType t) { return t == CT_INT_MAP || t == CT_ENUM_MAP; }
static int is_scalar_type(CfgType t) { return !is_list_type(t) && !is_map_type(t); }

// Length of the "directory" part of a dotted key ("a.b.c" -> 3 = "a.b"), 0 if none.
static size_t key_dir_len(const char *k) {
    const char *d = strrchr(k, '.');
    return d ? (size_t)(d - k) : 0;
}

// Schema self-check: unique keys, no key both a leaf and a prefix, nested groups contiguous (the
// YAML writer relies on it), enum rows have names, enum maps have "none" first. Programmer errors:
// dies.
static void schema_check(void) {
    for (int i = 0; i < g_nkeys; i++) {
        const CfgRow *r = g_keys[i].row;
        if ((r->type == CT_ENUM || r->type == CT_ENUM_LIST || r->type == CT_ENUM_MAP) && !r->names)
            lola_die("config schema: %s: enum without names", g_keys[i].key);
        if (r->type == CT_ENUM_MAP && strcmp(r->names[0], "none") != 0)
            lola_die("config schema: %s: enum map needs \"none\" as its first value", g_keys[i].key);
        if (r->elem == 0 || r->size < r->elem || r->size / r->elem > 256)
            lola_die("config schema: %s: bad member size", g_keys[i].key);
        size_t L = strlen(g_keys[i].key);
        for (int j = 0; j < g_nkeys; j++) {
            if (i == j) continue;
            if (strcmp(g_keys[i].key, g_keys[j].key) == 0) lola_die("config schema: duplicate key %s", g_keys[i].key);
            if (strncmp(g_keys[j].key, g_keys[i].key, L) == 0 && g_keys[j].key[L] == '.')
                lola_die("config schema: %s is both a key and a section of %s", g_keys[i].key, g_keys[j].key);
        }
        // Contiguity (relative keys): if rows i-1 and i differ in directory, no earlier row of
        // the section may be in i's directory.
        if (i > 0 && g_keys[i - 1].sec == g_keys[i].sec) {
            const char *ka = g_keys[i - 1].row->key, *kb = r->key;
            size_t a = key_dir_len(ka), b = key_dir_len(kb);
            if (b > 0 && (a != b || strncmp(ka, kb, a) != 0)) {
                for (int j = 0; j < i - 1; j++) {
                    const char *kj = g_keys[j].row->key;
                    if (g_keys[j].sec == g_keys[i].sec && key_dir_len(kj) == b && strncmp(kj, kb, b) == 0)
                        lola_die("config schema: rows of %s.%.*s are not contiguous", g_keys[i].sec->name, (int)b, kb);
                }
            }
        }
    }
}

static void index_init(void) {
    if (g_nkeys) return;
    int n = 0;
    for (int s = 0; s < cfg_nsections; s++) {
        const CfgSection *sec = &cfg_sections[s];
        for (int r = 0; r < sec->nrows; r++) {
            if (n >= MAX_KEYS) lola_die("config schema: more than %d keys", MAX_KEYS);
            int w = snprintf(g_keys[n].key, KEY_LEN, "%s.%s", sec->name, sec->rows[r].key);
            if (w >= KEY_LEN) lola_die("config schema: key too long: %s.%s", sec->name, sec->rows[r].key);
            g_keys[n].sec = sec;
            g_keys[n].row = &sec->rows[r];
            n++;
        }
    }
    g_nkeys = n;
    schema_check();
}

static int key_find(const char *full) {
    for (int i = 0; i < g_nkeys; i++)
        if (strcmp(g_keys[i].key, full) == 0) return i;
    return -1;
}

// 1 if `full` names a section or sub-section ("ae", "ae.loss"), i.e. some key starts with full + ".".
static int key_is_prefix(const char *full) {
    size_t L = strlen(full);
    if (L == 0) return 1;
    for (int i = 0; i < g_nkeys; i++)
        if (strncmp(g_keys[i].key, full, L) == 0 && g_keys[i].key[L] == '.') return 1;
    return 0;
}

static void *value_ptr(const Config *cfg, int gi) {
    return (char *)cfg + g_keys[gi].sec->off + g_keys[gi].row->off;
}
static int *count_ptr(const Config *cfg, int gi) {
    return (int *)((char *)cfg + g_keys[gi].sec->off + g_keys[gi].row->count_off);
}
static int row_cap(const CfgRow *r) { return (int)(r->size / r->elem); }

// ---------------------------------------------------------------------------------------------
// "Did you mean": Levenshtein distance against every key and section.

static int levenshtein(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 255 || lb > 255) return 1000;
    int prev[256], cur[256];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

// Candidates: every key and every directory prefix of a key.
static int candidate(int i, int part, char *buf) {
    // part 0: the key itself; part k > 0: the key cut at its k-th dot. Returns 0 when no such part.
    const char *k = g_keys[i].key;
    if (part == 0) {
        strcpy(buf, k);
        return 1;
    }
    int dots = 0;
    for (const char *p = k; *p; p++)
        if (*p == '.' && ++dots == part) {
            memcpy(buf, k, (size_t)(p - k));
            buf[p - k] = '\0';
            return 1;
        }
    return 0;
}

// Writes " (did you mean 'x'?)" (or one of up to 3) into out, or "" when nothing is close.
static void suggest(const char *full, char *out, size_t cap) {
    char found[3][KEY_LEN];
    int nfound = 0, best = 1 << 30;
    char buf[KEY_LEN];
    for (int i = 0; i < g_nkeys; i++)
        for (int part = 0; candidate(i, part, buf); part++) {
            int d = levenshtein(full, buf);
            int dup = 0;
            for (int f = 0; f < nfound; f++) dup |= strcmp(found[f], buf) == 0;
            if (dup) continue;
            if (d < best) {
                best = d;
                nfound = 0;
            }
            if (d == best && nfound < 3) strcpy(found[nfound++], buf);
        }
    int limit = (int)strlen(full) / 3;
    if (limit < 2) limit = 2;
    if (best > limit) {
        // Same last component elsewhere (e.g. "optim.learning_rate" -> "ae_optim.learning_rate").
        nfound = 0;
        const char *last = strrchr(full, '.');
        last = last ? last + 1 : full;
        for (int i = 0; i < g_nkeys && nfound < 3; i++) {
            const char *kl = strrchr(g_keys[i].key, '.');
            if (strcmp(kl + 1, last) == 0) strcpy(found[nfound++], g_keys[i].key);
        }
        // A section for one stage ("optim" -> "ae_optim", "dm_optim", "ns_optim").
        size_t L = strlen(full);
        for (int s = 0; s < cfg_nsections && nfound < 3 && !strchr(full, '.'); s++) {
            const char *n = cfg_sections[s].name;
            size_t N = strlen(n);
            if (N > L + 1 && n[N - L - 1] == '_' && strcmp(n + N - L, full) == 0) strcpy(found[nfound++], n);
        }
    }
    out[0] = '\0';
    if (nfound == 0) return;
    size_t o = (size_t)snprintf(out, cap, " (did you mean %s'%s'", nfound > 1 ? "one of " : "", found[0]);
    for (int f = 1; f < nfound && o < cap; f++) o += (size_t)snprintf(out + o, cap - o, ", '%s'", found[f]);
    if (o < cap) snprintf(out + o, cap - o, "?)");
}

static void names_list(const char *const *names, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; names[i] && o < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", names[i]);
}

// ---------------------------------------------------------------------------------------------
// Errors

typedef struct {
    const char *file; // NULL or "" = none
    int line;         // 0 = none
} Where;

static int verr(ConfigError *e, Where w, const char *key, const char *hint, const char *fmt, va_list ap) {
    memset(e, 0, sizeof *e);
    snprintf(e->file, sizeof e->file, "%s", w.file ? w.file : "");
    e->line = w.line;
    snprintf(e->key, sizeof e->key, "%s", key ? key : "");
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    snprintf(e->hint, sizeof e->hint, "%s", hint ? hint : "");
    size_t o = 0, cap = sizeof e->text;
    if (e->file[0]) {
        if (e->line > 0) o += (size_t)snprintf(e->text + o, cap - o, "%s:%d: ", e->file, e->line);
        else o += (size_t)snprintf(e->text + o, cap - o, "%s: ", e->file);
    }
    if (e->key[0] && o < cap) o += (size_t)snprintf(e->text + o, cap - o, "%s: ", e->key);
    if (o < cap) snprintf(e->text + o, cap - o, "%s", e->msg);
    return -1;
}

static int err_at(ConfigError *e, Where w, const char *key, const char *hint, const char *fmt, ...) LOLA_PRINTF(5, 6);
static int err_at(ConfigError *e, Where w, const char *key, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(e, w, key, hint, fmt, ap);
    va_end(ap);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Load context

typedef struct {
    int file; // index into Ctx.files; -1 = schema default
    int line;
} Origin;

typedef struct {
    Config *cfg;
    ConfigError *err;
    Origin origin[MAX_KEYS];
    char files[MAX_FILES][CFG_PATH_LEN]; // display names of loaded files (+ "command line")
    int nfiles;
    char chain[MAX_INCLUDE_DEPTH][CFG_PATH_LEN];  // include chain (display names)
    char chain_real[MAX_INCLUDE_DEPTH][PATH_MAX]; // the same, canonical (cycle detection)
    int depth;
    const char *top; // top-level file as given
    int fixed_line;  // > 0 while applying an override: every value reports this position
} Ctx;

static Ctx *ctx_new(Config *cfg, ConfigError *err) {
    index_init();
    Ctx *c = LOLA_NEW(Ctx, 1);
    c->cfg = cfg;
    c->err = err;
    for (int i = 0; i < MAX_KEYS; i++) c->origin[i].file = -1;
    return c;
}

static int ctx_add_file(Ctx *c, const char *name) {
    for (int i = 0; i < c->nfiles; i++)
        if (strcmp(c->files[i], name) == 0) return i;
    if (c->nfiles >= MAX_FILES) return -1;
    snprintf(c->files[c->nfiles], CFG_PATH_LEN, "%s", name);
    return c->nfiles++;
}

static Where node_where(const Ctx *c, int fileid, const yaml_node_t *n) {
    Where w = {fileid >= 0 ? c->files[fileid] : "(schema default)", 0};
    if (c->fixed_line > 0) w.line = c->fixed_line;
    else if (n) w.line = (int)n->start_mark.line + 1;
    return w;
}

// ---------------------------------------------------------------------------------------------
// Scalars, typed by the schema (never by YAML 1.1 implicit rules).

typedef struct {
    const char *s; // NUL-terminated text
    int quoted;    // single/double quoted, literal or folded: always a string
} Scalar;

static int sc_null(Scalar v) {
    if (v.quoted) return 0;
    return v.s[0] == '\0' || strcmp(v.s, "~") == 0 || strcmp(v.s, "null") == 0 || strcmp(v.s, "Null") == 0 ||
           strcmp(v.s, "NULL") == 0;
}

static int match_int_syntax(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

// Decimal float syntax: [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?
static int match_float_syntax(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        int ed = 0;
        while (*p >= '0' && *p <= '9') p++, ed++;
        if (!ed) return 0;
    }
    return *p == '\0';
}

// YAML core-schema specials: .inf / .Inf / .INF with optional sign, .nan / .NaN / .NAN.
static int match_special(const char *s, double *out) {
    const char *p = s;
    double sign = 1;
    if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
        *out = sign * INFINITY;
        return 1;
    }
    if (p == s && (!strcmp(p, ".nan") || !strcmp(p, ".NaN") || !strcmp(p, ".NAN"))) {
        *out = NAN;
        return 1;
    }
    return 0;
}

// Shortest "%g" text that reads back as exactly x.
static void shortest(double x, char *buf, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void fmt_num(double x, int is_int, char *buf, size_t cap) {
    if (isinf(x)) snprintf(buf, cap, "%sinf", x < 0 ? "-" : "");
    else if (is_int || (fabs(x) < 1e15 && x == floor(x))) snprintf(buf, cap, "%.0f", x);
    else shortest(x, buf, cap);
}

static void range_text(const CfgRow *r, int is_int, char *buf, size_t cap) {
    char lo[40], hi[40];
    if (r->lo <= -1e300) snprintf(lo, sizeof lo, "-inf");
    else fmt_num(r->lo, is_int, lo, sizeof lo);
    if (r->hi >= 1e300) snprintf(hi, sizeof hi, "inf");
    else fmt_num(r->hi, is_int, hi, sizeof hi);
    int lo_open = (r->flags & CF_LO_OPEN) || (r->lo <= -1e300 && !isinf(r->lo));
    int hi_open = (r->flags & CF_HI_OPEN) || (r->hi >= 1e300 && !isinf(r->hi));
    snprintf(buf, cap, "%c%s, %s%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
}

static int in_range(const CfgRow *r, double x) {
    if (isnan(x)) return 0;
    if (r->flags & CF_LO_OPEN ? !(x > r->lo) : !(x >= r->lo)) return 0;
    if (r->flags & CF_HI_OPEN ? !(x < r->hi) : !(x <= r->hi)) return 0;
    return 1;
}

static int check_range(ConfigError *e, Where w, const char *key, const CfgRow *r, double x, int is_int) {
    if (in_range(r, x)) return 0;
    char rt[96], xs[40];
    range_text(r, is_int, rt, sizeof rt);
    if (isnan(x)) return err_at(e, w, key, NULL, ".nan is not allowed (expected a number in %s)", rt);
    if (isinf(x) && !isinf(r->lo) && !isinf(r->hi))
        return err_at(e, w, key, NULL, "%s is not allowed (expected a finite number in %s)", x < 0 ? "-.inf" : ".inf", rt);
    fmt_num(x, is_int, xs, sizeof xs);
    return err_at(e, w, key, NULL, "%s is out of range %s", xs, rt);
}

static const char *type_word(CfgType t) {
    switch (t) {
    case CT_INT: case CT_INT_LIST: case CT_INT_MAP: return "an integer";
    case CT_FLOAT: case CT_FLOAT_LIST: return "a number";
    case CT_BOOL: return "true or false";
    case CT_ENUM: case CT_ENUM_LIST: case CT_ENUM_MAP: return "one of the allowed values";
    default: return "a string";
    }
}

static int parse_int(ConfigError *e, Where w, const char *key, const CfgRow *r, Scalar v, int *out) {
    if (sc_null(v)) return err_at(e, w, key, NULL, "missing value (expected an integer)");
    if (v.quoted)
        return err_at(e, w, key, "quoted values are strings; write numbers without quotes",
                      "expected an integer, got the quoted string \"%s\"", v.s);
    if (!match_int_syntax(v.s)) {
        if (match_float_syntax(v.s))
            return err_at(e, w, key, "write integers in plain decimal digits (e.g. 1000, not 1e3 or 1000.0)",
                          "expected an integer, got '%s'", v.s);
        return err_at(e, w, key, NULL, "expected an integer, got '%s'", v.s);
    }
    errno = 0;
    long long x = strtoll(v.s, NULL, 10);
    if (errno == ERANGE || x < INT_MIN || x > INT_MAX)
        return err_at(e, w, key, NULL, "integer '%s' does not fit in 32 bits", v.s);
    if (check_range(e, w, key, r, (double)x, 1)) return -1;
    *out = (int)x;
    return 0;
}

static int parse_float(ConfigError *e, Where w, const char *key, const CfgRow *r, Scalar v, double *out) {
    if (sc_null(v)) return err_at(e, w, key, NULL, "missing value (expected a number)");
    if (v.quoted)
        return err_at(e, w, key, "quoted values are strings; write numbers without quotes (1e-5, .inf)",
                      "expected a number, got the quoted string \"%s\"", v.s);
    double x;
    if (!match_special(v.s, &x)) {
        if (!match_float_syntax(v.s)) {
            const char *hint = NULL;
            if (!strcasecmp(v.s, "inf") || !strcasecmp(v.s, "-inf") || !strcasecmp(v.s, "+inf") ||
                !strcasecmp(v.s, "infinity") || !strcasecmp(v.s, "nan"))
                hint = "YAML spells these .inf, -.inf and .nan";
            return err_at(e, w, key, hint, "expected a number, got '%s'", v.s);
        }
        errno = 0;
        x = strtod(v.s, NULL);
        if (errno == ERANGE && isinf(x)) return err_at(e, w, key, NULL, "'%s' overflows a double", v.s);
    }
    if (check_range(e, w, key, r, x, 0)) return -1;
    *out = x;
    return 0;
}

static int parse_bool(ConfigError *e, Where w, const char *key, Scalar v, int *out) {
    static const char *const yes11[] = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No",
                                        "NO", "off", "Off", "OFF", NULL};
    if (sc_null(v)) return err_at(e, w, key, NULL, "missing value (expected true or false)");
    if (!v.quoted) {
        if (!strcmp(v.s, "true") || !strcmp(v.s, "True") || !strcmp(v.s, "TRUE")) return *out = 1, 0;
        if (!strcmp(v.s, "false") || !strcmp(v.s, "False") || !strcmp(v.s, "FALSE")) return *out = 0, 0;
        for (int i = 0; yes11[i]; i++)
            if (!strcmp(v.s, yes11[i]))
                return err_at(e, w, key, "YAML 1.1 booleans (yes/no/on/off/y/n) are not accepted",
                              "'%s' is not a boolean: use true or false", v.s);
    }
    if (v.quoted) return err_at(e, w, key, NULL, "expected true or false, got the quoted string \"%s\"", v.s);
    return err_at(e, w, key, NULL, "expected true or false, got '%s'", v.s);
}

static int parse_str(ConfigError *e, Where w, const char *key, Scalar v, char *buf, size_t cap) {
    const char *s = sc_null(v) ? "" : v.s;
    size_t L = strlen(s);
    if (L >= cap) return err_at(e, w, key, NULL, "string is %zu characters long, at most %zu allowed", L, cap - 1);
    memset(buf, 0, cap);
    memcpy(buf, s, L);
    return 0;
}

static int parse_enum(ConfigError *e, Where w, const char *key, const CfgRow *r, Scalar v, int *out) {
    const char *s = v.s;
    if (sc_null(v)) {
        s = "none";
        int has_none = 0;
        for (int i = 0; r->names[i]; i++) has_none |= !strcmp(r->names[i], "none");
        if (!has_none) {
            char all[512];
            names_list(r->names, all, sizeof all);
            return err_at(e, w, key, NULL, "missing value (expected one of: %s)", all);
        }
    }
    for (int i = 0; r->names[i]; i++)
        if (!strcmp(r->names[i], s)) return *out = i, 0;
    char all[512], hint[160] = "";
    names_list(r->names, all, sizeof all);
    int best = 1 << 30, bi = -1;
    for (int i = 0; r->names[i]; i++) {
        int d = levenshtein(s, r->names[i]);
        if (d < best) best = d, bi = i;
    }
    if (bi >= 0 && best <= 3) snprintf(hint, sizeof hint, " (did you mean '%s'?)", r->names[bi]);
    return err_at(e, w, key, NULL, "'%s' is not one of: %s%s", s, all, hint);
}

// ---------------------------------------------------------------------------------------------
// Applying YAML nodes

static Scalar node_scalar(const yaml_node_t *n) {
    Scalar v = {(const char *)n->data.scalar.value, n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE};
    return v;
}

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_SEQUENCE_NODE ? "a list" : n->type == YAML_MAPPING_NODE ? "a mapping" : "a scalar";
}

// One scalar into element slot `i` of row r's storage at `base` (or the scalar itself, i = 0).
static int store_scalar(ConfigError *e, Where w, const char *key, const CfgRow *r, Scalar v, void *base, int i) {
    switch (r->type) {
    case CT_INT: case CT_INT_LIST: case CT_INT_MAP: return parse_int(e, w, key, r, v, (int *)base + i);
    case CT_FLOAT: case CT_FLOAT_LIST: return parse_float(e, w, key, r, v, (double *)base + i);
    case CT_BOOL: return parse_bool(e, w, key, v, (int *)base + i);
    case CT_STR: return parse_str(e, w, key, v, (char *)base, r->size);
    case CT_STR_LIST: return parse_str(e, w, key, v, (char *)base + (size_t)i * r->elem, r->elem);
    case CT_ENUM: case CT_ENUM_LIST: case CT_ENUM_MAP: return parse_enum(e, w, key, r, v, (int *)base + i);
    }
    return -1;
}

static int check_nul(ConfigError *e, Where w, const char *key, const yaml_node_t *n) {
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
        return err_at(e, w, key, NULL, "value contains a NUL character");
    return 0;
}

// A value node for key gi (any type).
static int apply_value(Ctx *c, yaml_document_t *d, yaml_node_t *n, int gi, int fileid) {
    const CfgRow *r = g_keys[gi].row;
    const char *key = g_keys[gi].key;
    Where w = node_where(c, fileid, n);
    ConfigError *e = c->err;
    unsigned char tmp[8192]; // staging: the member is only written once every element parsed
    if (r->size > sizeof tmp) lola_die("config: %s: member larger than the staging buffer", key);
    memset(tmp, 0, r->size);
    int is_null = n->type == YAML_SCALAR_NODE && sc_null(node_scalar(n));

    if (is_scalar_type(r->type)) {
        if (n->type != YAML_SCALAR_NODE)
            return err_at(e, w, key, NULL, "expected %s, got %s", type_word(r->type), node_kind(n));
        if (check_nul(e, w, key, n)) return -1;
        if (store_scalar(e, w, key, r, node_scalar(n), tmp, 0)) return -1;
        memcpy(value_ptr(c->cfg, gi), tmp, r->size);
    } else if (is_list_type(r->type)) {
        int cap = row_cap(r), count = 0;
        if (!is_null) {
            if (n->type != YAML_SEQUENCE_NODE)
                return err_at(e, w, key, "write lists as [a, b, c]", "expected a list, got %s", node_kind(n));
            count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
            if (count > cap) return err_at(e, w, key, NULL, "list has %d entries, at most %d allowed", count, cap);
            for (int i = 0; i < count; i++) {
                yaml_node_t *it = yaml_document_get_node(d, n->data.sequence.items.start[i]);
                char ekey[KEY_LEN + 16];
                snprintf(ekey, sizeof ekey, "%s[%d]", key, i);
                Where wi = node_where(c, fileid, it);
                if (it->type != YAML_SCALAR_NODE)
                    return err_at(e, wi, ekey, NULL, "expected %s, got %s", type_word(r->type), node_kind(it));
                if (check_nul(e, wi, ekey, it)) return -1;
                if (store_scalar(e, wi, ekey, r, node_scalar(it), tmp, i)) return -1;
            }
        }
        memcpy(value_ptr(c->cfg, gi), tmp, r->size);
        *count_ptr(c->cfg, gi) = count;
    } else { // maps {int: value}, stored densely
        int cap = row_cap(r);
        int seen[256] = {0};
        if (!is_null) {
            if (n->type != YAML_MAPPING_NODE)
                return err_at(e, w, key, "write maps as {1: a, 3: b}", "expected a mapping {index: value}, got %s",
                              node_kind(n));
            for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
                yaml_node_t *kn = yaml_document_get_node(d, p->key), *vn = yaml_document_get_node(d, p->value);
                Where wk = node_where(c, fileid, kn);
                if (kn->type != YAML_SCALAR_NODE || kn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !match_int_syntax((const char *)kn->data.scalar.value))
                    return err_at(e, wk, key, NULL, "map keys must be integers in [0, %d], got %s%s%s", cap - 1,
                                  kn->type == YAML_SCALAR_NODE ? "'" : "",
                                  kn->type == YAML_SCALAR_NODE ? (const char *)kn->data.scalar.value : node_kind(kn),
                                  kn->type == YAML_SCALAR_NODE ? "'" : "");
                long k = strtol((const char *)kn->data.scalar.value, NULL, 10);
                if (k < 0 || k >= cap)
                    return err_at(e, wk, key, NULL, "map key %s is out of range [0, %d]",
                                  (const char *)kn->data.scalar.value, cap - 1);
                if (seen[k])
                    return err_at(e, wk, key, NULL, "duplicate map key %ld (first given on line %d)", k, seen[k]);
                seen[k] = wk.line > 0 ? wk.line : 1;
                char ekey[KEY_LEN + 16];
                snprintf(ekey, sizeof ekey, "%s[%ld]", key, k);
                Where wv = node_where(c, fileid, vn);
                if (vn->type != YAML_SCALAR_NODE)
                    return err_at(e, wv, ekey, NULL, "expected %s, got %s", type_word(r->type), node_kind(vn));
                if (check_nul(e, wv, ekey, vn)) return -1;
                if (store_scalar(e, wv, ekey, r, node_scalar(vn), tmp, (int)k)) return -1;
            }
        }
        memcpy(value_ptr(c->cfg, gi), tmp, r->size);
    }
    c->origin[gi].file = fileid;
    c->origin[gi].line = w.line;
    return 0;
}

static int apply_mapping(Ctx *c, yaml_document_t *d, yaml_node_t *map, const char *prefix, int fileid, int file_root);

static int join_key(Ctx *c, Where w, const char *prefix, const char *k, char *out) {
    int n = prefix[0] ? snprintf(out, KEY_LEN, "%s.%s", prefix, k) : snprintf(out, KEY_LEN, "%s", k);
    if (n >= KEY_LEN) return err_at(c->err, w, NULL, NULL, "key '%s.%s' is too long", prefix, k);
    return 0;
}

// Value for a dotted key that is either a leaf (typed value) or a section (mapping).
static int apply_keyed(Ctx *c, yaml_document_t *d, yaml_node_t *v, const char *full, Where wk, int fileid) {
    int gi = key_find(full);
    if (gi >= 0) return apply_value(c, d, v, gi, fileid);
    if (key_is_prefix(full)) {
        if (v->type == YAML_SCALAR_NODE && sc_null(node_scalar(v))) return 0; // "ae:" with nothing under it
        if (v->type != YAML_MAPPING_NODE)
            return err_at(c->err, node_where(c, fileid, v), full, NULL,
                          "is a section: expected a mapping of its keys, got %s", node_kind(v));
        return apply_mapping(c, d, v, full, fileid, 0);
    }
    char sug[600];
    suggest(full, sug, sizeof sug);
    return err_at(c->err, wk, full, "`lola <command> --help` lists every key", "unknown key%s", sug);
}

// A mapping of keys at `prefix` ("" = top level). `<<` merge keys are applied first (the
// mapping's own keys then override them); file_root skips the `defaults` list (already handled).
static int apply_mapping(Ctx *c, yaml_document_t *d, yaml_node_t *map, const char *prefix, int fileid, int file_root) {
    ConfigError *e = c->err;
    // 1. merges
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(d, p->key), *vn = yaml_document_get_node(d, p->value);
        if (kn->type != YAML_SCALAR_NODE || kn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
            strcmp((const char *)kn->data.scalar.value, "<<") != 0)
            continue;
        if (vn->type == YAML_MAPPING_NODE) {
            if (apply_mapping(c, d, vn, prefix, fileid, 0)) return -1;
        } else if (vn->type == YAML_SEQUENCE_NODE) {
            // YAML merge: earlier mappings in the list win, so apply them last.
            for (yaml_node_item_t *it = vn->data.sequence.items.top; it > vn->data.sequence.items.start;) {
                yaml_node_t *m = yaml_document_get_node(d, *--it);
                if (m->type != YAML_MAPPING_NODE)
                    return err_at(e, node_where(c, fileid, m), prefix[0] ? prefix : "<<", NULL,
                                  "merge key '<<' takes a mapping or a list of mappings, got %s", node_kind(m));
                if (apply_mapping(c, d, m, prefix, fileid, 0)) return -1;
            }
        } else {
            return err_at(e, node_where(c, fileid, vn), prefix[0] ? prefix : "<<", NULL,
                          "merge key '<<' takes a mapping or a list of mappings (an alias such as *base), got %s",
                          node_kind(vn));
        }
    }
    // 2. own keys, in order, with duplicate detection
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(d, p->key), *vn = yaml_document_get_node(d, p->value);
        Where wk = node_where(c, fileid, kn);
        if (kn->type != YAML_SCALAR_NODE)
            return err_at(e, wk, prefix[0] ? prefix : NULL, NULL, "mapping keys must be names, got %s", node_kind(kn));
        const char *k = (const char *)kn->data.scalar.value;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(d, q->key);
            if (qk->type == YAML_SCALAR_NODE && strcmp((const char *)qk->data.scalar.value, k) == 0) {
                char full[KEY_LEN];
                if (join_key(c, wk, prefix, k, full)) return -1;
                return err_at(e, wk, full, NULL, "duplicate key in one mapping (first given on line %d)",
                              (int)qk->start_mark.line + 1);
            }
        }
        if (kn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(k, "<<") == 0) continue;
        if (file_root && strcmp(k, "defaults") == 0) continue;
        if (k[0] == '\0') return err_at(e, wk, prefix[0] ? prefix : NULL, NULL, "empty key");
        char full[KEY_LEN];
        if (join_key(c, wk, prefix, k, full)) return -1;
        if (apply_keyed(c, d, vn, full, wk, fileid)) return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Documents: parse, bound the alias expansion, compose includes.

// Depth-first walk that expands aliases (libyaml's document shares anchored nodes), counting
// visited nodes: refuses "billion laughs" (exponential expansion) and recursive aliases in time
// and memory bounded by CFG_MAX_NODES.
static int bounded_walk(yaml_document_t *d, yaml_node_t *n, int depth, long *count, yaml_node_t **at, int *why) {
    if (++*count > CFG_MAX_NODES) return *at = n, *why = 1, -1;
    if (depth > CFG_MAX_DEPTH) return *at = n, *why = 2, -1;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
            if (bounded_walk(d, yaml_document_get_node(d, *it), depth + 1, count, at, why)) return -1;
    } else if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            if (bounded_walk(d, yaml_document_get_node(d, p->key), depth + 1, count, at, why)) return -1;
            if (bounded_walk(d, yaml_document_get_node(d, p->value), depth + 1, count, at, why)) return -1;
        }
    }
    return 0;
}

// Parses `text` (len bytes) into *doc. On error fills *e at `file` (line from the parser) and
// returns -1. For the command line (`fixed_line` > 0) every position is that line.
static int parse_yaml(ConfigError *e, const char *file, int fixed_line, const char *key, const char *text, size_t len,
                      yaml_document_t *doc) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) lola_die("libyaml: cannot initialise a parser (out of memory)");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, doc)) {
        Where w = {file, fixed_line};
        int col = 0;
        if (parser.error == YAML_READER_ERROR) {
            int line = 1;
            size_t off = parser.problem_offset < len ? parser.problem_offset : len;
            for (size_t i = 0; i < off; i++) line += text[i] == '\n';
            if (!fixed_line) w.line = line;
            err_at(e, w, key, "is this a YAML config file?", "not a valid YAML text: %s (byte offset %zu)",
                   parser.problem ? parser.problem : "read error", parser.problem_offset);
        } else {
            if (!fixed_line) w.line = (int)parser.problem_mark.line + 1;
            col = (int)parser.problem_mark.column + 1;
            char ctx[256] = "";
            if (parser.context)
                snprintf(ctx, sizeof ctx, " (%s, line %d)", parser.context, (int)parser.context_mark.line + 1);
            err_at(e, w, key,
                   fixed_line ? "values are YAML: lists [1, 2], maps '{5: 8}', quotes for text with , [ ] { } :"
                              : "is this a YAML config file?",
                   "YAML syntax error at column %d: %s%s", col, parser.problem ? parser.problem : "unknown error", ctx);
        }
        yaml_parser_delete(&parser);
        return -1;
    }
    // A second document in the same file is refused (only one configuration per file).
    yaml_document_t extra;
    int ok = yaml_parser_load(&parser, &extra);
    if (ok) {
        int more = yaml_document_get_root_node(&extra) != NULL;
        int line = (int)extra.start_mark.line + 1;
        yaml_document_delete(&extra);
        if (more) {
            yaml_parser_delete(&parser);
            yaml_document_delete(doc);
            Where w = {file, fixed_line ? fixed_line : line};
            return err_at(e, w, key, NULL, "more than one YAML document ('---'); a config file holds one");
        }
    } else {
        Where w = {file, fixed_line ? fixed_line : (int)parser.problem_mark.line + 1};
        err_at(e, w, key, NULL, "YAML syntax error: %s", parser.problem ? parser.problem : "unknown error");
        yaml_parser_delete(&parser);
        yaml_document_delete(doc);
        return -1;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (root) {
        long count = 0;
        yaml_node_t *at = NULL;
        int why = 0;
        if (bounded_walk(doc, root, 0, &count, &at, &why)) {
            Where w = {file, fixed_line ? fixed_line : (int)at->start_mark.line + 1};
            if (why == 1)
                err_at(e, w, key, "a config never needs this many values",
                       "document expands to more than %d nodes through aliases (alias bomb?); refused",
                       CFG_MAX_NODES);
            else
                err_at(e, w, key, NULL, "document nests deeper than %d levels (recursive alias?); refused",
                       CFG_MAX_DEPTH);
            yaml_document_delete(doc);
            return -1;
        }
    }
    return 0;
}

// Reads a whole file (at most CFG_MAX_FILE_BYTES). Returns a malloc'd buffer or NULL with errno-ish
// text in why.
static char *read_file(const char *path, size_t *len, char *why, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "%s", strerror(errno));
        return NULL;
    }
    size_t n = 0, bufcap = 4096;
    char *buf = malloc(bufcap);
    if (!buf) lola_die("out of memory reading %s", path);
    for (;;) {
        if (n + 1 >= bufcap) {
            if (bufcap > (size_t)CFG_MAX_FILE_BYTES) {
                snprintf(why, cap, "file is larger than %d bytes; refused", CFG_MAX_FILE_BYTES);
                free(buf);
                fclose(f);
                return NULL;
            }
            bufcap *= 2;
            char *nb = realloc(buf, bufcap);
            if (!nb) lola_die("out of memory reading %s", path);
            buf = nb;
        }
        size_t got = fread(buf + n, 1, bufcap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(why, cap, "%s", strerror(errno ? errno : EIO));
                free(buf);
                fclose(f);
                return NULL;
            }
            break;
        }
    }
    fclose(f);
    if (n > (size_t)CFG_MAX_FILE_BYTES) {
        snprintf(why, cap, "file is larger than %d bytes; refused", CFG_MAX_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int is_regular_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int has_yaml_ext(const char *s) {
    size_t L = strlen(s);
    return (L > 5 && !strcmp(s + L - 5, ".yaml")) || (L > 4 && !strcmp(s + L - 4, ".yml"));
}

// Resolves an include name seen in file `from`: <dir of from>/name, <enclosing configs/>/name,
// configs/name; each as given, then with ".yaml" appended. 0 and the path in out, or -1 with the
// list of tried paths in tried.
static int resolve_include(const char *from, const char *name, char *out, size_t cap, char *tried, size_t tcap) {
    char bases[3][CFG_PATH_LEN + 8];
    int nb = 0;
    if (name[0] == '/') {
        bases[nb++][0] = '\0';
    } else {
        // directory of `from`
        const char *slash = strrchr(from, '/');
        if (slash) snprintf(bases[nb++], sizeof bases[0], "%.*s/", (int)(slash - from), from);
        else bases[nb++][0] = '\0';
        // nearest enclosing directory named "configs"
        char dir[CFG_PATH_LEN];
        size_t dl = strnlen(bases[0], sizeof dir - 1);
        memcpy(dir, bases[0], dl);
        dir[dl] = '\0';
        for (;;) {
            size_t L = strlen(dir);
            if (L && dir[L - 1] == '/') dir[--L] = '\0';
            if (!L) break;
            const char *last = strrchr(dir, '/');
            const char *comp = last ? last + 1 : dir;
            if (!strcmp(comp, "configs")) {
                snprintf(bases[nb++], sizeof bases[0], "%s/", dir);
                break;
            }
            if (!last) break;
            dir[last - dir] = '\0';
        }
        snprintf(bases[nb++], sizeof bases[0], "configs/");
    }
    size_t to = 0;
    tried[0] = '\0';
    for (int b = 0; b < nb; b++) {
        for (int ext = 0; ext < 2; ext++) {
            if (ext && has_yaml_ext(name)) continue;
            char p[CFG_PATH_LEN];
            if (snprintf(p, sizeof p, "%s%s%s", bases[b], name, ext ? ".yaml" : "") >= (int)sizeof p) continue;
            if (is_regular_file(p)) {
                snprintf(out, cap, "%s", p);
                return 0;
            }
            if (!strstr(tried, p) && to < tcap) to += (size_t)snprintf(tried + to, tcap - to, "%s%s", to ? ", " : "", p);
        }
    }
    return -1;
}

static int load_file(Ctx *c, const char *path, const char *prefix, Where from);

// The `defaults:` list of a file's root mapping.
static int load_defaults(Ctx *c, yaml_document_t *d, yaml_node_t *list, const char *prefix, int fileid) {
    ConfigError *e = c->err;
    Where wl = node_where(c, fileid, list);
    if (list->type == YAML_SCALAR_NODE && sc_null(node_scalar(list))) return 0;
    if (list->type != YAML_SEQUENCE_NODE)
        return err_at(e, wl, "defaults", "write `defaults:` as a list of `- path` or `- section: path` entries",
                      "expected a list, got %s", node_kind(list));
    for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(d, *it);
        Where wi = node_where(c, fileid, item);
        const char *name = NULL;
        char sub[KEY_LEN];
        snprintf(sub, sizeof sub, "%s", prefix);
        if (item->type == YAML_SCALAR_NODE) {
            name = (const char *)item->data.scalar.value;
        } else if (item->type == YAML_MAPPING_NODE &&
                   item->data.mapping.pairs.top - item->data.mapping.pairs.start == 1) {
            yaml_node_t *kn = yaml_document_get_node(d, item->data.mapping.pairs.start->key);
            yaml_node_t *vn = yaml_document_get_node(d, item->data.mapping.pairs.start->value);
            if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE)
                return err_at(e, wi, "defaults", NULL, "an entry is `- path` or `- section: path`");
            if (join_key(c, wi, prefix, (const char *)kn->data.scalar.value, sub)) return -1;
            if (!key_is_prefix(sub) || !kn->data.scalar.value[0]) {
                char sug[600];
                suggest(sub, sug, sizeof sug);
                return err_at(e, wi, "defaults", NULL, "'%s' is not a section%s", sub, sug);
            }
            name = (const char *)vn->data.scalar.value;
        } else {
            return err_at(e, wi, "defaults", NULL, "an entry is `- path` or `- section: path`, got %s",
                          node_kind(item));
        }
        if (!name || !name[0]) return err_at(e, wi, "defaults", NULL, "empty file name");
        char resolved[CFG_PATH_LEN], tried[2048];
        if (resolve_include(c->files[fileid], name, resolved, sizeof resolved, tried, sizeof tried))
            return err_at(e, wi, "defaults", NULL, "cannot find included file '%s' (tried: %s)", name, tried);
        if (load_file(c, resolved, sub, wi)) return -1;
    }
    return 0;
}

static int load_file(Ctx *c, const char *path, const char *prefix, Where from) {
    ConfigError *e = c->err;
    int top = from.file == NULL;
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        if (top) return err_at(e, (Where){path, 0}, NULL, NULL, "cannot open config file: %s", strerror(errno));
        return err_at(e, from, "defaults", NULL, "cannot open '%s': %s", path, strerror(errno));
    }
    for (int i = 0; i < c->depth; i++) {
        if (strcmp(c->chain_real[i], real) == 0) {
            char chain[4096];
            size_t o = 0;
            for (int j = i; j < c->depth && o < sizeof chain; j++)
                o += (size_t)snprintf(chain + o, sizeof chain - o, "%s -> ", c->chain[j]);
            if (o < sizeof chain) snprintf(chain + o, sizeof chain - o, "%s", path);
            return err_at(e, from, "defaults", NULL, "include cycle: %s", chain);
        }
    }
    if (c->depth >= MAX_INCLUDE_DEPTH)
        return err_at(e, from, "defaults", NULL, "includes nested deeper than %d files", MAX_INCLUDE_DEPTH);
    size_t len = 0;
    char why[256];
    char *text = read_file(path, &len, why, sizeof why);
    if (!text) {
        if (top) return err_at(e, (Where){path, 0}, NULL, NULL, "cannot read config file: %s", why);
        return err_at(e, from, "defaults", NULL, "cannot read '%s': %s", path, why);
    }
    int fileid = ctx_add_file(c, path);
    if (fileid < 0) {
        free(text);
        return err_at(e, from, "defaults", NULL, "more than %d config files", MAX_FILES);
    }
    yaml_document_t doc;
    int rc = parse_yaml(e, c->files[fileid], 0, NULL, text, len, &doc);
    free(text);
    if (rc) return -1;
    snprintf(c->chain[c->depth], CFG_PATH_LEN, "%s", path);
    snprintf(c->chain_real[c->depth], PATH_MAX, "%s", real);
    c->depth++;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    rc = 0;
    if (root && !(root->type == YAML_SCALAR_NODE && sc_null(node_scalar(root)))) {
        if (root->type != YAML_MAPPING_NODE) {
            rc = err_at(e, node_where(c, fileid, root), NULL, "a config file is a mapping of `key: value` lines",
                        "the top level must be a mapping of keys, got %s", node_kind(root));
        } else {
            // `defaults:` first (wherever it appears), then the file's own keys.
            for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top && !rc; p++) {
                yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
                if (kn->type == YAML_SCALAR_NODE && !strcmp((const char *)kn->data.scalar.value, "defaults")) {
                    rc = load_defaults(c, &doc, yaml_document_get_node(&doc, p->value), prefix, fileid);
                    break; // a second `defaults` key is reported as a duplicate below
                }
            }
            if (!rc) rc = apply_mapping(c, &doc, root, prefix, fileid, 1);
        }
    }
    c->depth--;
    yaml_document_delete(&doc);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Defaults

static void apply_text_or_die(Ctx *c, int gi, const char *text) {
    const CfgRow *r = g_keys[gi].row;
    if (is_scalar_type(r->type)) {
        Scalar v = {text, 0};
        if (store_scalar(c->err, (Where){"(schema default)", 0}, g_keys[gi].key, r, v, value_ptr(c->cfg, gi), 0))
            lola_die("config schema default: %s", c->err->text);
        return;
    }
    yaml_document_t doc;
    if (parse_yaml(c->err, "(schema default)", 1, g_keys[gi].key, text, strlen(text), &doc))
        lola_die("config schema default: %s", c->err->text);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    if (root) rc = apply_value(c, &doc, root, gi, -1);
    else memset(value_ptr(c->cfg, gi), 0, r->size), *count_ptr(c->cfg, gi) = 0;
    yaml_document_delete(&doc);
    if (rc) lola_die("config schema default: %s", c->err->text);
}

static void defaults_into(Ctx *c) {
    memset(c->cfg, 0, sizeof *c->cfg);
    for (int gi = 0; gi < g_nkeys; gi++)
        if (g_keys[gi].row->def) apply_text_or_die(c, gi, g_keys[gi].row->def);
    for (int s = 0; s < cfg_nsections; s++) {
        const CfgSection *sec = &cfg_sections[s];
        if (!sec->defaults) continue;
        yaml_document_t doc;
        if (parse_yaml(c->err, "(schema default)", 1, sec->name, sec->defaults, strlen(sec->defaults), &doc))
            lola_die("config schema default: %s", c->err->text);
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        int rc = root ? apply_mapping(c, &doc, root, sec->name, -1, 0) : 0;
        yaml_document_delete(&doc);
        if (rc) lola_die("config schema default: %s", c->err->text);
    }
    for (int i = 0; i < MAX_KEYS; i++) c->origin[i].file = -1, c->origin[i].line = 0;
}

void config_defaults(Config *cfg) {
    ConfigError err;
    Ctx *c = ctx_new(cfg, &err);
    defaults_into(c);
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Overrides

static int apply_override(Ctx *c, const char *arg, int pos) {
    ConfigError *e = c->err;
    int fileid = ctx_add_file(c, CMDLINE);
    Where w = {CMDLINE, pos};
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return err_at(e, w, NULL, "overrides look like ae.lat_channels=16 or ae.hid_channels=[64,128]",
                      "'%s' is not a key=value override", arg);
    char key[KEY_LEN];
    if ((size_t)(eq - arg) >= sizeof key) return err_at(e, w, NULL, NULL, "key too long in '%s'", arg);
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = '\0';
    const char *val = eq + 1;
    if (!strcmp(key, "defaults"))
        return err_at(e, w, key, NULL, "includes can only be listed in config files, not on the command line");
    int gi = key_find(key);
    if (gi < 0 && !key_is_prefix(key)) {
        char sug[600];
        suggest(key, sug, sizeof sug);
        return err_at(e, w, key, "`lola <command> --help` lists every key", "unknown key%s", sug);
    }
    c->fixed_line = pos;
    int rc;
    if (gi >= 0 && is_scalar_type(g_keys[gi].row->type)) {
        // The raw text is the value (no YAML parsing: '#', ': ' stay literal); surrounding quotes
        // (that survived the shell) make it a quoted string, as in a file.
        char buf[CFG_PATH_LEN * 2];
        size_t L = strlen(val);
        Scalar v = {val, 0};
        if (L >= 2 && (val[0] == '"' || val[0] == '\'') && val[L - 1] == val[0]) {
            if (L - 2 >= sizeof buf) return c->fixed_line = 0, err_at(e, w, key, NULL, "value too long");
            memcpy(buf, val + 1, L - 2);
            buf[L - 2] = '\0';
            v.s = buf;
            v.quoted = 1;
        }
        const CfgRow *r = g_keys[gi].row;
        unsigned char tmp[CFG_PATH_LEN * 2];
        memset(tmp, 0, sizeof tmp);
        rc = store_scalar(e, w, key, r, v, tmp, 0);
        if (!rc) {
            memcpy(value_ptr(c->cfg, gi), tmp, r->size);
            c->origin[gi].file = fileid;
            c->origin[gi].line = pos;
        }
    } else {
        yaml_document_t doc;
        rc = parse_yaml(e, CMDLINE, pos, key, val, strlen(val), &doc);
        if (!rc) {
            yaml_node_t *root = yaml_document_get_root_node(&doc);
            if (!root) { // empty value: null
                yaml_document_delete(&doc);
                rc = parse_yaml(e, CMDLINE, pos, key, "~", 1, &doc);
                root = yaml_document_get_root_node(&doc);
            }
            if (!rc) {
                rc = apply_keyed(c, &doc, root, key, w, fileid);
                yaml_document_delete(&doc);
            }
        }
    }
    c->fixed_line = 0;
    return rc;
}

int config_apply_overrides(Config *cfg, int n, char *const *overrides, ConfigError *err) {
    ConfigError local;
    if (!err) err = &local;
    Ctx *c = ctx_new(cfg, err);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = apply_override(c, overrides[i], i + 1);
    free(c);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Validation

typedef struct {
    const Config *cfg;
    ConfigError *err;
    const Ctx *c; // origins, or NULL
} Val;

static Where where_key(const Val *v, const char *full) {
    Where w = {"", 0};
    if (!v->c) return w;
    int gi = key_find(full);
    if (gi >= 0 && v->c->origin[gi].file >= 0) {
        w.file = v->c->files[v->c->origin[gi].file];
        w.line = v->c->origin[gi].line;
    } else if (v->c->top) {
        w.file = v->c->top;
    }
    return w;
}

static int verror(const Val *v, const char *full, const char *fmt, ...) LOLA_PRINTF(3, 4);
static int verror(const Val *v, const char *full, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(v->err, where_key(v, full), full, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

// Every stored value is within its row's range / allowed values (guards programmatic edits).
static int validate_values(const Val *v) {
    for (int gi = 0; gi < g_nkeys; gi++) {
        const CfgRow *r = g_keys[gi].row;
        const char *key = g_keys[gi].key;
        const void *p = value_ptr(v->cfg, gi);
        Where w = where_key(v, key);
        int cap = row_cap(r), n = 1;
        if (is_list_type(r->type)) {
            n = *count_ptr(v->cfg, gi);
            if (n < 0 || n > cap) return verror(v, key, "list count %d outside [0, %d]", n, cap);
            if (!r->def && n == 0)
                return err_at(v->err, w, key, NULL, "missing required key (it has no default; set it in the config "
                              "or with %s=[...])", key);
        } else if (is_map_type(r->type)) {
            n = cap;
        }
        int nnames = 0;
        if (r->names)
            while (r->names[nnames]) nnames++;
        for (int i = 0; i < n; i++) {
            switch (r->type) {
            case CT_INT: case CT_INT_LIST:
                if (check_range(v->err, w, key, r, ((const int *)p)[i], 1)) return -1;
                break;
            case CT_INT_MAP:
                if (((const int *)p)[i] != 0 && check_range(v->err, w, key, r, ((const int *)p)[i], 1)) return -1;
                break;
            case CT_FLOAT: case CT_FLOAT_LIST:
                if (check_range(v->err, w, key, r, ((const double *)p)[i], 0)) return -1;
                break;
            case CT_BOOL:
                if (((const int *)p)[i] != 0 && ((const int *)p)[i] != 1) return verror(v, key, "boolean is not 0 or 1");
                break;
            case CT_ENUM: case CT_ENUM_LIST: case CT_ENUM_MAP:
                if (((const int *)p)[i] < 0 || ((const int *)p)[i] >= nnames)
                    return verror(v, key, "enum value %d out of range", ((const int *)p)[i]);
                break;
            case CT_STR:
                if (!memchr(p, 0, r->size)) return verror(v, key, "string not NUL-terminated");
                if (!r->def && !((const char *)p)[0])
                    return err_at(v->err, w, key, NULL, "missing required key (it has no default; set it in the "
                                  "config or with %s=...)", key);
                break;
            case CT_STR_LIST:
                if (!memchr((const char *)p + (size_t)i * r->elem, 0, r->elem)) return verror(v, key, "string not NUL-terminated");
                break;
            }
        }
    }
    return 0;
}

static int validate_vit(const Val *v, const CfgVit *m, const char *sec, int denoiser) {
    char k[KEY_LEN];
    if (m->hid_channels % m->attention_heads) {
        snprintf(k, sizeof k, "%s.attention_heads", sec);
        return verror(v, k, "%d heads do not divide hid_channels = %d", m->attention_heads, m->hid_channels);
    }
    if (!denoiser) return 0;
    if (!(m->schedule_sigma_min < m->schedule_sigma_max)) {
        snprintf(k, sizeof k, "%s.schedule.sigma_max", sec);
        return verror(v, k, "sigma_max = %g must be larger than sigma_min = %g", m->schedule_sigma_max,
                      m->schedule_sigma_min);
    }
    if (m->loss_distribution == CFG_TDIST_UNIFORM && !(m->loss_a < m->loss_b && m->loss_b <= 1)) {
        snprintf(k, sizeof k, "%s.loss.b", sec);
        return verror(v, k, "uniform(a, b) needs 0 <= a < b <= 1 (got a = %g, b = %g)", m->loss_a, m->loss_b);
    }
    if (m->loss_distribution != CFG_TDIST_UNIFORM && !(m->loss_a > 0)) {
        snprintf(k, sizeof k, "%s.loss.a", sec);
        return verror(v, k, "%s(a, b) needs a > 0 (got %g)", cfg_tdist_names[m->loss_distribution], m->loss_a);
    }
    return 0;
}

static int validate_optim(const Val *v, const CfgOptim *o, const char *sec) {
    static const int nbetas[] = {2, 1, 3}; // adamw, psgd, soap
    if (o->n_betas != nbetas[o->optimizer]) {
        char k[KEY_LEN];
        snprintf(k, sizeof k, "%s.betas", sec);
        return verror(v, k, "optimizer %s takes %d beta%s, got %d", cfg_optimizer_names[o->optimizer],
                      nbetas[o->optimizer], nbetas[o->optimizer] > 1 ? "s" : "", o->n_betas);
    }
    return 0;
}

static int validate_train(const Val *v, const CfgTrain *t, const char *sec) {
    char k[KEY_LEN];
    if (t->batch_size % t->accumulation) {
        snprintf(k, sizeof k, "%s.accumulation", sec);
        return verror(v, k, "%d micro-batches do not divide batch_size = %d", t->accumulation, t->batch_size);
    }
    if (t->epoch_size < t->batch_size) {
        snprintf(k, sizeof k, "%s.epoch_size", sec);
        return verror(v, k, "epoch_size = %d is smaller than batch_size = %d (no optimizer step per epoch)",
                      t->epoch_size, t->batch_size);
    }
    return 0;
}

static int validate_cross(const Val *v) {
    const Config *c = v->cfg;
    const CfgDataset *ds = &c->dataset;
    if (ds->n_stats_mean != ds->n_fields)
        return verror(v, "dataset.stats.mean", "has %d values but dataset.fields has %d channels", ds->n_stats_mean,
                      ds->n_fields);
    if (ds->n_stats_std != ds->n_fields)
        return verror(v, "dataset.stats.std", "has %d values but dataset.fields has %d channels", ds->n_stats_std,
                      ds->n_fields);
    for (int i = ds->n_fields; i < CFG_MAX_CHANNELS; i++)
        if (ds->transform[i] != CFG_TF_NONE)
            return verror(v, "dataset.transform", "channel %d does not exist (dataset.fields has %d channels)", i,
                          ds->n_fields);
    const CfgAe *ae = &c->ae;
    if (ae->n_hid_channels < 1) return verror(v, "ae.hid_channels", "needs at least one level");
    if (ae->n_hid_blocks != ae->n_hid_channels)
        return verror(v, "ae.hid_blocks", "has %d levels but ae.hid_channels has %d", ae->n_hid_blocks,
                      ae->n_hid_channels);
    for (int i = 0; i < CFG_MAX_LEVELS; i++) {
        if (!ae->attention_heads[i]) continue;
        if (i >= ae->n_hid_channels)
            return verror(v, "ae.attention_heads", "level %d does not exist (ae.hid_channels has %d levels)", i,
                          ae->n_hid_channels);
        if (ae->hid_channels[i] % ae->attention_heads[i])
            return verror(v, "ae.attention_heads", "%d heads do not divide hid_channels[%d] = %d",
                          ae->attention_heads[i], i, ae->hid_channels[i]);
    }
    if (ae->kernel_size % 2 == 0) return verror(v, "ae.kernel_size", "must be odd, got %d", ae->kernel_size);
    if (ae->norm == CFG_NORM_GROUP)
        for (int i = 0; i < ae->n_hid_channels; i++)
            if (ae->hid_channels[i] % ae->groups)
                return verror(v, "ae.groups", "%d groups do not divide hid_channels[%d] = %d", ae->groups, i,
                              ae->hid_channels[i]);
    if (ae->n_loss_losses < 1) return verror(v, "ae.loss.losses", "needs at least one loss");
    if (ae->n_loss_weights != ae->n_loss_losses)
        return verror(v, "ae.loss.weights", "has %d weights but ae.loss.losses has %d losses", ae->n_loss_weights,
                      ae->n_loss_losses);
    if (validate_vit(v, &c->denoiser, "denoiser", 1) || validate_vit(v, &c->surrogate, "surrogate", 0)) return -1;
    if (validate_optim(v, &c->ae_optim, "ae_optim") || validate_optim(v, &c->dm_optim, "dm_optim") ||
        validate_optim(v, &c->ns_optim, "ns_optim"))
        return -1;
    if (validate_train(v, &c->ae_train, "ae_train") || validate_train(v, &c->dm_train, "dm_train") ||
        validate_train(v, &c->ns_train, "ns_train"))
        return -1;
    const CfgTrajectory *tr = &c->trajectory;
    if (tr->context_atleast >= tr->length)
        return verror(v, "trajectory.context.atleast", "%d context states leave nothing to predict in a window of %d",
                      tr->context_atleast, tr->length);
    if (c->eval.context >= tr->length)
        return verror(v, "eval.context", "%d context states leave nothing to predict in a window of trajectory.length = %d",
                      c->eval.context, tr->length);
    if (c->eval.overlap >= tr->length)
        return verror(v, "eval.overlap", "overlap %d must be smaller than trajectory.length = %d", c->eval.overlap,
                      tr->length);
    return 0;
}

static int validate(const Config *cfg, ConfigError *err, const Ctx *c) {
    index_init();
    Val v = {cfg, err, c};
    if (validate_values(&v)) return -1;
    return validate_cross(&v);
}

int config_validate(const Config *cfg, ConfigError *err) {
    ConfigError local;
    return validate(cfg, err ? err : &local, NULL);
}

// ---------------------------------------------------------------------------------------------
// Load

int config_load_ex(Config *cfg, const char *path, int n_overrides, char *const *overrides, ConfigError *err) {
    ConfigError local;
    if (!err) err = &local;
    Ctx *c = ctx_new(cfg, err);
    memset(err, 0, sizeof *err);
    defaults_into(c);
    c->top = path;
    int rc = 0;
    if (path) rc = load_file(c, path, "", (Where){NULL, 0});
    for (int i = 0; i < n_overrides && !rc; i++) rc = apply_override(c, overrides[i], i + 1);
    if (!rc) rc = validate(cfg, err, c);
    free(c);
    return rc;
}

void config_load(Config *cfg, const char *path, int n_overrides, char *const *overrides) {
    ConfigError err;
    if (config_load_ex(cfg, path, n_overrides, overrides, &err) == 0) return;
    char rest[1400];
    if (err.key[0]) snprintf(rest, sizeof rest, "%s: %s", err.key, err.msg);
    else snprintf(rest, sizeof rest, "%s", err.msg);
    // The config position takes the place of lola_die's source position.
    lola_die_hint_at(err.file[0] ? err.file : "config", err.line, err.hint, "%s", rest);
}

// ---------------------------------------------------------------------------------------------
// Output: YAML and help

static void write_float(FILE *f, double x) {
    if (isnan(x)) {
        fputs(".nan", f);
        return;
    }
    if (isinf(x)) {
        fputs(x < 0 ? "-.inf" : ".inf", f);
        return;
    }
    // Shortest text that reads back exactly, spelled so that YAML 1.1 readers (PyYAML) also see a
    // float: a '.' in the mantissa, a signed exponent (1000.0, 0.001, 1.0e-05).
    char buf[64];
    if (x == floor(x) && fabs(x) < 1e16) {
        snprintf(buf, sizeof buf, "%.1f", x);
    } else {
        shortest(x, buf, sizeof buf - 4);
        char *e = strchr(buf, 'e');
        if (e && !memchr(buf, '.', (size_t)(e - buf))) {
            memmove(e + 2, e, strlen(e) + 1);
            e[0] = '.';
            e[1] = '0';
        }
    }
    fputs(buf, f);
}

static void write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void write_elem(FILE *f, const CfgRow *r, const void *base, int i) {
    switch (r->type) {
    case CT_INT: case CT_INT_LIST: case CT_INT_MAP: fprintf(f, "%d", ((const int *)base)[i]); break;
    case CT_FLOAT: case CT_FLOAT_LIST: write_float(f, ((const double *)base)[i]); break;
    case CT_BOOL: fputs(((const int *)base)[i] ? "true" : "false", f); break;
    case CT_STR: write_string(f, (const char *)base); break;
    case CT_STR_LIST: write_string(f, (const char *)base + (size_t)i * r->elem); break;
    case CT_ENUM: case CT_ENUM_LIST: case CT_ENUM_MAP: fputs(r->names[((const int *)base)[i]], f); break;
    }
}

// The value of key gi in YAML flow syntax.
static void write_value(FILE *f, const Config *cfg, int gi) {
    const CfgRow *r = g_keys[gi].row;
    const void *p = value_ptr(cfg, gi);
    if (is_list_type(r->type)) {
        int n = *count_ptr(cfg, gi);
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            write_elem(f, r, p, i);
        }
        fputc(']', f);
    } else if (is_map_type(r->type)) {
        fputc('{', f);
        int first = 1;
        for (int i = 0; i < row_cap(r); i++) {
            if (((const int *)p)[i] == 0) continue; // 0 = absent (int maps) / "none" (enum maps)
            fprintf(f, "%s%d: ", first ? "" : ", ", i);
            write_elem(f, r, p, i);
            first = 0;
        }
        fputc('}', f);
    } else {
        write_elem(f, r, p, 0);
    }
}

void config_write_yaml(const Config *cfg, FILE *out) {
    index_init();
    fprintf(out, "# lola resolved configuration: every key (reload with `lola <command> -c this-file`)\n");
    const CfgSection *sec = NULL;
    const char *prev = NULL;
    for (int gi = 0; gi < g_nkeys; gi++) {
        if (g_keys[gi].sec != sec) {
            sec = g_keys[gi].sec;
            fprintf(out, "%s:\n", sec->name);
            prev = NULL;
        }
        // Nesting: open the dotted components this key does not share with the previous one.
        const char *k = g_keys[gi].row->key;
        int depth = 0, shared = 1;
        const char *a = k, *b = prev;
        for (;;) {
            const char *dot = strchr(a, '.');
            if (!dot) break;
            size_t L = (size_t)(dot - a);
            if (shared && b && strncmp(a, b, L) == 0 && b[L] == '.') {
                b += L + 1;
            } else {
                shared = 0;
                fprintf(out, "%*s%.*s:\n", 2 * (depth + 1), "", (int)L, a);
            }
            depth++;
            a = dot + 1;
        }
        fprintf(out, "%*s%s: ", 2 * (depth + 1), "", a);
        write_value(out, cfg, gi);
        fputc('\n', out);
        prev = k;
    }
}

char *config_yaml_string(const Config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) lola_die("open_memstream failed: %s", strerror(errno));
    config_write_yaml(cfg, f);
    fclose(f);
    return buf;
}

static void type_text(const CfgRow *r, char *buf, size_t cap) {
    char rt[96], names[512];
    switch (r->type) {
    case CT_INT: range_text(r, 1, rt, sizeof rt); snprintf(buf, cap, "int in %s", rt); break;
    case CT_FLOAT: range_text(r, 0, rt, sizeof rt); snprintf(buf, cap, "float in %s", rt); break;
    case CT_BOOL: snprintf(buf, cap, "bool"); break;
    case CT_STR: snprintf(buf, cap, "string"); break;
    case CT_ENUM: names_list(r->names, names, sizeof names); snprintf(buf, cap, "one of: %s", names); break;
    case CT_INT_LIST:
        range_text(r, 1, rt, sizeof rt);
        snprintf(buf, cap, "list of up to %d ints in %s", row_cap(r), rt);
        break;
    case CT_FLOAT_LIST:
        range_text(r, 0, rt, sizeof rt);
        snprintf(buf, cap, "list of up to %d floats in %s", row_cap(r), rt);
        break;
    case CT_STR_LIST: snprintf(buf, cap, "list of up to %d strings", row_cap(r)); break;
    case CT_ENUM_LIST:
        names_list(r->names, names, sizeof names);
        snprintf(buf, cap, "list of up to %d of: %s", row_cap(r), names);
        break;
    case CT_INT_MAP:
        range_text(r, 1, rt, sizeof rt);
        snprintf(buf, cap, "map {0..%d: int in %s}", row_cap(r) - 1, rt);
        break;
    case CT_ENUM_MAP:
        names_list(r->names, names, sizeof names);
        snprintf(buf, cap, "map {0..%d: one of %s}", row_cap(r) - 1, names);
        break;
    }
}

static int section_listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t L = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += L)
        if ((p == list || p[-1] == ' ') && (p[L] == ' ' || p[L] == '\0')) return 1;
    return 0;
}

void config_print_help(FILE *out, const char *sections) {
    index_init();
    Config *d = LOLA_NEW(Config, 1);
    config_defaults(d);
    const CfgSection *sec = NULL;
    for (int gi = 0; gi < g_nkeys; gi++) {
        if (!section_listed(sections, g_keys[gi].sec->name)) continue;
        if (g_keys[gi].sec != sec) {
            sec = g_keys[gi].sec;
            fprintf(out, "\n%s: %s\n", sec->name, sec->help);
        }
        const CfgRow *r = g_keys[gi].row;
        char tt[700];
        type_text(r, tt, sizeof tt);
        fprintf(out, "  %s = ", g_keys[gi].key);
        if (r->def) write_value(out, d, gi);
        else fputs("(required)", out);
        fprintf(out, "    [%s]\n      %s\n", tt, r->help);
    }
    free(d);
}

// ---------------------------------------------------------------------------------------------
// Comparison

const char *config_diff(const Config *a, const Config *b) {
    index_init();
    for (int gi = 0; gi < g_nkeys; gi++) {
        const CfgRow *r = g_keys[gi].row;
        const char *pa = value_ptr(a, gi), *pb = value_ptr(b, gi);
        int n = 1;
        if (is_list_type(r->type)) {
            n = *count_ptr(a, gi);
            if (n != *count_ptr(b, gi)) return g_keys[gi].key;
        } else if (is_map_type(r->type)) {
            n = row_cap(r);
        }
        if (r->type == CT_STR) {
            if (strncmp(pa, pb, r->size)) return g_keys[gi].key;
            continue;
        }
        if (r->type == CT_STR_LIST) {
            for (int i = 0; i < n; i++)
                if (strncmp(pa + (size_t)i * r->elem, pb + (size_t)i * r->elem, r->elem)) return g_keys[gi].key;
            continue;
        }
        if (memcmp(pa, pb, (size_t)n * r->elem)) return g_keys[gi].key;
    }
    return NULL;
}
