#!/usr/bin/env bash
# t_build.sh: the Makefile's detection and reporting, without full rebuilds.
#  - `make config` and `make -n` print the found/missing table, the backend and the flags;
#  - BACKEND=cpu builds (incremental in $LOLA_BUILD when cpu is the default backend here);
#  - missing dependencies are simulated in a throw-away BUILD dir (nothing under build/ changes):
#    a pkg-config that always fails (fallback paths: wrappers and link probes), a compiler that
#    cannot link -lyaml, HDF5 wrappers that do not exist, no MPI, no nvcc: the table shows ✗ for
#    exactly that dependency, make does not crash, a build stops with a clear message before
#    compiling, and `make test` runs `make deps` first (with a fake apt-get);
#  - the configuration stamp changes only when the flags change;
#  - buildinfo_print() reports the same HDF5 version and flavour as the table.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${LOLA_BUILD:-build}
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset MAKEFLAGS MFLAGS MAKELEVEL # run as a top-level make even when called from `make test`
M=(make --no-print-directory)

row() { grep -E "^  [✓✗] $1 " "$2"; }          # the table row of a dependency
ok_row() { row "$1" "$2" | grep -q '^  ✓'; }
bad_row() { row "$1" "$2" | grep -q '^  ✗'; }

# ------------------------------------------------------------------------------------------------
# The table on this machine.
"${M[@]}" config BUILD="$BUILD" >"$tmp/config" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q '^lola-c build configuration' "$tmp/config" && grep -q '^  backend: ' "$tmp/config" \
    && grep -q '^  CFLAGS ' "$tmp/config" && grep -q '^  LIBS ' "$tmp/config"; then
    pass "make config prints the table ($(grep -c '^  [✓✗] ' "$tmp/config") rows), backend and flags"
else
    fail "make config: exit $rc"; head -30 "$tmp/config" | sed 's/^/    /'
fi
for dep in 'C compiler' MPI HDF5 libyaml BLAS libpng OpenMP nvcc GPU cuDNN NCCL; do
    row "$dep" "$tmp/config" >/dev/null || fail "table has no row for $dep"
done
sed -n '2,20p' "$tmp/config" # shown in the log for the record
for dep in HDF5 libyaml BLAS; do
    ok_row "$dep" "$tmp/config" && pass "required $dep found here" || fail "required $dep missing here"
done

"${M[@]}" -n BUILD="$BUILD" >"$tmp/dry" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q '^lola-c build configuration' "$tmp/dry" && row HDF5 "$tmp/dry" >/dev/null \
    && pass "make -n prints the table" || { fail "make -n: exit $rc"; head -20 "$tmp/dry" | sed 's/^/    /'; }

# ------------------------------------------------------------------------------------------------
# BACKEND=cpu builds. Incremental in $BUILD when cpu is the default (no flag change); in a
# separate directory otherwise (GPU machine), so the default build is not invalidated.
default_backend=$(sed -n 's/^  backend: \([a-z]*\).*/\1/p' "$tmp/config")
if [ "$default_backend" = cpu ]; then CPU_BUILD=$BUILD; else CPU_BUILD=$tmp/cpu; fi
"${M[@]}" -j"$(nproc)" BACKEND=cpu BUILD="$CPU_BUILD" all >"$tmp/cpu.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -x "$CPU_BUILD/lola" ] && grep -q '^backend=cpu ' "$CPU_BUILD/config.stamp"; then
    pass "BACKEND=cpu builds $CPU_BUILD/lola"
else
    fail "BACKEND=cpu build: exit $rc"; grep -vE '^  [✓✗]' "$tmp/cpu.log" | tail -20 | sed 's/^/    /'
fi

# ------------------------------------------------------------------------------------------------
# Missing dependencies, simulated. Everything below uses BUILD=$tmp/b (no object is compiled).
mkdir -p "$tmp/bin" "$tmp/aptbin"
printf '#!/bin/sh\nexit 1\n' >"$tmp/bin/pkg-config"
chmod +x "$tmp/bin/pkg-config"
cat >"$tmp/bin/cc-noyaml" <<'CC'
#!/bin/sh
for a in "$@"; do [ "$a" = -lyaml ] && { echo "ld: cannot find -lyaml" >&2; exit 1; }; done
exec ${REAL_CC:-gcc} "$@"
CC
chmod +x "$tmp/bin/cc-noyaml"
cfg() { # output file, then make arguments / VAR=value
    local out=$1; shift
    env "$@" make --no-print-directory config BUILD="$tmp/b" >"$out" 2>&1
}

# 1. pkg-config fails for everything: the fallbacks (wrappers, link probes) still find the libraries.
cfg "$tmp/nopc" PATH="$tmp/bin:$PATH" PKG_CONFIG_PATH=/nonexistent
rc=$?
if [ $rc -eq 0 ] && ! grep -q 'pkg-config' <(grep -E '^  [✓✗] (HDF5|libyaml|BLAS|libpng) ' "$tmp/nopc"); then
    pass "no pkg-config: make config still runs (rows: $(grep -cE '^  ✓' "$tmp/nopc") found, $(grep -cE '^  ✗' "$tmp/nopc") missing)"
    for dep in HDF5 libyaml BLAS libpng; do
        echo "    $(row "$dep" "$tmp/nopc")"
    done
else
    fail "no pkg-config: exit $rc"; head -20 "$tmp/nopc" | sed 's/^/    /'
fi

# 2. libyaml cannot be found at all (no pkg-config entry, -lyaml does not link): ✗ for libyaml only.
cfg "$tmp/noyaml" PATH="$tmp/bin:$PATH" CC="$tmp/bin/cc-noyaml"
rc=$?
if [ $rc -eq 0 ] && bad_row libyaml "$tmp/noyaml" && ok_row BLAS "$tmp/noyaml" && ok_row 'C compiler' "$tmp/noyaml" \
    && grep -q 'missing required: libyaml' "$tmp/noyaml"; then
    pass "libyaml missing -> ✗ libyaml, others found, 'missing required: libyaml'"
else
    fail "libyaml-missing simulation: exit $rc"; head -20 "$tmp/noyaml" | sed 's/^/    /'
fi

# 3. HDF5 missing (no pkg-config, no h5pcc/h5cc): ✗ HDF5; a build stops before compiling anything.
NOH5=(PATH="$tmp/bin:$PATH" H5PCC=/nonexistent/h5pcc H5CC=/nonexistent/h5cc)
cfg "$tmp/noh5" "${NOH5[@]}"
rc=$?
if [ $rc -eq 0 ] && bad_row HDF5 "$tmp/noh5" && grep -q 'missing required: HDF5' "$tmp/noh5"; then
    pass "HDF5 missing -> ✗ HDF5 and 'missing required: HDF5'"
else
    fail "HDF5-missing simulation: exit $rc"; head -20 "$tmp/noh5" | sed 's/^/    /'
fi
env "${NOH5[@]}" make --no-print-directory BUILD="$tmp/b" all >"$tmp/noh5-all" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q 'error: required dependencies missing: HDF5' "$tmp/noh5-all" \
    && grep -q "HINT: run 'make deps'" "$tmp/noh5-all" && ! grep -qE '^  (CC|NVCC|CC-CU) +[^ ]+\.(c|cu)$|^  (LINK|AR) +' "$tmp/noh5-all"; then
    pass "build with HDF5 missing stops before compiling, naming HDF5 and 'make deps'"
else
    fail "build with HDF5 missing: exit $rc"; grep -vE '^  [✓✗]' "$tmp/noh5-all" | head -10 | sed 's/^/    /'
fi
# `make test` pulls in deps first: a fake apt-get (first on PATH) records the call.
printf '#!/bin/sh\necho "FAKE-APT $*"\n' >"$tmp/aptbin/apt-get"
chmod +x "$tmp/aptbin/apt-get"
env PATH="$tmp/aptbin:$tmp/bin:$PATH" H5PCC=/nonexistent/h5pcc H5CC=/nonexistent/h5cc \
    make --no-print-directory BUILD="$tmp/b" test >"$tmp/noh5-test" 2>&1
rc=$?
if [ "$(id -u)" = 0 ]; then
    grep -q 'FAKE-APT install -y --no-install-recommends .*libhdf5-openmpi-dev' "$tmp/noh5-test" \
        && grep -q "still missing after 'make deps': HDF5" "$tmp/noh5-test" && [ $rc -ne 0 ] \
        && pass "make test with HDF5 missing runs 'make deps' (apt-get install), re-checks, fails clearly" \
        || { fail "make test -> make deps: exit $rc"; grep -vE '^  [✓✗]' "$tmp/noh5-test" | head -10 | sed 's/^/    /'; }
else
    grep -q 'cannot install here' "$tmp/noh5-test" && [ $rc -ne 0 ] \
        && pass "make test with HDF5 missing runs 'make deps', which prints what to install (not root)" \
        || { fail "make test -> make deps (not root): exit $rc"; head -10 "$tmp/noh5-test" | sed 's/^/    /'; }
fi

# 4. No MPI (MPICC does not exist): ✗ MPI, optional, no -DLOLA_MPI; make still runs.
cfg "$tmp/nompi" MPICC=/nonexistent/mpicc
rc=$?
if [ $rc -eq 0 ] && bad_row MPI "$tmp/nompi" && grep -q 'serial build (optional)' "$tmp/nompi" \
    && ! grep -q -- '-DLOLA_MPI' "$tmp/nompi"; then
    pass "no MPI -> ✗ MPI (optional), no -DLOLA_MPI; HDF5 row: $(row HDF5 "$tmp/nompi" | cut -c1-60)"
else
    fail "no-MPI simulation: exit $rc"; head -20 "$tmp/nompi" | sed 's/^/    /'
fi

# 5. No nvcc (NVCC names a missing program): backend cpu, CUDA rows not probed; BACKEND=cuda then
#    refuses clearly; a bad BACKEND too.
cfg "$tmp/nocuda" NVCC=/nonexistent/nvcc
rc=$?
if [ $rc -eq 0 ] && bad_row nvcc "$tmp/nocuda" && grep -q '^  backend: cpu (default: no nvcc)' "$tmp/nocuda" \
    && row cuDNN "$tmp/nocuda" | grep -q 'not probed'; then
    pass "no nvcc -> ✗ nvcc, backend cpu, cuDNN/NCCL not probed"
else
    fail "no-nvcc simulation: exit $rc"; head -20 "$tmp/nocuda" | sed 's/^/    /'
fi
env NVCC=/nonexistent/nvcc make --no-print-directory config BACKEND=cuda BUILD="$tmp/b" >"$tmp/cuda-nonvcc" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q 'BACKEND=cuda needs nvcc' "$tmp/cuda-nonvcc" && pass "BACKEND=cuda without nvcc: clear error" \
    || { fail "BACKEND=cuda without nvcc: exit $rc"; head -5 "$tmp/cuda-nonvcc" | sed 's/^/    /'; }
make --no-print-directory config BACKEND=gpu BUILD="$tmp/b" >"$tmp/badbackend" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "BACKEND must be cpu or cuda, not 'gpu'" "$tmp/badbackend" && pass "BACKEND=gpu: clear error" \
    || { fail "BACKEND=gpu: exit $rc"; head -5 "$tmp/badbackend" | sed 's/^/    /'; }

# 6. A GPU (a fake nvidia-smi reporting an H200, compute capability 9.0) with nvcc: the default
#    backend becomes cuda and CUDA_ARCH sm_90a; an 8.0 GPU gives sm_80; CUDA_ARCH overrides.
if command -v nvcc >/dev/null 2>&1 || [ -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ]; then
    mkdir -p "$tmp/gpubin"
    fake_smi() { # compute capability
        printf '#!/bin/sh\ncase "$*" in\n  *query-gpu*) echo "%s, NVIDIA Fake GPU";;\n  *) echo "GPU 0: NVIDIA Fake GPU (UUID: GPU-0)";;\nesac\n' "$1" >"$tmp/gpubin/nvidia-smi"
        chmod +x "$tmp/gpubin/nvidia-smi"
    }
    fake_smi 9.0
    cfg "$tmp/gpu90" PATH="$tmp/gpubin:$PATH"
    rc=$?
    if [ $rc -eq 0 ] && ok_row GPU "$tmp/gpu90" && grep -q '^  backend: cuda (default: nvcc and a GPU found)' "$tmp/gpu90" \
        && row GPU "$tmp/gpu90" | grep -q 'CUDA_ARCH=sm_90a' && grep -q -- '-DLOLA_BACKEND_CUDA' "$tmp/gpu90"; then
        pass "GPU 9.0 visible -> ✓ GPU, backend cuda, CUDA_ARCH=sm_90a, -DLOLA_BACKEND_CUDA"
    else
        fail "GPU 9.0 simulation: exit $rc"; head -16 "$tmp/gpu90" | sed 's/^/    /'
    fi
    fake_smi 8.0
    cfg "$tmp/gpu80" PATH="$tmp/gpubin:$PATH"
    row GPU "$tmp/gpu80" | grep -q 'CUDA_ARCH=sm_80' && pass "GPU 8.0 -> CUDA_ARCH=sm_80" \
        || { fail "GPU 8.0 simulation"; row GPU "$tmp/gpu80" | sed 's/^/    /'; }
    cfg "$tmp/gpuov" PATH="$tmp/gpubin:$PATH" CUDA_ARCH=sm_90 BACKEND=cpu
    row GPU "$tmp/gpuov" | grep -q 'CUDA_ARCH=sm_90$' && grep -q '^  backend: cpu (BACKEND=cpu given)' "$tmp/gpuov" \
        && ! grep -q -- '-DLOLA_BACKEND_CUDA' <(grep '^  CFLAGS' "$tmp/gpuov") \
        && pass "CUDA_ARCH=sm_90 BACKEND=cpu override the GPU defaults" \
        || { fail "CUDA_ARCH/BACKEND overrides"; grep -E 'GPU|backend|CFLAGS' "$tmp/gpuov" | sed 's/^/    /'; }
fi

# ------------------------------------------------------------------------------------------------
# The configuration stamp: written once, untouched when nothing changes, rewritten when the flags do.
S=$tmp/b/config.stamp
make --no-print-directory BUILD="$tmp/b" "$S" >/dev/null 2>&1
m1=$(stat -c %Y.%N "$S" 2>/dev/null; stat -c %y "$S" 2>/dev/null)
sleep 1
make --no-print-directory BUILD="$tmp/b" "$S" >/dev/null 2>&1
m2=$(stat -c %Y.%N "$S" 2>/dev/null; stat -c %y "$S" 2>/dev/null)
make --no-print-directory BUILD="$tmp/b" OPT=-O1 "$S" >"$tmp/stamp3" 2>&1
if [ -n "$m1" ] && [ "$m1" = "$m2" ] && grep -q -- 'cflags=-O1 ' "$S" && grep -q 'build configuration changed' "$tmp/stamp3"; then
    pass "config stamp: unchanged flags leave it alone, OPT=-O1 rewrites it (objects rebuild)"
else
    fail "config stamp: m1='$m1' m2='$m2'"; cat "$S" | cut -c1-200 | sed 's/^/    /'
fi

# ------------------------------------------------------------------------------------------------
# buildinfo_print agrees with the table (links the real library; skipped if not built yet).
if [ -f "$BUILD/liblola.a" ] && [ "$default_backend" = cpu ]; then
    printf '#include "buildinfo.h"\nint main(void) { buildinfo_print(stdout); return 0; }\n' >"$tmp/bi.c"
    P() { make --no-print-directory -s BUILD="$BUILD" "print-$1"; }
    if ${CC:-gcc} $(P ALL_CFLAGS) "$tmp/bi.c" "$BUILD/liblola.a" -o "$tmp/bi" $(P ALL_LDFLAGS) $(P ALL_LIBS) >"$tmp/bi.cc" 2>&1; then
        "$tmp/bi" >"$tmp/bi.out" 2>&1
        want=$(row HDF5 "$tmp/config" | awk '{print $3, $4}')   # "1.10.8 parallel"
        got=$(awk '$1 == "HDF5" {print $2, $3}' "$tmp/bi.out")
        if [ -n "$want" ] && [ "$want" = "$got" ] && grep -q "^  backend   cpu" "$tmp/bi.out"; then
            pass "buildinfo_print: backend cpu, HDF5 '$got' as in the table"
        else
            fail "buildinfo_print: HDF5 '$got' vs table '$want'"; cat "$tmp/bi.out" | sed 's/^/    /'
        fi
        sed 's/^/    /' "$tmp/bi.out"
    else
        fail "buildinfo test program does not link"; head -10 "$tmp/bi.cc" | sed 's/^/    /'
    fi
fi
# ------------------------------------------------------------------------------------------------
# Both sides of buildinfo.c's compile-time switches compile warning-free (-Werror, syntax only).
DEPF=$(make --no-print-directory -s BUILD="$BUILD" print-DEP_CFLAGS)
CUDAF=$(make --no-print-directory -s BUILD="$BUILD" print-CUDA_CFLAGS)
variants=("" "-DLOLA_MPI -DLOLA_HDF5_PARALLEL -DLOLA_BLAS_OPENBLAS -DLOLA_HAVE_PNG -fopenmp" "-DLOLA_BLAS_NAME=\"MKL\"")
if [ -n "$(make --no-print-directory -s BUILD="$BUILD" print-NVCC)" ]; then
    variants+=("-DLOLA_BACKEND_CUDA -DLOLA_CUDA_ARCH=\"sm_90a\" $CUDAF"
               "-DLOLA_BACKEND_CUDA -DLOLA_CUDA_ARCH=\"sm_80\" -DLOLA_HAVE_CUDNN -DLOLA_HAVE_NCCL -DLOLA_MPI $CUDAF")
fi
for v in "${variants[@]}"; do
    # shellcheck disable=SC2086
    if ${CC:-gcc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only $DEPF $v src/buildinfo.c >"$tmp/bi-v.log" 2>&1; then
        pass "buildinfo.c compiles with [${v:0:60}]"
    else
        fail "buildinfo.c with [$v]"; head -10 "$tmp/bi-v.log" | sed 's/^/    /'
    fi
done
[ $fails -eq 0 ]
