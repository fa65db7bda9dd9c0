// params.h: the parameter table. One row per tensor (PyTorch state_dict name, shape); offsets
// into ONE contiguous buffer are derived from the table, so allocation, initialisation,
// checkpoints, export and printing all walk the same rows (llm.c's tensor-spec design).
// Gradients and optimizer state use buffers of the same size and layout.
#ifndef LOLA_PARAMS_H
#define LOLA_PARAMS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "rng.h"

#define PARAM_NAME_MAX 128
#define PARAM_MAX_DIMS 4

// How a tensor is initialised (lola-spec.md 2.1, 4.2).
typedef enum {
    INIT_TORCH_DEFAULT = 0, // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform a=sqrt5; same bound for bias)
    INIT_ZERO,
    INIT_ONE,
    INIT_XAVIER_UNIFORM,    // U(-sqrt(6/(fan_in+fan_out)), +)
    INIT_NORMAL,            // N(0, 1) * scale
    INIT_CUSTOM,            // filled by the model's own code after the generic pass
} ParamInit;

typedef struct {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t numel, offset; // elements; offset into the parameter buffer
    ParamInit init;
    int64_t fan_in, fan_out; // for the default inits (bias rows use their layer's fan_in)
    float scale;             // multiplies the drawn values (e.g. 0.01 for the last modulation weight)
} ParamSpec;

typedef struct {
    ParamSpec *rows;
    int n, cap;
    size_t total; // elements in all rows
} ParamTable;

// Appends a row; shape has ndim entries (1..4). Returns its index. Dies on a duplicate name.
int ptable_add(ParamTable *t, const char *name, int ndim, const int64_t *shape, ParamInit init,
               int64_t fan_in, int64_t fan_out, float scale);
// Index of the row called name, or -1.
int ptable_find(const ParamTable *t, const char *name);
void ptable_free(ParamTable *t);
// Fills host buffer params (t->total floats) row by row from rng, in table order, using each
// row's init rule. INIT_CUSTOM rows are left untouched.
void ptable_init(const ParamTable *t, float *params, Rng *rng);
// Prints "name shape numel" rows and the total.
void ptable_print(const ParamTable *t, FILE *out);
// "1,234,567" style formatting of n into buf (returns buf).
char *fmt_count(char *buf, size_t cap, uint64_t n);

#endif
