// h5attr.c: see h5attr.h.
#include "h5attr.h"

#include <stdlib.h>
#include <string.h>

static int read_scalar(hid_t obj, const char *name, hid_t mem_type, void *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = H5Aread(a, mem_type, v) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

int h5attr_read_i64(hid_t obj, const char *name, int64_t *v) { return read_scalar(obj, name, H5T_NATIVE_INT64, v); }
int h5attr_read_f64(hid_t obj, const char *name, double *v) { return read_scalar(obj, name, H5T_NATIVE_DOUBLE, v); }

char *h5attr_read_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        char *s = NULL;
        if (H5Aread(a, t, &s) >= 0 && s) {
            size_t n = strlen(s) + 1;
            out = (char *)malloc(n);
            if (out) memcpy(out, s, n);
            H5free_memory(s);
        }
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

hid_t h5_open_readonly(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (H5Fis_hdf5(path) <= 0) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#endif
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}
