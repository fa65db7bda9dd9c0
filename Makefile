# lola-c build (bootstrap version; the foundation work extends detection and reporting).
# Targets: all (build/lola + tools), test, clean. BACKEND=cpu|cuda.
SHELL := /bin/bash
BUILD ?= build
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
OPT ?= -O3
CFLAGS ?= $(OPT) -g -std=c11 -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GNU_SOURCE
PKG := pkg-config

# MPI (mpicc --showme) -------------------------------------------------------------------------
MPICC ?= mpicc
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
DEFS += -DLOLA_MPI
endif
# HDF5 (pkg-config hdf5-openmpi / hdf5) ---------------------------------------------------------
HDF5_CFLAGS := $(shell $(PKG) --cflags hdf5-openmpi 2>/dev/null || $(PKG) --cflags hdf5 2>/dev/null)
HDF5_LIBS := $(shell $(PKG) --libs hdf5-openmpi 2>/dev/null || $(PKG) --libs hdf5 2>/dev/null)
YAML_CFLAGS := $(shell $(PKG) --cflags yaml-0.1 2>/dev/null)
YAML_LIBS := $(shell $(PKG) --libs yaml-0.1 2>/dev/null)
BLAS_CFLAGS := $(shell $(PKG) --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell $(PKG) --libs openblas 2>/dev/null)
PNG_CFLAGS := $(shell $(PKG) --cflags libpng 2>/dev/null)
PNG_LIBS := $(shell $(PKG) --libs libpng 2>/dev/null)
FFTW_CFLAGS := $(shell $(PKG) --cflags fftw3 2>/dev/null)
FFTW_LIBS := $(shell $(PKG) --libs fftw3 2>/dev/null)

ALL_CFLAGS = $(CFLAGS) $(DEFS) -Isrc -Impi $(MPI_CFLAGS) $(HDF5_CFLAGS) $(YAML_CFLAGS) $(BLAS_CFLAGS) $(PNG_CFLAGS) $(FFTW_CFLAGS)
ALL_LIBS = $(HDF5_LIBS) $(YAML_LIBS) $(BLAS_LIBS) $(PNG_LIBS) $(FFTW_LIBS) $(MPI_LIBS) -fopenmp -lm

LIB_SRC := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard src/cpu/*.c) $(wildcard mpi/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
TOOLS := $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))

.PHONY: all test clean
all: $(BUILD)/lola $(TOOLS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblola.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/lola: $(BUILD)/obj/src/main.o $(BUILD)/liblola.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(ALL_LIBS)

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(BUILD)/liblola.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(ALL_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/liblola.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(ALL_LIBS)

test: all $(TESTS)
	bash tests/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
