// buildinfo.c: see buildinfo.h. The defines come from the Makefile's detection:
// LOLA_MPI, LOLA_HDF5_PARALLEL, LOLA_BLAS_OPENBLAS / LOLA_BLAS_NAME, LOLA_HAVE_PNG,
// LOLA_BACKEND_CUDA (+ LOLA_CUDA_ARCH, LOLA_HAVE_CUDNN, LOLA_HAVE_NCCL).
#include "buildinfo.h"

#include <fftw3.h>
#include <hdf5.h>
#include <string.h>
#include <yaml.h>

#ifdef LOLA_MPI
#include <mpi.h>
#endif
#ifdef LOLA_BLAS_OPENBLAS
#include <cblas.h>
#endif
#ifdef LOLA_HAVE_PNG
#include <png.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LOLA_BACKEND_CUDA
#include <cuda_runtime_api.h>
#ifdef LOLA_HAVE_CUDNN
#include <cudnn.h>
#endif
#ifdef LOLA_HAVE_NCCL
#include <nccl.h>
#endif
#endif

#ifndef LOLA_BLAS_NAME
#define LOLA_BLAS_NAME "unknown"
#endif

#define ROW "  %-9s "

const char *buildinfo_backend(void) {
#ifdef LOLA_BACKEND_CUDA
    return "cuda";
#elif defined(LOLA_BACKEND_FENCED)
    return "fenced";
#else
    return "cpu";
#endif
}

static void print_mpi(FILE *fp) {
#ifdef LOLA_MPI
    char lib[MPI_MAX_LIBRARY_VERSION_STRING + 1];
    int len = 0, v = 0, sv = 0;
    MPI_Get_library_version(lib, &len);
    lib[len < (int)sizeof lib ? len : (int)sizeof lib - 1] = '\0';
    lib[strcspn(lib, "\n")] = '\0'; // first line only (MPICH prints a long multi-line banner)
    MPI_Get_version(&v, &sv);
    fprintf(fp, ROW "%s (MPI %d.%d)\n", "MPI", lib, v, sv);
#else
    fprintf(fp, ROW "not built (serial binary: single process only)\n", "MPI");
#endif
}

static void print_hdf5(FILE *fp) {
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
#if defined(LOLA_HDF5_PARALLEL)
    const char *mode = "parallel (MPI-IO)";
#elif defined(H5_HAVE_PARALLEL)
    const char *mode = "parallel library, used serially (built without MPI)";
#else
    const char *mode = "serial";
#endif
    fprintf(fp, ROW "%u.%u.%u %s (headers %d.%d.%d)\n", "HDF5", maj, min, rel, mode, H5_VERS_MAJOR,
            H5_VERS_MINOR, H5_VERS_RELEASE);
}

static void print_blas(FILE *fp) {
#ifdef LOLA_BLAS_OPENBLAS
    fprintf(fp, ROW "%s (%d threads)\n", "BLAS", openblas_get_config(), openblas_get_num_threads());
#else
    fprintf(fp, ROW "%s\n", "BLAS", LOLA_BLAS_NAME);
#endif
}

static void print_png(FILE *fp) {
#ifdef LOLA_HAVE_PNG
    unsigned v = (unsigned)png_access_version_number(); // e.g. 10639 = 1.6.39
    fprintf(fp, ROW "%u.%u.%u\n", "libpng", v / 10000, (v / 100) % 100, v % 100);
#else
    fprintf(fp, ROW "not built (no PNG figures)\n", "libpng");
#endif
}

static void print_cuda(FILE *fp) {
#ifdef LOLA_BACKEND_CUDA
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    fprintf(fp, ROW "runtime %d.%d, driver %s", "CUDA", rt / 1000, (rt % 1000) / 10, drv ? "" : "none");
    if (drv) fprintf(fp, "%d.%d", drv / 1000, (drv % 1000) / 10);
    fprintf(fp, ", arch %s\n", LOLA_CUDA_ARCH);
#ifdef LOLA_HAVE_CUDNN
    size_t c = cudnnGetVersion(); // cuDNN >= 9: M*10000 + m*100 + p; cuDNN 8: M*1000 + m*100 + p
    size_t M = c >= 90000 ? c / 10000 : c / 1000, m = c >= 90000 ? (c % 10000) / 100 : (c % 1000) / 100;
    fprintf(fp, ROW "%zu.%zu.%zu (headers %d.%d.%d)\n", "cuDNN", M, m, c % 100, CUDNN_MAJOR, CUDNN_MINOR,
            CUDNN_PATCHLEVEL);
#else
    fprintf(fp, ROW "not built (not found at build time)\n", "cuDNN");
#endif
#ifdef LOLA_HAVE_NCCL
    int n = 0; // NCCL >= 2.9: M*10000 + m*100 + p; older: M*1000 + m*100 + p
    ncclGetVersion(&n);
    int nM = n >= 10000 ? n / 10000 : n / 1000, nm = n >= 10000 ? (n % 10000) / 100 : (n % 1000) / 100;
    fprintf(fp, ROW "%d.%d.%d\n", "NCCL", nM, nm, n % 100);
#else
    fprintf(fp, ROW "not built (not found at build time: one GPU per job)\n", "NCCL");
#endif
#else
    fprintf(fp, ROW "not built (CPU backend)\n", "CUDA");
    fprintf(fp, ROW "not built\n", "cuDNN");
    fprintf(fp, ROW "not built\n", "NCCL");
#endif
}

void buildinfo_print(FILE *fp) {
#ifdef LOLA_BACKEND_CUDA
    fprintf(fp, ROW "cuda (%s)\n", "backend", LOLA_CUDA_ARCH);
#elif defined(LOLA_BACKEND_FENCED)
    // make fenced (tests/fenced/): the CPU ops behind a memory fence, CUDA-build host code
    fprintf(fp, ROW "fenced (CPU ops; backend memory PROT_NONE outside ops, host code of the CUDA build)\n",
            "backend");
#else
    fprintf(fp, ROW "cpu\n", "backend");
#endif
    print_mpi(fp);
    print_hdf5(fp);
    print_blas(fp);
    fprintf(fp, ROW "%s\n", "libyaml", yaml_get_version_string());
    fprintf(fp, ROW "%s\n", "FFTW", fftw_version);
    print_png(fp);
    print_cuda(fp);
#ifdef _OPENMP
    fprintf(fp, ROW "%d threads (OpenMP %d)\n", "OpenMP", omp_get_max_threads(), (int)_OPENMP);
#else
    fprintf(fp, ROW "not built (single-threaded CPU ops)\n", "OpenMP");
#endif
#if defined(__clang__)
    fprintf(fp, ROW "clang %s\n", "compiler", __VERSION__);
#elif defined(__GNUC__)
    fprintf(fp, ROW "gcc %s\n", "compiler", __VERSION__);
#endif
}
