// test_safetensors.c: the safetensors reader/writer (src/safetensors.c) and the stage export /
// import (src/stage_export.c).
//   1. writer -> reader round trip (0-d, empty and 4-D tensors, escaped and non-ASCII names,
//      metadata), header padded to 8 bytes; the writer refuses duplicate / invalid names
//   2. F16 / BF16 / F64 decoding (subnormals, inf, NaN, out-of-range F64)
//   3. every class of bad file refused with a message naming the file and the problem
//   4. AE, DM, NS: checkpoint -> export -> import -> checkpoint is bit-exact; exported names are
//      the table rows in order with the state_dict buffers at their PyTorch positions;
//      export(import(export)) is byte-identical; F64 files import with conversion
//   5. import refusals (missing / extra / misshapen tensors, wrong buffers, wrong stage, config
//      mismatches the shapes cannot show) list every problem and write nothing
//   6. export refusals (no checkpoint, checkpoint of another config, bad stage)
// Mode `--emit DIR` (used by tests/t_export.sh): writes DIR/config.yaml, DIR/run/{ae,dm,ns}/state.h5
// with random weights, their exports DIR/{ae,dm,ns}.safetensors, and forward passes of our models
// on fixed inputs DIR/forward_{ae,dm,ns}.safetensors for tests/torch_load_export.py.
// Runs from the repository root (reads configs/euler.yaml).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "nn.h"
#include "rng.h"
#include "safetensors.h"
#include "stages.h"
#include "test.h"

static char g_tmp[256];

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_tmp, name); }

// Writes a raw safetensors file: 8-byte length, header text as given (no padding), data bytes.
static void write_raw(const char *path, const char *header, const void *data, size_t n, uint64_t fake_len) {
    FILE *f = fopen(path, "wb");
    uint64_t N = fake_len ? fake_len : strlen(header);
    unsigned char lb[8];
    for (int k = 0; k < 8; k++) lb[k] = (unsigned char)(N >> (8 * k));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static int file_bytes(const char *path, unsigned char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc(*n + 1);
    size_t r = fread(*out, 1, *n, f);
    fclose(f);
    return r == *n ? 0 : -1;
}

static int files_equal(const char *a, const char *b) {
    unsigned char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int eq = file_bytes(a, &x, &nx) == 0 && file_bytes(b, &y, &ny) == 0 && nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}


// ---- 1. round trip -----------------------------------------------------------------------------

static void test_roundtrip(void) {
    char p[512];
    path_in(p, sizeof p, "rt.safetensors");
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 65504};
    float b = 0.25f, c[1] = {7}, e[24];
    for (int i = 0; i < 24; i++) e[i] = (float)i * 0.5f - 3;
    int64_t sa[2] = {2, 3}, sc[1] = {1}, sz[1] = {0}, se[4] = {1, 2, 3, 4};
    const char *weird = "na\"me\\ with\ttab, \xc3\xa9 and \xf0\x9f\x98\x80"; // quote, backslash, tab, é, 😀
    StOut t[5] = {{"a.weight", 2, sa, a}, {"b.eps", 0, NULL, &b}, {weird, 1, sc, c}, {"empty", 1, sz, NULL},
                  {"e", 4, se, e}};
    StMeta meta[2] = {{"format", "pt"}, {"k\xc3\xa9y", "va\"l\nue"}};
    char err[1024];
    uint64_t bytes = 0;
    int rc = st_write_f32(p, t, 5, meta, 2, &bytes, err, sizeof err);
    CHECK(rc == 0, "writer: 5 tensors + 2 metadata entries written (%s)", rc ? err : "ok");
    unsigned char *raw = NULL;
    size_t nraw = 0;
    file_bytes(p, &raw, &nraw);
    uint64_t N = 0;
    for (int k = 7; k >= 0; k--) N = (N << 8) | raw[k];
    CHECK(N % 8 == 0 && raw[8] == '{' && (raw[8 + N - 1] == ' ' || raw[8 + N - 1] == '}'),
          "header length %llu is a multiple of 8, starts with '{', ends with '}' or space padding", (unsigned long long)N);
    CHECK(!memcmp(raw + 8, "{\"__metadata__\":{", 17), "__metadata__ comes first in the header");
    CHECK(nraw == bytes && nraw == 8 + N + 4 * (6 + 1 + 1 + 0 + 24), "file size %zu = 8 + header + data", nraw);
    free(raw);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(!lola_exists(tmp), "no temporary file left behind");

    StFile f;
    rc = st_open(&f, p, err, sizeof err);
    CHECK(rc == 0, "reader opens the writer's file (%s)", rc ? err : "ok");
    if (rc) return;
    CHECK(f.n == 5 && f.n_meta == 2, "5 tensors, 2 metadata entries");
    int ok = 1;
    for (int i = 0; i < 5 && ok; i++) {
        ok = !strcmp(f.tensors[i].name, t[i].name) && f.tensors[i].ndim == t[i].ndim && f.tensors[i].dtype == ST_F32;
        for (int d = 0; ok && d < t[i].ndim; d++) ok = f.tensors[i].shape[d] == t[i].shape[d];
    }
    CHECK(ok, "names (escaped quote/backslash/tab, UTF-8), order, shapes and dtypes survive");
    CHECK(f.tensors[1].numel == 1 && f.tensors[3].numel == 0 && f.tensors[4].numel == 24, "0-d tensor has 1 element, [0] has 0");
    CHECK(st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), "pt") && st_meta(&f, "k\xc3\xa9y") &&
              !strcmp(st_meta(&f, "k\xc3\xa9y"), "va\"l\nue"),
          "metadata keys and values survive (escapes, UTF-8)");
    CHECK(st_find(&f, weird) == 2 && st_find(&f, "nope") == -1, "st_find");
    float ra[6], rb, re[24], rz[1] = {42};
    int r1 = st_read_f32(&f, 0, ra, err, sizeof err), r2 = st_read_f32(&f, 1, &rb, err, sizeof err),
        r3 = st_read_f32(&f, 4, re, err, sizeof err), r4 = st_read_f32(&f, 3, rz, err, sizeof err);
    CHECK(!r1 && !r2 && !r3 && !r4 && !memcmp(ra, a, sizeof a) && rb == b && !memcmp(re, e, sizeof e) && rz[0] == 42,
          "data read back bit-exact (incl. -0 and a subnormal-range value)");
    st_close(&f);

    // Writer refusals.
    char q[512];
    path_in(q, sizeof q, "refused.safetensors");
    StOut dup[2] = {{"x", 1, sc, c}, {"x", 1, sc, c}};
    rc = st_write_f32(q, dup, 2, NULL, 0, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "duplicate tensor name \"x\"") && !lola_exists(q), "writer refuses duplicate names: %s", err);
    StOut bad[1] = {{"bad\xff", 1, sc, c}};
    rc = st_write_f32(q, bad, 1, NULL, 0, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "not valid UTF-8") && !lola_exists(q), "writer refuses a non-UTF-8 name: %s", err);
    StOut res[1] = {{"__metadata__", 1, sc, c}};
    rc = st_write_f32(q, res, 1, NULL, 0, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "reserved"), "writer refuses the name __metadata__");
    StMeta dm[2] = {{"k", "1"}, {"k", "2"}};
    rc = st_write_f32(q, t, 1, dm, 2, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "duplicate metadata key"), "writer refuses duplicate metadata keys");
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", g_tmp);
    rc = st_write_f32(nodir, t, 1, NULL, 0, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "cannot create"), "writer reports an unwritable path: %s", err);
}

// ---- 2. conversions ----------------------------------------------------------------------------

static void test_conversions(void) {
    CHECK(st_half_to_float(0x3C00) == 1.0f && st_half_to_float(0xC000) == -2.0f && st_half_to_float(0x7BFF) == 65504.0f &&
              st_half_to_float(0x0001) == ldexpf(1, -24) && st_half_to_float(0x03FF) == ldexpf(1023, -24) &&
              isinf(st_half_to_float(0x7C00)) && isnan(st_half_to_float(0x7E00)) && signbit(st_half_to_float(0x8000)) &&
              st_half_to_float(0x3555) == 1365.0f / 4096.0f,
          "F16 decoding: normal, max, subnormals, inf, NaN, -0");
    CHECK(st_bf16_to_float(0x3F80) == 1.0f && st_bf16_to_float(0xC049) == -3.140625f && isinf(st_bf16_to_float(0xFF80)),
          "BF16 decoding");
    // A hand-made file with F16, BF16 and F64 tensors and an I64 tensor.
    uint16_t h[4] = {0x3C00, 0x0001, 0xFC00, 0xB800};
    uint16_t bf[2] = {0x3F80, 0xC049};
    double d[3] = {0.1, 1e300, -2.5};
    int64_t i64[1] = {7};
    unsigned char data[8 + 4 + 24 + 8];
    memcpy(data, h, 8);
    memcpy(data + 8, bf, 4);
    memcpy(data + 12, d, 24);
    memcpy(data + 36, i64, 8);
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                      "\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[12,36]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[36,44]}}";
    char p[512], err[1024];
    path_in(p, sizeof p, "conv.safetensors");
    write_raw(p, hdr, data, sizeof data, 0);
    StFile f;
    int rc = st_open(&f, p, err, sizeof err);
    CHECK(rc == 0, "hand-made F16/BF16/F64/I64 file opens (%s)", rc ? err : "ok");
    if (rc) return;
    float oh[4], ob[2], od[3], oi[1];
    int r1 = st_read_f32(&f, 0, oh, err, sizeof err), r2 = st_read_f32(&f, 1, ob, err, sizeof err),
        r3 = st_read_f32(&f, 2, od, err, sizeof err);
    CHECK(!r1 && oh[0] == 1.0f && oh[1] == ldexpf(1, -24) && isinf(oh[2]) && oh[2] < 0 && oh[3] == -0.5f, "F16 tensor -> fp32");
    CHECK(!r2 && ob[0] == 1.0f && ob[1] == -3.140625f, "BF16 tensor -> fp32");
    CHECK(!r3 && od[0] == 0.1f && isinf(od[1]) && od[2] == -2.5f, "F64 tensor -> fp32 (1e300 -> inf)");
    rc = st_read_f32(&f, 3, oi, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "dtype I64, which cannot be read as fp32") && strstr(err, p), "I64 is refused by st_read_f32: %s",
          err);
    st_close(&f);
}

// ---- 3. bad files ------------------------------------------------------------------------------

typedef struct {
    const char *what, *header, *expect;
    size_t data_bytes;
    uint64_t fake_len;
} BadCase;

static void test_bad_files(void) {
    static char deep[400];
    strcpy(deep, "{\"__metadata__\":");
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    for (int i = 0; i < 70; i++) strcat(deep, "]");
    strcat(deep, "}");
    BadCase cases[] = {
        {"header length past the end", "{}", "runs past the end of the file", 0, 1000},
        {"absurd header length", "{}", "is absurd", 0, 1ULL << 40},
        {"truncated data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "truncated file", 8, 0},
        {"overlapping offsets",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         "overlapping data_offsets", 24, 0},
        {"gap between tensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
         "gap of 8 bytes", 24, 0},
        {"first tensor not at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", "starts at data byte 8", 16, 0},
        {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unused bytes after the last tensor", 12, 0},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype \"F12\"", 8, 0},
        {"non-UTF-8 name (0xFF)", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "not valid UTF-8", 8, 0},
        {"non-UTF-8 name (overlong /)", "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "not valid UTF-8", 8, 0},
        {"non-UTF-8 name (UTF-8 surrogate)", "{\"a\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         "not valid UTF-8", 8, 0},
        {"lone surrogate escape", "{\"a\\ud800b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "surrogate", 8, 0},
        {"NUL escape", "{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\\u0000 (NUL)", 8, 0},
        {"duplicate names",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "duplicate tensor name \"a\"", 8, 0},
        {"duplicate names via escapes",
         "{\"ab\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\\u0062\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "duplicate tensor name \"ab\"", 8, 0},
        {"shape/offset mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "shape/offset mismatch", 8, 0},
        {"end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", "end before begin", 8, 0},
        {"trailing comma", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", "trailing comma", 8, 0},
        {"missing colon", "{\"a\" {\"dtype\":\"F32\"}}", "expected ':'", 0, 0},
        {"not an object", "[1, 2]", "must start with '{'", 0, 0},
        {"garbage after the object", "{}x", "unexpected data after the top-level object", 0, 0},
        {"unterminated", "{\"a\":{\"dtype\":\"F32\"", "unterminated", 0, 0},
        {"bad escape", "{\"a\\q\":1}", "invalid escape", 0, 0},
        {"raw control character", "{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "control character", 8, 0},
        {"fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "shape[0] is not a non-negative integer",
         8, 0},
        {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", "data_offsets[0] is not a non-negative", 8, 0},
        {"int64 overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
         "shape[0] is not a non-negative integer", 8, 0},
        {"leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", "leading zero", 8, 0},
        {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "array of two integers", 8, 0},
        {"missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "missing \"dtype\"", 8, 0},
        {"unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", "unknown key \"x\"", 8, 0},
        {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", "__metadata__ value of \"k\" is a number", 0, 0},
        {"metadata not an object", "{\"__metadata__\":\"x\"}", "__metadata__ is a string", 0, 0},
        {"too deep", deep, "nested deeper than 64", 0, 0},
        {"tensor entry not an object", "{\"a\":[1]}", "entry is an array", 0, 0},
        {"data without tensors", "{}", "bytes of data after a header without tensors", 8, 0},
    };
    unsigned char zeros[64] = {0};
    char p[512], err[1024];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(p, sizeof p, "%s/bad_%zu.safetensors", g_tmp, c);
        write_raw(p, cases[c].header, zeros, cases[c].data_bytes, cases[c].fake_len);
        StFile f;
        err[0] = 0;
        int rc = st_open(&f, p, err, sizeof err);
        int ok = rc == -1 && strstr(err, cases[c].expect) && strstr(err, p);
        if (!ok) printf("  message: %s\n", err);
        CHECK(ok, "refused: %s -> \"%s\"", cases[c].what, err);
        if (rc == 0) st_close(&f);
    }
    // Shorter than the 8-byte length.
    snprintf(p, sizeof p, "%s/short.safetensors", g_tmp);
    FILE *fp = fopen(p, "wb");
    fwrite("abcd", 1, 4, fp);
    fclose(fp);
    StFile f;
    int rc = st_open(&f, p, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "truncated file: 4 bytes") && strstr(err, p), "refused: 4-byte file -> \"%s\"", err);
    rc = st_open(&f, "/nonexistent/x.safetensors", err, sizeof err);
    CHECK(rc == -1 && strstr(err, "cannot open") && strstr(err, "/nonexistent/x.safetensors"), "refused: missing file");
    // A valid file with space padding, whitespace inside the JSON and an empty tensor list is fine.
    snprintf(p, sizeof p, "%s/ok_ws.safetensors", g_tmp);
    write_raw(p, " {}     ", NULL, 0, 0);
    rc = st_open(&f, p, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "must start with '{'"), "leading space refused like the reference implementation");
    write_raw(p, "{ \"__metadata__\" : { } ,\n \"a\" : { \"shape\" : [ ] , \"dtype\" : \"BOOL\" , \"data_offsets\" : [ 0 , 1 ] } }   ",
              zeros, 1, 0);
    rc = st_open(&f, p, err, sizeof err);
    CHECK(rc == 0 && f.n == 1 && f.tensors[0].dtype == ST_BOOL && f.tensors[0].ndim == 0, "whitespace, key order, BOOL 0-d accepted (%s)",
          rc ? err : "ok");
    if (rc == 0) st_close(&f);
}

// ---- 4-6. stages -------------------------------------------------------------------------------

// Tiny models on the Euler preset (5 channels): AE [8, 16, 32] x [1, 1, 2] with attention at level
// 2, DM D = 32 x 2 blocks, NS D = 16 x 1 block.
static void tiny_config(Config *cfg, const char *run_dir, const char *extra) {
    char rd[600];
    snprintf(rd, sizeof rd, "run.dir=%s", run_dir);
    char *ov[24] = {"ae.lat_channels=4", "ae.hid_channels=[8,16,32]", "ae.hid_blocks=[1,1,2]", "ae.attention_heads={2: 2}",
                    "denoiser.hid_channels=32", "denoiser.hid_blocks=2", "denoiser.attention_heads=4", "denoiser.emb_features=16",
                    "surrogate.hid_channels=16", "surrogate.hid_blocks=1", "surrogate.attention_heads=2",
                    "surrogate.emb_features=8", "dataset.root=/nonexistent", "trajectory.length=3", rd};
    int n = 15;
    char ex[256];
    if (extra) {
        snprintf(ex, sizeof ex, "%s", extra);
        ov[n++] = ex;
    }
    config_load(cfg, "configs/euler.yaml", n, ov);
}

typedef struct {
    ParamTable table; // AE
    Emulator emu;     // DM / NS
    int is_emu;
    const ParamTable *t;
} TestModel;

static const int LABEL = 5;

static void model_build(TestModel *m, const Config *cfg, const char *stage, int L, int h, int w) {
    memset(m, 0, sizeof *m);
    if (!strcmp(stage, "ae")) {
        DcaeConfig dc;
        dcae_config_from(cfg, cfg->dataset.n_fields, &dc);
        dcae_build_table(&dc, &m->table);
        m->t = &m->table;
    } else {
        EmuConfig ec;
        int window[3] = {L, h, w};
        emu_config_from(cfg, !strcmp(stage, "dm") ? EMU_DM : EMU_NS, cfg->ae.lat_channels, 3, window, LABEL, &ec);
        emu_build(&m->emu, &ec);
        m->is_emu = 1;
        m->t = &m->emu.table;
    }
}

static void model_free(TestModel *m) {
    if (m->is_emu) emu_destroy(&m->emu);
    else ptable_free(&m->table);
}

// U(-a, a), a = 1/sqrt(fan) with fan = numel / shape[0] (numel for 1-D rows): every path of the
// network contributes at O(1), so a forward comparison is sensitive to every tensor.
static void fill_random(const ParamTable *t, float *p, uint64_t seed) {
    Rng r = rng_seed(seed);
    for (int i = 0; i < t->n; i++) {
        const ParamSpec *row = &t->rows[i];
        double fan = row->ndim > 1 ? (double)row->numel / (double)row->shape[0] : (double)row->numel;
        double a = 1.0 / sqrt(fan > 0 ? fan : 1);
        for (size_t k = 0; k < row->numel; k++) p[row->offset + k] = (float)((2 * rng_uniform(&r) - 1) * a);
    }
}

static void save_random_ckpt(const Config *cfg, const char *stage, const ParamTable *t, float *p, uint64_t seed) {
    char dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/%s", cfg->run.dir, stage);
    lola_mkdirs(dir);
    snprintf(path, sizeof path, "%s/state.h5", dir);
    fill_random(t, p, seed);
    float *m = LOLA_NEW(float, t->total), *v = LOLA_NEW(float, t->total);
    for (size_t i = 0; i < t->total; i++) m[i] = 0.5f, v[i] = 0.25f;
    CheckpointMeta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.kind, sizeof meta.kind, "%s", stage);
    meta.step = 7;
    meta.epoch = 1;
    meta.best_valid = INFINITY;
    checkpoint_save(path, &meta, t, p, m, v, NULL);
    free(m);
    free(v);
}

// Expected export order: the rows with each buffer inserted before its module's first row.
static void expected_buffers(const Config *cfg, const char *stage, char names[][PARAM_NAME_MAX], int *nb) {
    *nb = 0;
    if (!strcmp(stage, "ae")) {
        DcaeConfig dc;
        dcae_config_from(cfg, cfg->dataset.n_fields, &dc);
        int n = dcae_norm_eps_name(&dc, 0, NULL, 0);
        for (int b = 0; b < n; b++) dcae_norm_eps_name(&dc, b, names[(*nb)++], PARAM_NAME_MAX);
    } else if (!strcmp(stage, "dm")) {
        strcpy(names[(*nb)++], "backbone.backbone.positional_embedding.0.freqs");
        strcpy(names[(*nb)++], "backbone.time_embedding.0.freqs");
    } else {
        strcpy(names[(*nb)++], "backbone.positional_embedding.0.freqs");
    }
}

typedef struct {
    const Config *cfg;
    const char *stage, *in, *run;
} ImportArgs;

static void do_import(void *arg) {
    ImportArgs *a = arg;
    exit(stage_import(a->cfg, a->stage, a->in, a->run));
}

static void do_export(void *arg) {
    ImportArgs *a = arg;
    exit(stage_export(a->cfg, a->stage, a->in));
}

static void test_stage(const char *stage) {
    char run[400], run2[400], out[400], out2[400];
    snprintf(run, sizeof run, "%s/run_%s", g_tmp, stage);
    snprintf(run2, sizeof run2, "%s/run2_%s", g_tmp, stage);
    snprintf(out, sizeof out, "%s/%s.safetensors", g_tmp, stage);
    snprintf(out2, sizeof out2, "%s/%s_again.safetensors", g_tmp, stage);
    Config cfg;
    tiny_config(&cfg, run, NULL);
    TestModel m;
    model_build(&m, &cfg, stage, 3, 4, 4);
    const ParamTable *t = m.t;
    float *p = LOLA_NEW(float, t->total);
    save_random_ckpt(&cfg, stage, t, p, 1234 + (uint64_t)stage[0]);

    int rc = stage_export(&cfg, stage, out);
    CHECK(rc == 0, "%s: export of a %zu-parameter checkpoint", stage, t->total);
    StFile f;
    char err[2048];
    rc = st_open(&f, out, err, sizeof err);
    CHECK(rc == 0, "%s: export opens (%s)", stage, rc ? err : "ok");
    if (rc) goto out;
    char bufs[64][PARAM_NAME_MAX];
    int nb;
    expected_buffers(&cfg, stage, bufs, &nb);
    CHECK(f.n == t->n + nb, "%s: %d tensors = %d parameters + %d buffers", stage, f.n, t->n, nb);
    // Parameters in table order, buffers at their positions, data bit-exact.
    int order_ok = 1, data_ok = 1, pos_ok = 1, k = 0;
    float *tmp = LOLA_NEW(float, t->total);
    for (int i = 0; i < f.n; i++) {
        const StTensor *x = &f.tensors[i];
        int b = -1;
        for (int j = 0; j < nb; j++)
            if (!strcmp(bufs[j], x->name)) b = j;
        if (b >= 0) {
            // the next tensor must belong to the buffer's module
            char parent[PARAM_NAME_MAX];
            snprintf(parent, sizeof parent, "%s", x->name);
            for (int c = 0; c < 2; c++) *strrchr(parent, '.') = 0;
            if (i + 1 >= f.n || strncmp(f.tensors[i + 1].name, parent, strlen(parent)) != 0 ||
                (k > 0 && !strncmp(t->rows[k - 1].name, parent, strlen(parent))))
                pos_ok = 0, printf("  buffer %s misplaced\n", x->name);
            continue;
        }
        if (k >= t->n || strcmp(x->name, t->rows[k].name) != 0) {
            order_ok = 0;
            printf("  tensor %d is %s, expected %s\n", i, x->name, k < t->n ? t->rows[k].name : "(end)");
            break;
        }
        const ParamSpec *r = &t->rows[k];
        int same = x->ndim == r->ndim && x->dtype == ST_F32;
        for (int d = 0; same && d < r->ndim; d++) same = x->shape[d] == r->shape[d];
        if (!same || st_read_f32(&f, i, tmp, err, sizeof err) != 0 || memcmp(tmp, p + r->offset, r->numel * 4) != 0) data_ok = 0;
        k++;
    }
    CHECK(order_ok && k == t->n, "%s: parameters in table (state_dict) order with their exact names", stage);
    CHECK(data_ok, "%s: every parameter exported as F32 with its shape, bit-exact", stage);
    CHECK(pos_ok, "%s: every buffer directly precedes the first parameter of its module (state_dict order)", stage);
    // Buffer values.
    int bval = 1;
    for (int j = 0; j < nb; j++) {
        int i = st_find(&f, bufs[j]);
        if (i < 0) {
            bval = 0;
            continue;
        }
        const StTensor *x = &f.tensors[i];
        float v[1024];
        if (x->numel > 1024 || st_read_f32(&f, i, v, err, sizeof err) != 0) {
            bval = 0;
            continue;
        }
        if (strstr(x->name, "norm.eps")) bval = bval && x->ndim == 0 && v[0] == 1e-5f;
        else {
            int64_t n = x->numel;
            bval = bval && x->ndim == 1 && v[0] == 1.0f && fabsf(v[n - 1] - 1e-3f) <= 1e-10f;
            for (int64_t q = 0; q < n; q++) {
                double want = pow(1e3, -(double)q / (double)(n - 1));
                if (fabs(v[q] - want) > 6e-8 * want) bval = 0, printf("  %s[%lld] = %.9g, want %.9g\n", x->name, (long long)q, v[q], want);
            }
        }
    }
    CHECK(bval, "%s: buffer values (norm.eps = 1e-5 0-d; freqs = 1e3^(-k/(n-1)))", stage);
    const char *ms = st_meta(&f, "stage"), *pc = st_meta(&f, "param_count");
    char pcs[32];
    snprintf(pcs, sizeof pcs, "%zu", t->total);
    CHECK(ms && !strcmp(ms, stage) && pc && !strcmp(pc, pcs) && st_meta(&f, "format_version"), "%s: metadata stage, param_count, format_version",
          stage);
    if (!strcmp(stage, "ae"))
        CHECK(st_meta(&f, "ae.hid_channels") && !strcmp(st_meta(&f, "ae.hid_channels"), "[8, 16, 32]") &&
                  !strcmp(st_meta(&f, "ae.attention_heads"), "{2: 2}") && !strcmp(st_meta(&f, "pix_channels"), "5") &&
                  !strcmp(st_meta(&f, "ae.lat_channels"), "4"),
              "ae: metadata carries the config keys that fix the shapes");
    else
        CHECK(st_meta(&f, "label_features") && !strcmp(st_meta(&f, "label_features"), "5") && !strcmp(st_meta(&f, "spatial"), "3") &&
                  !strcmp(st_meta(&f, "channels"), "4"),
              "%s: metadata label_features 5, spatial 3, channels 4 (read from the checkpoint's shapes)", stage);
    st_close(&f);
    free(tmp);

    // Import -> checkpoint -> bit-exact; export again -> byte-identical file.
    rc = stage_import(&cfg, stage, out, run2);
    CHECK(rc == 0, "%s: import of the export", stage);
    char ck2[600];
    snprintf(ck2, sizeof ck2, "%s/%s/state.h5", run2, stage);
    float *p2 = LOLA_NEW(float, t->total), *m2 = LOLA_NEW(float, t->total), *v2 = LOLA_NEW(float, t->total);
    CheckpointMeta meta;
    int has_optim = 0;
    rc = checkpoint_load(ck2, stage, t, p2, m2, v2, &meta, &has_optim, err, sizeof err);
    int zero = 1;
    for (size_t i = 0; i < t->total; i++) zero = zero && m2[i] == 0 && v2[i] == 0;
    CHECK(rc == 0 && !memcmp(p, p2, t->total * 4), "%s: checkpoint -> export -> import -> checkpoint is bit-exact (%zu values)", stage,
          t->total);
    CHECK(rc == 0 && meta.step == 0 && meta.epoch == 0 && has_optim && zero && !strcmp(meta.kind, stage),
          "%s: imported checkpoint has step 0, kind %s, zero optimizer state", stage, stage);
    char *yaml = checkpoint_read_config(ck2);
    CHECK(yaml && strstr(yaml, "lat_channels: 4"), "%s: imported checkpoint stores the resolved config", stage);
    free(yaml);
    Config cfg2;
    tiny_config(&cfg2, run2, NULL);
    rc = stage_export(&cfg2, stage, out2);
    CHECK(rc == 0 && files_equal(out, out2), "%s: export(import(export)) is byte-identical to the first export", stage);
    // Refuses to overwrite.
    ImportArgs ia = {&cfg, stage, out, run2};
    char msg[8192];
    int st = test_run_capture(do_import, &ia, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "already exists; nothing written"), "%s: import refuses to overwrite an existing checkpoint", stage);
    free(p2);
    free(m2);
    free(v2);
out:
    free(p);
    model_free(&m);
}

// Import refusals on the AE (the buffers and all problem classes) and DM (stage/metadata).
static void test_import_refusals(void) {
    char run[400], out[400], bad[400], run3[400];
    snprintf(run, sizeof run, "%s/run_ae", g_tmp); // made by test_stage("ae")
    snprintf(out, sizeof out, "%s/ae.safetensors", g_tmp);
    snprintf(bad, sizeof bad, "%s/ae_bad.safetensors", g_tmp);
    snprintf(run3, sizeof run3, "%s/run3", g_tmp);
    Config cfg;
    tiny_config(&cfg, run, NULL);
    TestModel m;
    model_build(&m, &cfg, "ae", 0, 0, 0);
    const ParamTable *t = m.t;
    float *p = LOLA_NEW(float, t->total);
    fill_random(t, p, 5);
    // row 0 missing, row 1 misshapen, an extra tensor, a wrong eps, an I64-like problem via dtype is
    // covered by the reader tests.
    StOut *o = LOLA_NEW(StOut, t->n + 4);
    int n = 0;
    int64_t wrong[4] = {t->rows[1].shape[0] + 1, 1, 1, 1};
    for (int r = 1; r < t->n; r++) {
        o[n] = (StOut){t->rows[r].name, t->rows[r].ndim, t->rows[r].shape, p + t->rows[r].offset};
        if (r == 1) o[n].ndim = 1, o[n].shape = wrong, o[n].data = p; // (shape[0] + 1,) values are irrelevant
        n++;
    }
    int64_t one[1] = {3};
    float junk[3] = {1, 2, 3}, eps_bad = 1e-6f;
    o[n++] = (StOut){"encoder.bogus.weight", 1, one, junk};
    char eps_name[PARAM_NAME_MAX];
    DcaeConfig dc;
    dcae_config_from(&cfg, cfg.dataset.n_fields, &dc);
    dcae_norm_eps_name(&dc, 0, eps_name, sizeof eps_name);
    o[n++] = (StOut){eps_name, 0, NULL, &eps_bad};
    char err[1024];
    int rc = st_write_f32(bad, o, n, NULL, 0, NULL, err, sizeof err);
    CHECK(rc == 0, "wrote a broken AE file (%s)", rc ? err : "ok");
    ImportArgs ia = {&cfg, "ae", bad, run3};
    char msg[16384];
    int st = test_run_capture(do_import, &ia, msg, sizeof msg);
    char want_missing[300], want_shape[300], want_eps[300];
    snprintf(want_missing, sizeof want_missing, "missing tensor %s", t->rows[0].name);
    snprintf(want_shape, sizeof want_shape, "tensor %s has shape (%lld,)", t->rows[1].name, (long long)wrong[0]);
    snprintf(want_eps, sizeof want_eps, "buffer %s[0] = 9.99999997e-07", eps_name);
    int all = st == 1 && strstr(msg, want_missing) && strstr(msg, want_shape) && strstr(msg, "unexpected tensor encoder.bogus.weight (3,)") &&
              strstr(msg, want_eps) && strstr(msg, "4 problem(s)") && strstr(msg, "nothing written");
    if (!all) printf("  got (exit %d):\n%s\n", st, msg);
    CHECK(all, "import lists every problem (missing, misshapen, unexpected, wrong eps buffer) and exits 1");
    char ck3[600];
    snprintf(ck3, sizeof ck3, "%s/ae/state.h5", run3);
    CHECK(!lola_exists(ck3), "nothing written after a refused import");

    // Another config: different latent width -> shape problems + metadata mismatch.
    Config c8;
    tiny_config(&c8, run, "ae.lat_channels=8");
    ImportArgs ib = {&c8, "ae", out, run3};
    st = test_run_capture(do_import, &ib, msg, sizeof msg);
    all = st == 1 && strstr(msg, "metadata ae.lat_channels = 4 but the config gives 8") &&
          strstr(msg, "tensor encoder.descent.2.3.weight has shape (4, 32, 3, 3), the config's model expects (8, 32, 3, 3)");
    if (!all) printf("  got (exit %d):\n%s\n", st, msg);
    CHECK(all, "import into a config with another ae.lat_channels lists the shape and metadata mismatches");
    // Same shapes, different heads: only the metadata can tell.
    Config ch;
    tiny_config(&ch, run, "ae.attention_heads={2: 4}");
    ImportArgs ic = {&ch, "ae", out, run3};
    st = test_run_capture(do_import, &ic, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "metadata ae.attention_heads = {2: 2} but the config gives {2: 4}") && !lola_exists(ck3),
          "import refuses a config whose attention heads differ (same shapes, metadata check)");
    // Wrong stage.
    ImportArgs id = {&cfg, "dm", out, run3};
    st = test_run_capture(do_import, &id, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "holds the 'ae' stage (metadata \"stage\"), not 'dm'"), "import refuses an AE file as the DM stage");
    // Unreadable file.
    char trunc[400];
    snprintf(trunc, sizeof trunc, "%s/bad_2.safetensors", g_tmp);
    ImportArgs ie = {&cfg, "ae", trunc, run3};
    st = test_run_capture(do_import, &ie, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "truncated file") && strstr(msg, trunc), "import reports a truncated file by name");
    CHECK(stage_import(&cfg, "xx", out, run3) == 2, "import refuses an unknown stage (status 2)");

    // F64 file without metadata (like one converted from a float64 .pth): converted on import.
    char f64[400];
    snprintf(f64, sizeof f64, "%s/ae_f64.safetensors", g_tmp);
    {
        size_t hcap = 1 << 20;
        char *h = LOLA_NEW(char, hcap);
        size_t L = (size_t)snprintf(h, hcap, "{");
        uint64_t off = 0;
        for (int r = 0; r < t->n; r++) {
            L += (size_t)snprintf(h + L, hcap - L, "%s\"%s\":{\"dtype\":\"F64\",\"shape\":[", r ? "," : "", t->rows[r].name);
            for (int d = 0; d < t->rows[r].ndim; d++) L += (size_t)snprintf(h + L, hcap - L, "%s%lld", d ? "," : "", (long long)t->rows[r].shape[d]);
            L += (size_t)snprintf(h + L, hcap - L, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                  (unsigned long long)(off + 8 * t->rows[r].numel));
            off += 8 * t->rows[r].numel;
        }
        snprintf(h + L, hcap - L, "}");
        double *dd = LOLA_NEW(double, t->total);
        for (int r = 0; r < t->n; r++)
            for (size_t e = 0; e < t->rows[r].numel; e++) dd[t->rows[r].offset + e] = (double)p[t->rows[r].offset + e];
        write_raw(f64, h, dd, t->total * 8, 0);
        free(dd);
        free(h);
    }
    char run4[400];
    snprintf(run4, sizeof run4, "%s/run4", g_tmp);
    ImportArgs ig = {&cfg, "ae", f64, run4};
    st = test_run_capture(do_import, &ig, msg, sizeof msg);
    char ck4[600];
    snprintf(ck4, sizeof ck4, "%s/ae/state.h5", run4);
    float *p4 = LOLA_NEW(float, t->total);
    int lrc = checkpoint_load(ck4, "ae", t, p4, NULL, NULL, NULL, NULL, err, sizeof err);
    char want_conv[64];
    snprintf(want_conv, sizeof want_conv, "converted %d tensor(s) from F64 to fp32", t->n);
    CHECK(st == 0 && strstr(msg, want_conv) && lrc == 0 && !memcmp(p4, p, t->total * 4),
          "an F64 file without buffers or metadata imports, says it converted, values exact");
    if (st != 0) printf("  got (exit %d):\n%s\n", st, msg);
    free(p4);
    free(o);
    free(p);
    model_free(&m);

    // DM: an NS export is refused with the stage named; a DM file imported as NS lists problems.
    char run_dm[400], dm_out[400];
    snprintf(run_dm, sizeof run_dm, "%s/run_dm", g_tmp);
    snprintf(dm_out, sizeof dm_out, "%s/ns.safetensors", g_tmp);
    Config cd;
    tiny_config(&cd, run_dm, NULL);
    ImportArgs ih = {&cd, "dm", dm_out, run3};
    st = test_run_capture(do_import, &ih, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "holds the 'ns' stage") && strstr(msg, "missing tensor backbone.time_embedding.1.weight"),
          "import of an NS file as DM names the stage and the missing time embedding");
}

static void test_export_refusals(void) {
    char run[400], out[400];
    snprintf(run, sizeof run, "%s/empty_run", g_tmp);
    snprintf(out, sizeof out, "%s/never.safetensors", g_tmp);
    Config cfg;
    tiny_config(&cfg, run, NULL);
    ImportArgs a = {&cfg, "ae", out, NULL};
    char msg[8192];
    int st = test_run_capture(do_export, &a, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "empty_run/ae/state.h5' does not exist") && !lola_exists(out), "export without a checkpoint: %.*s",
          (int)strcspn(msg, "\n"), msg);
    char run_ae[400];
    snprintf(run_ae, sizeof run_ae, "%s/run_ae", g_tmp);
    Config c16;
    tiny_config(&c16, run_ae, "ae.hid_channels=[8,16,64]");
    ImportArgs b = {&c16, "ae", out, NULL};
    st = test_run_capture(do_export, &b, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "the config expects") && !lola_exists(out), "export with a config that does not match the checkpoint: %.*s",
          (int)strcspn(msg, "\n"), msg);
    Config cdm;
    snprintf(run_ae, sizeof run_ae, "%s/run_dm", g_tmp);
    tiny_config(&cdm, run_ae, "denoiser.hid_blocks=3");
    ImportArgs c = {&cdm, "dm", out, NULL};
    st = test_run_capture(do_export, &c, msg, sizeof msg);
    CHECK(st == 1 && strstr(msg, "denoiser") && !lola_exists(out), "DM export with another hid_blocks is refused: %.*s", (int)strcspn(msg, "\n"),
          msg);
    CHECK(stage_export(&cfg, "vae", out) == 2, "export refuses an unknown stage (status 2)");
}

// ---- --emit DIR --------------------------------------------------------------------------------

static void put(StOut *o, int *n, const char *name, int ndim, const int64_t *shape, const float *data) {
    o[*n].name = name;
    o[*n].ndim = ndim;
    o[*n].shape = shape;
    o[*n].data = data;
    (*n)++;
}

static float *host_of(const float *dev, size_t n) {
    float *h = LOLA_NEW(float, n);
    nn_to_host(h, dev, n);
    return h;
}

static float *dev_of(const float *host, size_t n) {
    float *d = nn_alloc(n);
    nn_to_backend(d, host, n);
    return d;
}

static int emit(const char *dir) {
    snprintf(g_tmp, sizeof g_tmp, "%s", dir);
    lola_mkdirs(dir);
    char run[600], path[700], err[1024];
    snprintf(run, sizeof run, "%s/run", dir);
    Config cfg;
    tiny_config(&cfg, run, NULL);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    FILE *fy = fopen(path, "w");
    config_write_yaml(&cfg, fy);
    fclose(fy);
    const int B = 2, L = 3, h = 4, w = 4, C = cfg.ae.lat_channels;
    const char *stages[3] = {"ae", "dm", "ns"};
    for (int s = 0; s < 3; s++) {
        TestModel m;
        model_build(&m, &cfg, stages[s], L, h, w);
        float *p = LOLA_NEW(float, m.t->total);
        save_random_ckpt(&cfg, stages[s], m.t, p, 99 + (uint64_t)s);
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, stages[s]);
        int rc = stage_export(&cfg, stages[s], path);
        CHECK(rc == 0, "emit: exported %s (%zu parameters) to %s", stages[s], m.t->total, path);
        Rng r = rng_seed(7 + (uint64_t)s);
        StOut o[8];
        int n = 0;
        snprintf(path, sizeof path, "%s/forward_%s.safetensors", dir, stages[s]);
        if (s == 0) {
            const int Cp = cfg.dataset.n_fields, H = 16, W = 16;
            const size_t nx = (size_t)B * Cp * H * W;
            float *x = LOLA_NEW(float, nx);
            for (size_t i = 0; i < nx; i++) x[i] = (float)rng_normal(&r);
            Dcae ae;
            DcaeConfig dc;
            dcae_config_from(&cfg, Cp, &dc);
            dcae_create(&ae, &dc);
            nn_to_backend(ae.params, p, ae.table.total);
            float *xd = dev_of(x, nx);
            dcae_forward(&ae, xd, B, H, W, DCAE_EVAL, 0, 0);
            const int f = 1 << (dc.levels - 1);
            const size_t nz = (size_t)B * dc.lat_channels * (H / f) * (W / f);
            float *z = host_of(dcae_latent(&ae), nz), *y = host_of(dcae_output(&ae), nx);
            int64_t sx[4] = {B, Cp, H, W}, sz[4] = {B, dc.lat_channels, H / f, W / f};
            put(o, &n, "x", 4, sx, x);
            put(o, &n, "z", 4, sz, z);
            put(o, &n, "y", 4, sx, y);
            rc = st_write_f32(path, o, n, NULL, 0, NULL, err, sizeof err);
            CHECK(rc == 0, "emit: AE forward (B %d, %dx%d) written", B, H, W);
            nn_free(xd);
            dcae_destroy(&ae);
            free(x);
            free(z);
            free(y);
        } else {
            const EmuKind kind = s == 1 ? EMU_DM : EMU_NS;
            EmuConfig ec;
            int window[3] = {L, h, w};
            emu_config_from(&cfg, kind, C, 3, window, LABEL, &ec);
            Emulator e;
            emu_create(&e, &ec);
            emu_reserve(&e, B, 0);
            nn_to_backend(e.params, p, e.table.total);
            const size_t nw = (size_t)B * C * L * h * w;
            float *x = LOLA_NEW(float, nw), *mask = LOLA_NEW(float, nw), *y = LOLA_NEW(float, nw), *lab = LOLA_NEW(float, (size_t)B * LABEL);
            for (size_t i = 0; i < nw; i++) x[i] = (float)(2 * rng_normal(&r));
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++)
                    for (int l = 0; l < L; l++)
                        for (int q = 0; q < h * w; q++) {
                            size_t i = ((((size_t)b * C + c) * L + l) * h * w) + q;
                            mask[i] = (b == 0 ? l == 0 : l >= L - 2) ? 1.0f : 0.0f;
                            y[i] = x[i] * mask[i];
                        }
            for (int i = 0; i < B * LABEL; i++) lab[i] = (float)rng_normal(&r);
            float *xd = dev_of(x, nw), *md = dev_of(mask, nw), *yd = dev_of(y, nw), *ld = dev_of(lab, (size_t)B * LABEL);
            float *outd = nn_alloc(nw);
            int64_t sw[5] = {B, C, L, h, w}, sl[2] = {B, LABEL}, ss[1] = {B};
            float sig[2] = {0.4f, 3.0f};
            put(o, &n, "x", 5, sw, x);
            put(o, &n, "mask", 5, sw, mask);
            put(o, &n, "label", 2, sl, lab);
            float *res;
            if (kind == EMU_DM) {
                double sigma[2] = {sig[0], sig[1]};
                emu_dm_denoise(&e, outd, xd, md, yd, ld, sigma, B);
                res = host_of(outd, nw);
                put(o, &n, "y", 5, sw, y);
                put(o, &n, "sigma", 1, ss, sig);
                put(o, &n, "mean", 5, sw, res);
            } else {
                emu_ns_predict(&e, outd, xd, md, ld, B);
                res = host_of(outd, nw);
                put(o, &n, "out", 5, sw, res);
            }
            rc = st_write_f32(path, o, n, NULL, 0, NULL, err, sizeof err);
            CHECK(rc == 0, "emit: %s forward (B %d, window %dx%dx%d, C %d) written", stages[s], B, L, h, w, C);
            nn_free(xd);
            nn_free(md);
            nn_free(yd);
            nn_free(ld);
            nn_free(outd);
            free(x);
            free(mask);
            free(y);
            free(lab);
            free(res);
            emu_destroy(&e);
        }
        free(p);
        model_free(&m);
    }
    return test_summary();
}

int main(int argc, char **argv) {
    nn_init(-1);
    if (argc == 3 && !strcmp(argv[1], "--emit")) return emit(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--emit DIR]\n", argv[0]);
        return 2;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lola_test_st_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_roundtrip();
    test_conversions();
    test_bad_files();
    test_stage("ae");
    test_stage("dm");
    test_stage("ns");
    test_import_refusals();
    test_export_refusals();
    int rc = test_summary();
    if (rc == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    } else {
        printf("# files kept in %s\n", g_tmp);
    }
    return rc;
}
