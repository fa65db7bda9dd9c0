// safetensors.h: reader and writer of the safetensors weights format (the format PyTorch users
// exchange state_dicts in; DESIGN.md 4, "safetensors export/import").
//
// File layout (all little-endian):
//   uint64 N                       length of the header in bytes
//   N bytes of UTF-8 JSON          {"__metadata__": {"key": "value", ...},
//                                   "<tensor name>": {"dtype": "F32", "shape": [d0, ...],
//                                                     "data_offsets": [begin, end]}, ...}
//                                  padded with spaces to a multiple of 8 bytes
//   data                           the tensors' raw bytes, C order; offsets are relative to the
//                                  start of the data section, [begin, end) byte ranges
// The byte ranges of all tensors tile the data section exactly: sorted by begin they start at 0,
// each starts where the previous ended, and the last ends at the end of the file (no overlap, no
// gap, no trailing bytes). end - begin = prod(shape) * sizeof(dtype); a 0-d tensor has shape []
// and one element. "__metadata__" (optional) maps strings to strings.
//
// The reader is strict: the whole header is parsed by our own JSON parser (strings with every
// escape incl. \uXXXX surrogate pairs, UTF-8 validated, numbers as int64, nesting depth <= 64),
// and every rule above is checked before any data is read. Every failure returns -1 with a
// message naming the file and the problem (never ends the process).
// The writer writes fp32 tensors in the order given, contiguous, with a compact JSON header
// ("__metadata__" first) padded with spaces to a multiple of 8 like the reference implementation,
// to "<path>.tmp", fsyncs and renames it over <path>.
#ifndef LOLA_SAFETENSORS_H
#define LOLA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ULL // header bytes; the reference implementation's limit
#define ST_MAX_DEPTH 64            // JSON nesting

// Every dtype of the format (so that sizes of foreign files can be checked); only the float ones
// can be read as fp32 (st_read_f32).
typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32,
    ST_F64, ST_I64, ST_U64, ST_N_DTYPES
} StDtype;

const char *st_dtype_name(StDtype d); // "F32", ...
size_t st_dtype_size(StDtype d);      // bytes per element
int st_dtype_is_float(StDtype d);     // 1 for F16, BF16, F32, F64 (readable by st_read_f32)

typedef struct {
    char *name;                   // UTF-8, no NUL inside
    StDtype dtype;
    int ndim;                     // 0..ST_MAX_DIMS
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;                // prod(shape) (1 for ndim 0)
    uint64_t begin, end;          // byte range in the data section
} StTensor;

typedef struct {
    char *key, *value;
} StMeta;

typedef struct {
    char path[1024];
    FILE *fp;
    uint64_t file_size, header_len, data_start; // data_start = 8 + header_len
    StTensor *tensors;                          // in header order
    int n;
    StMeta *meta;                               // "__metadata__" entries in header order
    int n_meta;
} StFile;

// Opens and validates path (see the top of this file). 0 on success; -1 with a message naming
// the file and the problem in err (cap bytes), *f then needs no st_close.
int st_open(StFile *f, const char *path, char *err, size_t cap);
void st_close(StFile *f);
// Index of the tensor called name, or -1.
int st_find(const StFile *f, const char *name);
// Value of metadata key, or NULL.
const char *st_meta(const StFile *f, const char *key);
// Reads tensor i into out (numel floats), converting F16 / BF16 / F64 to fp32 (F64 values beyond
// the fp32 range become +-inf). 0, or -1 with err (non-float dtype, I/O error, file changed).
int st_read_f32(StFile *f, int i, float *out, char *err, size_t cap);
// Decodes one IEEE half / bfloat16 value (exact; subnormals, inf and NaN included).
float st_half_to_float(uint16_t h);
float st_bf16_to_float(uint16_t h);

// One tensor to write: ndim 0..ST_MAX_DIMS, data = prod(shape) host floats.
typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} StOut;

// Writes n fp32 tensors (in this order) and n_meta metadata entries (n_meta = 0: no
// "__metadata__") atomically to path. Refuses (returns -1 with err, nothing left behind) empty,
// duplicate or non-UTF-8 names, a tensor named "__metadata__", duplicate metadata keys, and I/O
// failures. 0 on success; *bytes_out (may be NULL) = the file size.
int st_write_f32(const char *path, const StOut *t, int n, const StMeta *meta, int n_meta, uint64_t *bytes_out,
                 char *err, size_t cap);

// 1 when s[0..len) is valid UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
int st_utf8_valid(const char *s, size_t len);

#endif
