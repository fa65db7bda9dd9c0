#!/usr/bin/env bash
# tests/gpu/flash_emu/run.sh [BUILD_DIR]: builds and runs the host emulation of the flash attention
# kernels (flash_emu.cpp) three ways: exact (tf32 kernels in plain fp32, checked to 2e-5), rounded
# (tf32 and bf16 operand roundings), and exact under AddressSanitizer + UBSan. Needs g++ >= 11
# (C++20 <barrier>); no GPU, no CUDA. Exit status 0 when every check passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../build/flash_emu}
mkdir -p "$out"
CXX=${CXX:-g++}
flags=(-std=c++20 -O1 -g -pthread -Wall -Wno-unknown-pragmas -I"$here")
rc=0
build_run() { # name, extra flags...
    local name=$1
    shift
    if ! "$CXX" "${flags[@]}" "$@" "$here/flash_emu.cpp" -o "$out/$name"; then
        echo "FAIL flash_emu $name: does not build"
        rc=1
        return
    fi
    echo "# flash_emu $name"
    "$out/$name" || rc=1
}
build_run exact -DEMU_EXACT
build_run rounded
build_run asan -DEMU_EXACT -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
exit $rc
