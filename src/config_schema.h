// config_schema.h: the schema tables behind config.h (private to config.c / config_schema.c /
// tests). One row per key: type, default (as YAML text, parsed by the same code as files),
// range or allowed values, help, and where the value lives in the section struct.
#ifndef LOLA_CONFIG_SCHEMA_H
#define LOLA_CONFIG_SCHEMA_H

#include <stddef.h>

#include "config.h"

typedef enum {
    CT_INT,        // int
    CT_FLOAT,      // double
    CT_BOOL,       // int 0/1; only true/false
    CT_STR,        // char[size]
    CT_ENUM,       // int index into names
    CT_INT_LIST,   // int[cap] + int count
    CT_FLOAT_LIST, // double[cap] + int count
    CT_STR_LIST,   // char[cap][elem] + int count
    CT_ENUM_LIST,  // int[cap] + int count
    CT_INT_MAP,    // int[cap] indexed by the integer key (0..cap-1); 0 = absent
    CT_ENUM_MAP,   // int[cap] indexed by the integer key; names[0] (= "none") = absent
} CfgType;

#define CF_LO_OPEN 1u // range excludes lo
#define CF_HI_OPEN 2u // range excludes hi

typedef struct {
    const char *key;          // dotted key relative to the section, e.g. "loss.losses"
    CfgType type;
    const char *def;          // default as YAML text; NULL = required (must be set, non-empty)
    const char *const *names; // allowed values (enum types), NULL-terminated
    double lo, hi;            // range of numbers, of list elements, of map values
    unsigned flags;           // CF_LO_OPEN / CF_HI_OPEN
    const char *help;
    size_t off;               // offset of the value inside the section struct
    size_t size;              // sizeof the member (bytes)
    size_t elem;              // sizeof one element (strings: buffer length incl. NUL)
    size_t count_off;         // offset of the int count (list types)
} CfgRow;

typedef struct {
    const char *name;     // top-level key, e.g. "ae_optim"
    const char *help;
    const CfgRow *rows;
    int nrows;
    size_t off;           // offset of the section struct inside Config
    const char *defaults; // YAML mapping applied over the row defaults for this section, or NULL
} CfgSection;

extern const CfgSection cfg_sections[];
extern const int cfg_nsections;

#endif
