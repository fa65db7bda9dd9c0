// h5attr.h: reading typed HDF5 attributes of our own files (checkpoints, latent caches) and the
// read-only open they share. Writers are wellwrite.h's wellw_attr_* (h5py-compatible types).
#ifndef LOLA_H5ATTR_H
#define LOLA_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

// Scalar integer / float attribute of obj into *v: 0, or -1 when absent or unreadable.
int h5attr_read_i64(hid_t obj, const char *name, int64_t *v);
int h5attr_read_f64(hid_t obj, const char *name, double *v);
// Variable-length string attribute as a malloc'd copy (caller frees), NULL when absent/not a string.
char *h5attr_read_str(hid_t obj, const char *name);
// Opens an existing HDF5 file read-only (default driver, file locking off for reads where the
// library allows it) with HDF5's error printing silenced. Returns -1 when path is not a readable
// HDF5 file (missing, truncated, foreign).
hid_t h5_open_readonly(const char *path);

#endif
