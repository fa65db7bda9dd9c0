#!/usr/bin/env bash
# tests/gpu/psgd_emu/run.sh [BUILD_DIR]: runs the `psgd` section of tests/gpu/test_gpu_ops.c with
# cuda/psgd.cu emulated on the host: the PSGD-Kron ops of the CUDA backend, kernels and host code,
# against the CPU backend, on a machine without a GPU. A wrapper of tests/gpu/kernel_emu/run.sh
# (see there and kernel_emu/cuda_emu.h for what the emulation checks): the other hand-written
# kernel files are emulated too (PSGD calls nn_scale & co.), cuBLAS runs on column-major reference
# loops that validate the arguments and check every call's math mode (the precision switch is
# emulated: TF32 only for the SGEMMs in tf32 / bf16 mode), and the report requires cuBLAS calls,
# TF32 SGEMMs, the bf16 weight-cache bookkeeping and every kernel of psgd.cu launched.
# PSGD_CU=file emulates another version of psgd.cu (e.g. a deliberately broken copy, to see the
# checks fail); ASAN=1 adds AddressSanitizer + UBSan; EMU_SMS=N sets the emulated SM count
# (default 2). Exit status 0 when every check passed.
here=$(cd "$(dirname "$0")" && pwd)
EMU_ONLY=psgd EMU_NAME=psgd_emu EMU_SELFTEST=0 EMU_REPLACE="${PSGD_CU:+psgd.cu=$PSGD_CU}" \
    exec bash "$here/../kernel_emu/run.sh" "$@"
