# lola-c build.
#
#   make               build build/lola, the tools and the library (prints the dependency table)
#   make test          build everything, then run tests/run.sh (installs missing deps first)
#   make demo          the small end-to-end run (see README)
#   make config        print the found/missing table, the backend and the final flags
#   make deps          install the dependencies (root + apt-get) or print what to install
#   make cuda-check    compile cuda/*.cu with nvcc and link the CUDA program (no GPU needed)
#   make clean         remove $(BUILD)
#   make help          targets and variables
#   make test-gpu      GPU machine: CUDA ops against the CPU backend, op timings (cuda/cuda.mk)
#   make fenced        build/fenced/lola: CPU ops, backend memory fenced off from host code (tests/fenced/)
#   make gpu-tests     build the GPU test programs (no GPU needed); gpu-selfcheck: their harness on the CPU
#   make gpu-bundle    build/gpu-bundle/: the prebuilt programs + libraries for the GPU machine (cuda/README.md)
#
# Dependencies are found the way HPC sites provide them: compiler wrappers (mpicc --showme,
# h5pcc/h5cc) and pkg-config, then a compile+link probe. Nothing here knows a distribution's
# paths. Every probe runs once per make invocation (:= variables). Any XXX_CFLAGS/XXX_LIBS given
# on the command line or in the environment (MPI, HDF5, YAML, BLAS, FFTW, PNG) replaces detection.
#
# Layout: src/*.c (but main.c) + mpi/*.c form the core; src/cpu/*.c is the CPU backend, cuda/*.cu
# (and cuda/*.c) the CUDA backend. build/liblola.a = core + the chosen backend.
# tools/NAME.c -> build/NAME; tests/test_NAME.c -> build/tests/test_NAME.

SHELL := /bin/bash
.DEFAULT_GOAL := all
BUILD ?= build

comma := ,
empty :=
space := $(empty) $(empty)

# Goals that need no dependency probing.
NOPROBE_GOALS := clean deps help
ifneq ($(MAKECMDGOALS),)
ifeq ($(filter-out $(NOPROBE_GOALS),$(MAKECMDGOALS)),)
LOLA_NO_PROBE := 1
endif
endif

# Quiet compile lines ("  CC  src/x.c"); V=1 shows full commands (the flags are in `make config`).
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

# ---------------------------------------------------------------------------------------------
# Compiler and base flags
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
PKG_CONFIG ?= pkg-config
OPT ?= -O3
# No -march=native: the same binary must also run on the GPU machine.
CFLAGS ?= $(OPT) -g -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE
LDFLAGS ?=

# $(call try_link,PROBE_VAR,FLAGS): "1" when the C program in variable PROBE_VAR (a printf format:
# \n, \043 for '#', no % or ') compiles and links with FLAGS.
try_link = $(shell printf '$($(1))' | $(CC) -x c - -x none -o /dev/null $(2) >/dev/null 2>&1 && echo 1)
# $(call try_cc,PROBE_VAR,FLAGS): "1" when it compiles (no link).
try_cc = $(shell printf '$($(1))' | $(CC) -x c - -c -o /dev/null $(2) >/dev/null 2>&1 && echo 1)
# $(call cpp_value,HEADER,TOKENS,FLAGS): TOKENS after #include <HEADER>, macro-expanded, tidied
# ("4 . 1 . 4" -> "4.1.4", quotes dropped). Used for the versions in the table only.
cpp_value = $(shell printf '\043include <$(1)>\nLOLA_V $(2)\n' | $(CC) -E -P -x c - $(3) 2>/dev/null | sed -n 's/^LOLA_V //p' | tail -1 | sed 's/ *\. */./g; s/"//g; s/^ *//; s/ *$$//')
# $(call pc_ok,PKG,PROBE_VAR,EXTRA): "1" when pkg-config knows PKG and its flags link the probe.
pc_ok = $(if $(shell $(PKG_CONFIG) --exists $(1) 2>/dev/null && echo 1),$(call try_link,$(2),$(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null) $(3) $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)))
# $(call first_pc,PKGS,PROBE_VAR,EXTRA): the first of PKGS for which pc_ok holds (stops there).
first_pc = $(if $(1),$(if $(call pc_ok,$(firstword $(1)),$(2),$(3)),$(firstword $(1)),$(call first_pc,$(wordlist 2,$(words $(1)),$(1)),$(2),$(3))))
# Was a variable given by the user (command line or environment)?
user_set = $(filter command line environment environment override,$(origin $(1)))
# Words of $(1) without repeats, first occurrence kept (for -I and -rpath lists).
uniq = $(if $(1),$(firstword $(1)) $(call uniq,$(filter-out $(firstword $(1)),$(1))))
# Single-quote a string for the shell.
shq = '$(subst ','"'"',$(1))'

PROBE_CC := int main(void){return 0;}\n
PROBE_MPI := \043include <mpi.h>\nint main(int c, char **v){MPI_Init(&c, &v); MPI_Finalize(); return 0;}\n
PROBE_HDF5 := \043include <hdf5.h>\nint main(void){unsigned a, b, c; return (int)H5get_libversion(&a, &b, &c);}\n
PROBE_HDF5_PAR := \043include <hdf5.h>\n\043ifndef H5_HAVE_PARALLEL\n\043error serial HDF5\n\043endif\nint main(void){return 0;}\n
PROBE_YAML := \043include <yaml.h>\nint main(void){return yaml_get_version_string() == 0;}\n
PROBE_BLAS := \043include <cblas.h>\nint main(void){float a = 1, b = 1, c = 0; cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1); return 0;}\n
PROBE_OPENBLAS := \043include <cblas.h>\nint main(void){float a = 1, b = 1, c = 0; cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1); return openblas_get_config() == 0;}\n
PROBE_FFTW := \043include <fftw3.h>\nint main(void){return fftw_version[0] == 0;}\n
PROBE_PNG := \043include <png.h>\nint main(void){return png_access_version_number() == 0;}\n
PROBE_OMP := \043include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n
PROBE_CUDNN := \043include <cudnn.h>\nint main(void){return cudnnGetVersion() == 0;}\n
PROBE_NCCL := \043include <nccl.h>\nint main(void){int v = 0; ncclGetVersion(&v); return v == 0;}\n

ifndef LOLA_NO_PROBE
CC_OK := $(call try_link,PROBE_CC,)

# ---------------------------------------------------------------------------------------------
# MPI (optional): Open MPI `mpicc --showme:compile/link`, else MPICH-style `mpicc -show`.
# MPI=0 builds the serial path (no LOLA_MPI) even when MPI is installed; MPI is then still linked
# if the only HDF5 found is a parallel one (its headers and library need it).
MPICC ?= mpicc
MPI ?= auto
ifneq ($(call user_set,MPI_LIBS),)
MPI_FROM := MPI_CFLAGS/MPI_LIBS
else
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
MPI_FROM := $(MPICC) --showme
ifeq ($(strip $(MPI_LIBS)),)
MPI_SHOW := $(wordlist 2,999,$(shell $(MPICC) -show 2>/dev/null))
MPI_CFLAGS := $(filter -I% -D% -pthread,$(MPI_SHOW))
MPI_LIBS := $(filter-out -I% -D% -c,$(MPI_SHOW))
MPI_FROM := $(MPICC) -show
endif
endif
MPI_OK := $(call try_link,PROBE_MPI,$(MPI_CFLAGS) $(MPI_LIBS))
ifeq ($(MPI_OK),)
MPI_CFLAGS :=
MPI_LIBS :=
endif
USE_MPI := $(if $(filter 0,$(MPI)),,$(MPI_OK))

# ---------------------------------------------------------------------------------------------
# HDF5 (required): user flags, else pkg-config (parallel flavours first when MPI works), else the
# h5pcc/h5cc wrapper's `-shlib -show`. Parallel vs serial is read from the chosen headers
# (H5_HAVE_PARALLEL); the wrapper's -showconfig is reported beside it.
H5PCC ?= h5pcc
H5CC ?= h5cc
H5_WRAPPERS := $(foreach w,$(if $(MPI_OK),$(H5PCC)) $(H5CC),$(if $(shell command -v $(w) 2>/dev/null),$(w)))
H5_WRAPPER := $(firstword $(H5_WRAPPERS))
H5_SHOWCONFIG_PAR := $(if $(H5_WRAPPER),$(shell $(H5_WRAPPER) -showconfig 2>/dev/null | sed -n 's/^ *Parallel HDF5: *//p' | head -1))
ifneq ($(call user_set,HDF5_LIBS),)
HDF5_FROM := HDF5_CFLAGS/HDF5_LIBS
HDF5_OK := $(call try_link,PROBE_HDF5,$(HDF5_CFLAGS) $(MPI_CFLAGS) $(HDF5_LIBS) $(MPI_LIBS))
else
HDF5_PAR_PKGS := $(if $(MPI_OK),hdf5-openmpi hdf5-mpich hdf5-mpi)
HDF5_PKGS := $(if $(USE_MPI),$(HDF5_PAR_PKGS) hdf5 hdf5-serial,hdf5-serial hdf5 $(HDF5_PAR_PKGS))
HDF5_PC := $(call first_pc,$(HDF5_PKGS),PROBE_HDF5,$(MPI_CFLAGS) $(MPI_LIBS))
ifneq ($(HDF5_PC),)
HDF5_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(HDF5_PC))
HDF5_LIBS := $(shell $(PKG_CONFIG) --libs $(HDF5_PC))
HDF5_FROM := pkg-config $(HDF5_PC)
HDF5_OK := 1
else ifneq ($(H5_WRAPPER),)
H5_SHOW := $(wordlist 2,999,$(shell $(H5_WRAPPER) -shlib -show 2>/dev/null))
HDF5_CFLAGS := $(filter -I% -D%,$(H5_SHOW))
HDF5_LIBS := $(filter -L% -l% -Wl% -pthread %.so %.a,$(H5_SHOW))
HDF5_FROM := $(H5_WRAPPER) -shlib -show
HDF5_OK := $(call try_link,PROBE_HDF5,$(HDF5_CFLAGS) $(MPI_CFLAGS) $(HDF5_LIBS) $(MPI_LIBS))
else
HDF5_FROM := not found (pkg-config $(HDF5_PKGS); $(H5PCC)/$(H5CC) not on PATH)
endif
endif
# HDF5_IS_PAR: the headers are a parallel build; HDF5_PARALLEL: usable as such (MPI in use too).
HDF5_IS_PAR := $(if $(HDF5_OK),$(call try_cc,PROBE_HDF5_PAR,$(HDF5_CFLAGS) $(MPI_CFLAGS)))
HDF5_PARALLEL := $(and $(HDF5_IS_PAR),$(USE_MPI))
ifeq ($(HDF5_OK),)
HDF5_CFLAGS :=
HDF5_LIBS :=
endif

# ---------------------------------------------------------------------------------------------
# Plain libraries (libyaml, FFTW, libpng): $(call find_lib,VAR,pkg-config name,-lname,PROBE_VAR).
# Order: VAR_CFLAGS/VAR_LIBS given by the user; VAR_HOME (a prefix with include/ and lib*/, e.g.
# a module's root or an unpacked Debian package); pkg-config; a plain -lname link probe.
# Sets VAR_OK, VAR_CFLAGS, VAR_LIBS, VAR_FROM.
define find_lib
ifneq ($$(call user_set,$(1)_LIBS),)
$(1)_FROM := $(1)_CFLAGS/$(1)_LIBS
$(1)_OK := $$(call try_link,$(4),$$($(1)_CFLAGS) $$($(1)_LIBS))
else ifneq ($$($(1)_HOME),)
$(1)_LIBDIR := $$(patsubst %/,%,$$(dir $$(firstword $$(wildcard $$(foreach d,lib lib64 lib/*,$$($(1)_HOME)/$$(d)/lib$(patsubst -l%,%,$(3)).so* $$($(1)_HOME)/$$(d)/lib$(patsubst -l%,%,$(3)).a)))))
$(1)_CFLAGS := -I$$($(1)_HOME)/include
$(1)_LIBS := $$(if $$($(1)_LIBDIR),-L$$($(1)_LIBDIR)) $(3)
$(1)_FROM := $(1)_HOME=$$($(1)_HOME)
$(1)_OK := $$(if $$($(1)_LIBDIR),$$(call try_link,$(4),$$($(1)_CFLAGS) $$($(1)_LIBS)))
else ifneq ($$(call pc_ok,$(2),$(4),),)
$(1)_CFLAGS := $$(shell $$(PKG_CONFIG) --cflags $(2))
$(1)_LIBS := $$(shell $$(PKG_CONFIG) --libs $(2))
$(1)_FROM := pkg-config $(2)
$(1)_OK := 1
else
$(1)_CFLAGS :=
$(1)_LIBS := $(3)
$(1)_FROM := probe $(3)
$(1)_OK := $$(call try_link,$(4),$$($(1)_LIBS))
endif
ifeq ($$($(1)_OK),)
$(1)_CFLAGS :=
$(1)_LIBS :=
$(1)_FROM := not found ($$(if $$($(1)_HOME),no lib$(patsubst -l%,%,$(3)) under $(1)_HOME=$$($(1)_HOME),pkg-config $(2); $(3)))
endif
endef

# libyaml (required: configuration files).
$(eval $(call find_lib,YAML,yaml-0.1,-lyaml,PROBE_YAML))
# FFTW 3 (required: spectral metrics in evaluation, src/metrics.c).
$(eval $(call find_lib,FFTW,fftw3,-lfftw3,PROBE_FFTW))
# libpng (optional: PNG figures; -DLOLA_HAVE_PNG when found).
$(eval $(call find_lib,PNG,libpng,-lpng,PROBE_PNG))

# ---------------------------------------------------------------------------------------------
# BLAS (required; OpenBLAS expected): user flags, pkg-config openblas, else a -lopenblas probe.
# An OpenBLAS probe (sgemm + openblas_get_config) first; plain CBLAS sgemm for user-given BLAS.
ifneq ($(call user_set,BLAS_LIBS),)
BLAS_FROM := BLAS_CFLAGS/BLAS_LIBS
else ifneq ($(call pc_ok,openblas,PROBE_OPENBLAS,),)
BLAS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas)
BLAS_LIBS := $(shell $(PKG_CONFIG) --libs openblas)
BLAS_FROM := pkg-config openblas
BLAS_IS_OPENBLAS := 1
else
BLAS_CFLAGS :=
BLAS_LIBS := -lopenblas
BLAS_FROM := probe -lopenblas
endif
ifeq ($(BLAS_IS_OPENBLAS),)
BLAS_IS_OPENBLAS := $(call try_link,PROBE_OPENBLAS,$(BLAS_CFLAGS) $(BLAS_LIBS))
endif
BLAS_OK := $(or $(BLAS_IS_OPENBLAS),$(call try_link,PROBE_BLAS,$(BLAS_CFLAGS) $(BLAS_LIBS)))
ifeq ($(BLAS_OK),)
BLAS_CFLAGS :=
BLAS_LIBS :=
BLAS_FROM := not found ($(BLAS_FROM))
endif

# ---------------------------------------------------------------------------------------------
# OpenMP (optional but expected): probe -fopenmp.
OMP_OK := $(call try_link,PROBE_OMP,-fopenmp)
OMP_FLAGS := $(if $(OMP_OK),-fopenmp)

# ---------------------------------------------------------------------------------------------
# CUDA: nvcc from CUDA_HOME (or NVCC), else PATH. GPU = `nvidia-smi -L` works. cuDNN / NCCL by a
# compile+link probe (CUDNN_HOME / NCCL_HOME honoured, else CUDA_HOME and the compiler's paths).
ifneq ($(NVCC),)
NVCC := $(shell command -v $(NVCC) 2>/dev/null)
else ifneq ($(CUDA_HOME),)
NVCC := $(wildcard $(CUDA_HOME)/bin/nvcc)
NVCC_NOTE := $(if $(NVCC),,CUDA_HOME=$(CUDA_HOME) has no bin/nvcc;)
ifeq ($(NVCC),)
NVCC := $(shell command -v nvcc 2>/dev/null)
endif
else
NVCC := $(shell command -v nvcc 2>/dev/null)
endif
ifneq ($(NVCC),)
# The toolkit root: CUDA_HOME when nvcc came from there; else what nvcc itself reports (TOP=, which
# sees through wrapper scripts such as /usr/local/bin/nvcc), else nvcc's parent directory.
ifneq ($(and $(CUDA_HOME),$(filter $(NVCC),$(wildcard $(CUDA_HOME)/bin/nvcc))),)
else
CUDA_HOME := $(or $(realpath $(shell $(NVCC) --dryrun -E -x cu /dev/null 2>&1 | sed -n 's/^\#\$$ TOP=//p' | head -1)),$(patsubst %/bin/nvcc,%,$(NVCC)))
endif
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib $(CUDA_HOME)/targets/x86_64-linux/lib))
endif
# The GPU query is skipped when both BACKEND and CUDA_ARCH are given.
ifneq ($(NVCC),)
ifneq ($(and $(BACKEND),$(CUDA_ARCH)),)
GPU_INFO := (not queried)
else
# One query gives capability and name ("9.0 NVIDIA H200"); a driver without the compute_cap field
# falls back to `nvidia-smi -L` (a GPU, but the arch must then be given or defaults to sm_90a).
GPU_INFO := $(shell nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader 2>/dev/null | head -1 | tr -d ',')
GPU_CAP := $(firstword $(filter 1% 2% 3% 4% 5% 6% 7% 8% 9%,$(firstword $(GPU_INFO))))
GPU_OK := $(if $(GPU_CAP),1,$(shell nvidia-smi -L >/dev/null 2>&1 && echo 1))
GPU_INFO := $(if $(GPU_CAP),$(GPU_INFO),$(if $(GPU_OK),$(shell nvidia-smi -L 2>/dev/null | head -1)))
endif
endif
# CUDA arch: override with CUDA_ARCH=sm_90 etc. From the GPU's compute capability (9.0 -> sm_90a,
# the Hopper arch-specific target the H200 kernels use), sm_90a when no GPU is visible.
ifeq ($(CUDA_ARCH),)
ifneq ($(GPU_CAP),)
CUDA_ARCH := sm_$(subst .,,$(GPU_CAP))$(if $(filter 9.0,$(GPU_CAP)),a)
else
CUDA_ARCH := sm_90a
endif
endif
ifneq ($(NVCC),)
CUDA_INC := -I$(CUDA_HOME)/include
CUDA_LDIR := $(if $(CUDA_LIBDIR),-L$(CUDA_LIBDIR))
CUDNN_CFLAGS := $(if $(CUDNN_HOME),-I$(CUDNN_HOME)/include)
CUDNN_LIBS := $(if $(CUDNN_HOME),$(foreach d,$(wildcard $(CUDNN_HOME)/lib64 $(CUDNN_HOME)/lib),-L$(d))) -lcudnn
CUDNN_OK := $(call try_link,PROBE_CUDNN,$(CUDNN_CFLAGS) $(CUDA_INC) $(CUDNN_LIBS) $(CUDA_LDIR))
NCCL_CFLAGS := $(if $(NCCL_HOME),-I$(NCCL_HOME)/include)
NCCL_LIBS := $(if $(NCCL_HOME),$(foreach d,$(wildcard $(NCCL_HOME)/lib64 $(NCCL_HOME)/lib),-L$(d))) -lnccl
NCCL_OK := $(call try_link,PROBE_NCCL,$(NCCL_CFLAGS) $(CUDA_INC) $(NCCL_LIBS) $(CUDA_LDIR))
ifeq ($(CUDNN_OK),)
CUDNN_CFLAGS :=
CUDNN_LIBS :=
endif
ifeq ($(NCCL_OK),)
NCCL_CFLAGS :=
NCCL_LIBS :=
endif
endif

# ---------------------------------------------------------------------------------------------
# Backend: cuda only when nvcc AND a GPU are present, unless BACKEND is given.
ifeq ($(BACKEND),)
BACKEND := $(if $(and $(NVCC),$(GPU_OK)),cuda,cpu)
BACKEND_WHY := default: $(if $(NVCC),$(if $(GPU_OK),nvcc and a GPU found,nvcc found but no GPU (nvidia-smi -L)),no nvcc)
else
BACKEND_WHY := BACKEND=$(BACKEND) given
endif
ifeq ($(filter cpu cuda,$(BACKEND)),)
$(error BACKEND must be cpu or cuda, not '$(BACKEND)')
endif
ifeq ($(BACKEND)$(NVCC),cuda)
$(error BACKEND=cuda needs nvcc: set CUDA_HOME or put nvcc on PATH (see INSTALL))
endif

# Required libraries missing (MPI, libpng, OpenMP and CUDA are optional).
REQ_MISSING := $(strip $(if $(CC_OK),,C-compiler($(CC))) $(if $(HDF5_OK),,HDF5) $(if $(YAML_OK),,libyaml) $(if $(BLAS_OK),,BLAS) $(if $(FFTW_OK),,FFTW))
endif # LOLA_NO_PROBE

# ---------------------------------------------------------------------------------------------
# Defines and final flags
DEFS := $(if $(USE_MPI),-DLOLA_MPI) $(if $(HDF5_PARALLEL),-DLOLA_HDF5_PARALLEL) \
        $(if $(PNG_OK),-DLOLA_HAVE_PNG) $(if $(BLAS_IS_OPENBLAS),-DLOLA_BLAS_OPENBLAS) \
        -DLOLA_BLAS_NAME='"$(if $(BLAS_IS_OPENBLAS),OpenBLAS,$(if $(BLAS_OK),CBLAS ($(BLAS_FROM)),none))"'
# What C files of a CUDA build see (BACKEND=cuda, and the cuda-check flavour of BACKEND=cpu).
CUDA_DEFS := -DLOLA_BACKEND_CUDA -DLOLA_CUDA_ARCH='"$(CUDA_ARCH)"' $(if $(CUDNN_OK),-DLOLA_HAVE_CUDNN) $(if $(NCCL_OK),-DLOLA_HAVE_NCCL)
CUDA_CFLAGS := $(CUDA_INC) $(CUDNN_CFLAGS) $(NCCL_CFLAGS)
CUDA_LIBS := $(CUDA_LDIR) -lcudart -lcublas -lcublasLt $(CUDNN_LIBS) $(NCCL_LIBS) -lstdc++ $(CUDA_EXTRA_LIBS)
NVCC_FLAGS ?= -O3 -g -lineinfo -std=c++17
NVCC_ALL = $(NVCC_FLAGS) -arch=$(CUDA_ARCH) $(DEFS) $(CUDA_DEFS) -Isrc -Impi -Icuda $(if $(LINK_MPI),$(MPI_CFLAGS)) $(CUDNN_CFLAGS) $(NCCL_CFLAGS)

# MPI flags: when MPI is used, or when the HDF5 headers/library are a parallel build.
LINK_MPI := $(or $(USE_MPI),$(HDF5_IS_PAR))
DEP_CFLAGS := -Isrc -Impi $(if $(LINK_MPI),$(MPI_CFLAGS)) $(HDF5_CFLAGS) $(YAML_CFLAGS) $(BLAS_CFLAGS) $(FFTW_CFLAGS) $(PNG_CFLAGS)
DEP_LIBS := $(HDF5_LIBS) $(YAML_LIBS) $(BLAS_LIBS) $(FFTW_LIBS) $(PNG_LIBS) $(if $(LINK_MPI),$(MPI_LIBS))
ifeq ($(BACKEND),cuda)
ALL_CFLAGS := $(call uniq,$(CFLAGS) $(OMP_FLAGS) $(DEFS) $(CUDA_DEFS) $(DEP_CFLAGS) $(CUDA_CFLAGS))
ALL_LIBS := $(strip $(DEP_LIBS) $(CUDA_LIBS) $(OMP_FLAGS) -lm)
else
ALL_CFLAGS := $(call uniq,$(CFLAGS) $(OMP_FLAGS) $(DEFS) $(DEP_CFLAGS))
ALL_LIBS := $(strip $(DEP_LIBS) $(OMP_FLAGS) -lm)
endif
# Run-time search path for every -L directory (module-provided libraries keep working under srun;
# LD_LIBRARY_PATH still wins: RUNPATH).
RPATH := $(call uniq,$(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(patsubst %/,%,$(filter -L%,$(ALL_LIBS)))))
ALL_LDFLAGS := $(strip $(LDFLAGS) $(RPATH))

# ---------------------------------------------------------------------------------------------
# Sources
CORE_SRC := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard mpi/*.c)
CPU_SRC := $(wildcard src/cpu/*.c)
CU_SRC := $(wildcard cuda/*.cu)
CUC_SRC := $(wildcard cuda/*.c)
CORE_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC))
CPU_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CPU_SRC))
CU_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC)) $(patsubst %.c,$(BUILD)/obj/%.o,$(CUC_SRC))
ifeq ($(BACKEND),cuda)
LIB_OBJ := $(CORE_OBJ) $(CU_OBJ)
else
LIB_OBJ := $(CORE_OBJ) $(CPU_OBJ)
endif
TOOLS := $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))

# The configuration stamp: rewritten only when the flags change, so a change of flags (another
# BACKEND, a new library) rebuilds every object, and nothing else does.
STAMP := $(BUILD)/config.stamp
CONFIG_SIG := backend=$(BACKEND) cc=$(CC) cflags=$(ALL_CFLAGS) libs=$(ALL_LIBS) ldflags=$(ALL_LDFLAGS) nvcc=$(NVCC) nvccflags=$(NVCC_ALL)
OLD_SIG := $(if $(wildcard $(STAMP)),$(file < $(STAMP)))
# Print the table before building when the goal is a build of everything.
PRINT_TABLE := $(if $(filter-out all test demo cuda-check,$(or $(MAKECMDGOALS),all)),,1)

.PHONY: all test demo config deps clean help cuda-check FORCE print-%
all: $(BUILD)/lola $(TOOLS)

# ---------------------------------------------------------------------------------------------
# The found/missing table
row = +@printf '  %s %-10s %-34s %s\n' $(if $(1),✓,✗) $(call shq,$(2)) $(call shq,$(3)) $(call shq,$(4))
CC_VERSION = $(notdir $(CC)) $(shell $(CC) -dumpfullversion -dumpversion 2>/dev/null)
MPI_VERSION = $(call cpp_value,mpi.h,\n\043if defined(OMPI_MAJOR_VERSION)\nLOLA_V Open MPI OMPI_MAJOR_VERSION.OMPI_MINOR_VERSION.OMPI_RELEASE_VERSION\n\043elif defined(MPICH_VERSION)\nLOLA_V MPICH MPICH_VERSION\n\043else\nLOLA_V MPI MPI_VERSION.MPI_SUBVERSION\n\043endif,$(MPI_CFLAGS))
HDF5_VERSION = $(call cpp_value,hdf5.h,H5_VERS_MAJOR.H5_VERS_MINOR.H5_VERS_RELEASE,$(HDF5_CFLAGS) $(MPI_CFLAGS))
# yaml.h has no version macros: pkg-config's, else just "found".
YAML_VERSION = $(or $(shell $(PKG_CONFIG) --modversion yaml-0.1 2>/dev/null),found)
BLAS_VERSION = $(if $(BLAS_IS_OPENBLAS),$(call cpp_value,cblas.h,OPENBLAS_VERSION,$(BLAS_CFLAGS)),CBLAS)
FFTW_VERSION = $(or $(shell $(PKG_CONFIG) --modversion fftw3 2>/dev/null),found)
PNG_VERSION = $(call cpp_value,png.h,PNG_LIBPNG_VER_STRING,$(PNG_CFLAGS))
OMP_VERSION = $(call cpp_value,omp.h,_OPENMP,-fopenmp)
NVCC_VERSION = $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p')
CUDNN_VERSION = $(call cpp_value,cudnn.h,CUDNN_MAJOR.CUDNN_MINOR.CUDNN_PATCHLEVEL,$(CUDNN_CFLAGS) $(CUDA_INC))
NCCL_VERSION = $(call cpp_value,nccl.h,NCCL_MAJOR.NCCL_MINOR.NCCL_PATCH,$(NCCL_CFLAGS) $(CUDA_INC))
H5_WRAPPER_NOTE = $(if $(H5_WRAPPER),; $(H5_WRAPPER) -showconfig: parallel $(or $(H5_SHOWCONFIG_PAR),?))

# The table; `+` runs it under `make -n` too.
config:
	+@echo "lola-c build configuration ($(BUILD)/)"
	$(call row,$(CC_OK),C compiler,$(CC_VERSION),CC=$(CC))
	$(call row,$(USE_MPI),MPI,$(if $(MPI_OK),$(MPI_VERSION)$(if $(USE_MPI),, - not used (MPI=0)),not found: serial build (optional)),$(MPI_FROM))
	$(call row,$(HDF5_OK),HDF5,$(if $(HDF5_OK),$(HDF5_VERSION) $(if $(HDF5_IS_PAR),parallel$(if $(USE_MPI),, (used serially: no MPI)),serial),REQUIRED),$(HDF5_FROM)$(H5_WRAPPER_NOTE))
	$(call row,$(YAML_OK),libyaml,$(if $(YAML_OK),$(YAML_VERSION),REQUIRED),$(YAML_FROM))
	$(call row,$(BLAS_OK),BLAS,$(if $(BLAS_OK),$(BLAS_VERSION),REQUIRED (OpenBLAS)),$(BLAS_FROM))
	$(call row,$(FFTW_OK),FFTW,$(if $(FFTW_OK),$(FFTW_VERSION),REQUIRED),$(FFTW_FROM))
	$(call row,$(PNG_OK),libpng,$(if $(PNG_OK),$(PNG_VERSION),not found: no PNG figures (optional)),$(PNG_FROM))
	$(call row,$(OMP_OK),OpenMP,$(if $(OMP_OK),$(OMP_VERSION),not found: single-threaded CPU ops),-fopenmp)
	$(call row,$(NVCC),nvcc,$(if $(NVCC),$(NVCC_VERSION),not found: CPU backend only),$(NVCC_NOTE)$(or $(NVCC),CUDA_HOME / PATH))
	$(call row,$(GPU_OK),GPU,$(if $(GPU_OK),$(GPU_INFO),$(if $(NVCC),$(or $(GPU_INFO),none (nvidia-smi -L failed)),not probed (no nvcc))),CUDA_ARCH=$(CUDA_ARCH))
	$(call row,$(CUDNN_OK),cuDNN,$(if $(CUDNN_OK),$(CUDNN_VERSION),$(if $(NVCC),not found,not probed (no nvcc))),$(if $(CUDNN_HOME),CUDNN_HOME=$(CUDNN_HOME),CUDA_HOME / compiler paths))
	$(call row,$(NCCL_OK),NCCL,$(if $(NCCL_OK),$(NCCL_VERSION),$(if $(NVCC),not found: single GPU only,not probed (no nvcc))),$(if $(NCCL_HOME),NCCL_HOME=$(NCCL_HOME),CUDA_HOME / compiler paths))
	+@printf '  backend: %s (%s)%s\n' $(call shq,$(BACKEND)) $(call shq,$(BACKEND_WHY)) $(call shq,$(if $(NVCC),$(if $(filter cpu,$(BACKEND)),; make test also compiles cuda/ for $(CUDA_ARCH) (cuda-check)),))
	+@printf '  %-8s %s\n' CC $(call shq,$(CC)) CFLAGS $(call shq,$(ALL_CFLAGS)) LIBS $(call shq,$(ALL_LIBS)) LDFLAGS $(call shq,$(ALL_LDFLAGS))
	$(if $(NVCC),+@printf '  %-8s %s\n' NVCC $(call shq,$(NVCC) $(NVCC_ALL)))
	$(if $(REQ_MISSING),+@echo "  missing required: $(REQ_MISSING) -> run 'make deps' (or see INSTALL)")

# Rewritten (atomically) only when CONFIG_SIG changes; every object depends on it.
$(STAMP): FORCE | $(if $(PRINT_TABLE),config)
ifneq ($(REQ_MISSING),)
	@echo "error: required dependencies missing: $(REQ_MISSING)" >&2
	@echo "HINT: run 'make deps' (installs them as root on Debian/Ubuntu, else prints what to install), or see INSTALL; 'make config' shows what was found" >&2
	@exit 1
endif
ifneq ($(strip $(CONFIG_SIG)),$(strip $(OLD_SIG)))
	@mkdir -p $(@D)
	@printf '%s\n' $(call shq,$(CONFIG_SIG)) > $@.tmp.$$$$ && mv -f $@.tmp.$$$$ $@
	@echo "  (build configuration changed: objects in $(BUILD)/ are rebuilt)"
else
	@:
endif

# ---------------------------------------------------------------------------------------------
# C rules
$(BUILD)/obj/%.o: %.c $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(XCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblola.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/lola: $(BUILD)/obj/src/main.o $(BUILD)/liblola.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(BUILD)/obj/src/main.o $(BUILD)/liblola.a -o $@ $(ALL_LIBS)

$(TOOLS): $(BUILD)/%: $(BUILD)/obj/tools/%.o $(BUILD)/liblola.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $^ -o $@ $(ALL_LIBS)

$(TESTS): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/liblola.a
	@mkdir -p $(@D)
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $^ -o $@ $(ALL_LIBS)

# ---------------------------------------------------------------------------------------------
# cuda: cuda/*.cu -> nvcc -> $(BUILD)/obj/cuda/*.o (cuda/*.c -> CC with the CUDA headers), archived
# as $(BUILD)/libbackend_cuda.a. With BACKEND=cuda these objects replace src/cpu/ in liblola.a.
# With BACKEND=cpu and nvcc present, `cuda-check` (part of `make test`) compiles them and links
# the whole CUDA program as $(BUILD)/cuda-check/lola (no GPU needed), so CUDA build breaks fail CI:
# C files that test LOLA_BACKEND_CUDA (or all of them, when a header does) are recompiled in the
# CUDA flavour into $(BUILD)/obj-cuda/, the rest of the core objects are reused.
# cuda/cuda.mk, when present, is included here for backend-specific additions (extra NVCC_FLAGS,
# CUDA_EXTRA_LIBS such as -lnvrtc, test-gpu targets).
$(BUILD)/obj/cuda/%.o: cuda/%.cu $(STAMP)
	@mkdir -p $(@D)
	$(call say,NVCC,$<)
	$(Q)$(NVCC) $(NVCC_ALL) -MMD -MP -c $< -o $@

$(BUILD)/obj/cuda/%.o: XCFLAGS = $(CUDA_DEFS) $(CUDA_CFLAGS)

$(BUILD)/libbackend_cuda.a: $(CU_OBJ)
	@mkdir -p $(@D)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

CHK := $(BUILD)/cuda-check
ifneq ($(and $(NVCC),$(CU_SRC)$(CUC_SRC)),)
ifeq ($(BACKEND),cuda)
cuda-check: $(BUILD)/lola $(BUILD)/libbackend_cuda.a
	@echo "cuda-check: BACKEND=cuda, the CUDA program $(BUILD)/lola is built"
else
CUDA_FLAVOR_SRC := $(if $(shell grep -l LOLA_BACKEND_CUDA src/*.h mpi/*.h 2>/dev/null),$(CORE_SRC) src/main.c,$(shell grep -l LOLA_BACKEND_CUDA $(CORE_SRC) src/main.c 2>/dev/null))
CUDA_FLAVOR_OBJ := $(patsubst %.c,$(BUILD)/obj-cuda/%.o,$(CUDA_FLAVOR_SRC))
CHK_MAIN := $(if $(filter src/main.c,$(CUDA_FLAVOR_SRC)),,$(BUILD)/obj/src/main.o)
CHK_CORE := $(filter-out $(patsubst %.c,$(BUILD)/obj/%.o,$(CUDA_FLAVOR_SRC)),$(CORE_OBJ))

$(BUILD)/obj-cuda/%.o: %.c $(STAMP)
	@mkdir -p $(@D)
	$(call say,CC-CU,$<)
	$(Q)$(CC) $(ALL_CFLAGS) $(CUDA_DEFS) $(CUDA_CFLAGS) -MMD -MP -c $< -o $@

$(CHK)/libcore.a: $(CHK_CORE)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(CHK)/lola: $(CHK_MAIN) $(CUDA_FLAVOR_OBJ) $(BUILD)/libbackend_cuda.a $(CHK)/libcore.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(CHK_MAIN) $(CUDA_FLAVOR_OBJ) -Wl,--whole-archive $(BUILD)/libbackend_cuda.a -Wl,--no-whole-archive $(CHK)/libcore.a -o $@ $(ALL_LIBS) $(CUDA_LIBS) $(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(filter -L%,$(CUDA_LIBS)))

cuda-check: $(CHK)/lola
	@echo "cuda-check: compiled $(words $(CU_SRC) $(CUC_SRC)) CUDA source(s) for $(CUDA_ARCH) and linked $(CHK)/lola"
endif
else
cuda-check:
	@echo "cuda-check: $(if $(NVCC),no sources in cuda/ yet: nothing to compile,no nvcc: skipped)"
endif

-include cuda/cuda.mk
# The fenced backend (make fenced: CPU ops behind a memory fence; see tests/fenced/fenced.mk).
-include tests/fenced/fenced.mk

# ---------------------------------------------------------------------------------------------
# test / demo: pull in missing required dependencies first (make deps), then re-run make.
DEB_PKGS := build-essential pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools \
            libyaml-dev libopenblas-dev libfftw3-dev libpng-dev python3 python3-numpy python3-h5py

ifneq ($(REQ_MISSING),)
ifeq ($(LOLA_DEPS_RETRY),)
test demo:
	@echo "make $@: required dependencies missing ($(REQ_MISSING)): running 'make deps' first"
	$(MAKE) deps
	$(MAKE) LOLA_DEPS_RETRY=1 $@
else
test demo:
	@echo "error: still missing after 'make deps': $(REQ_MISSING); see INSTALL ('make config' shows what was found)" >&2
	@exit 1
endif
else
test: all $(TESTS) $(if $(NVCC),cuda-check gpu-selfcheck-build)
	@bash tests/run.sh $(BUILD)

# The demo (README): generate the demo data with build/well-euler when missing (64x64, 40
# trajectories per boundary family, 101 frames), then run the whole pipeline of configs/demo.yaml
# into runs/demo/ (each stage resumes or skips what is done). OMP_WAIT_POLICY=passive: OpenMP
# threads sleep while waiting, which matters on small or busy machines.
DEMO_DATA ?= data/demo
DEMO_RUN ?= runs/demo
demo: all
	@export OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive}; set -e; t0=$$(date +%s); \
	if [ ! -f $(DEMO_DATA)/.complete ]; then \
	  echo "== generating $(DEMO_DATA) (build/well-euler, 64x64, 2 x 40 trajectories)"; \
	  rm -rf $(DEMO_DATA); \
	  $(BUILD)/well-euler --out $(DEMO_DATA) --resolution 64 --trajectories 40 --seed 1 --bc both >$(BUILD)/demo-data.log; \
	  tail -n 1 $(BUILD)/demo-data.log; touch $(DEMO_DATA)/.complete; \
	fi; \
	$(BUILD)/lola pipeline -c configs/demo.yaml dataset.root=$(DEMO_DATA) run.dir=$(DEMO_RUN); \
	echo; echo "demo finished in $$(( $$(date +%s) - t0 )) s. Report: $(DEMO_RUN)/eval/summary.txt and $(DEMO_RUN)/eval/stats.csv;"; \
	echo "figures: $(DEMO_RUN)/eval/frames.png, vrmse.png, spread_skill.png"
endif

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make deps: apt-get install $(DEB_PKGS)"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PKGS); \
	else \
	  echo "make deps: cannot install here (needs root and apt-get). Install:"; \
	  echo "  Debian/Ubuntu:  sudo apt-get install $(DEB_PKGS)"; \
	  echo "  HPC (Lmod):     module load gcc openmpi hdf5/parallel openblas fftw   (+ cuda cudnn nccl for GPUs)"; \
	  echo "                  libyaml: module load libyaml, or build it and set YAML_HOME=<prefix>"; \
	  echo "  then run make again; see INSTALL."; \
	  exit 1; \
	fi

clean:
	rm -rf $(BUILD)

help:
	@sed -n '3,14p' Makefile | sed 's/^# \{0,1\}//'
	@echo "Variables: BACKEND=cpu|cuda CUDA_ARCH=sm_90a CC MPICC MPI=0 CUDA_HOME CUDNN_HOME NCCL_HOME YAML_HOME FFTW_HOME PNG_HOME"
	@echo "           XXX_CFLAGS/XXX_LIBS (XXX = MPI HDF5 YAML BLAS FFTW PNG) OPT CFLAGS NVCC_FLAGS BUILD V=1"

# `make print-VAR` prints a variable's final value (scripts and tests use it).
print-%:
	@$(info $($*))true

FORCE:

-include $(shell find $(BUILD)/obj $(BUILD)/obj-cuda -name '*.d' 2>/dev/null)
