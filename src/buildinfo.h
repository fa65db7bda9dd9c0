// buildinfo.h: what this binary was built with, for `lola info` and run logs.
#ifndef LOLA_BUILDINFO_H
#define LOLA_BUILDINFO_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// Prints one line per component: backend, MPI (MPI_Get_library_version), HDF5 version and
// parallel/serial (H5get_libversion), BLAS (openblas_get_config), libyaml, FFTW, libpng, CUDA runtime
// and driver, cuDNN, NCCL (versions reported by the libraries at run time; "not built" when the
// binary was built without them), OpenMP threads and the C compiler. Safe before or after
// dist_init (MPI_Get_library_version may be called at any time).
void buildinfo_print(FILE *fp);

// "cpu" or "cuda" (the backend compiled in).
const char *buildinfo_backend(void);

#ifdef __cplusplus
}
#endif
#endif
