#!/usr/bin/env bash
# tests/gpu/bundle.sh BUNDLE NAME=BINARY...: collects prebuilt programs and the shared libraries the
# GPU machine lacks into BUNDLE (used by `make gpu-bundle`, cuda/cuda.mk), so that the GPU machine
# (Ubuntu 24.04, glibc 2.39, CUDA 13, cuDNN 9, NCCL 2, Open MPI 4.1.6, serial HDF5, no libyaml;
# /work/shared/reference/gpu-machine.md) runs the whole program without building it.
#
# Layout:
#   BUNDLE/bin/NAME        the programs, debug info stripped (symbols kept: backtraces still name
#                          functions; CUDA -lineinfo lives in the device code and stays)
#   BUNDLE/NAME            wrapper: sources env.sh, then execs bin/NAME with the arguments
#   BUNDLE/env.sh          sets LD_LIBRARY_PATH = lib[:lib-fallback]:$LD_LIBRARY_PATH
#   BUNDLE/lib/            libraries always taken along (policy BUNDLE below)
#   BUNDLE/lib-fallback/   libraries taken along but used only when the machine has no library of
#                          that soname (env.sh asks `ldconfig -p` for the ones in ROOTS)
#   BUNDLE/MANIFEST.txt    source revision, every binary's ldd with the decision per library, sizes
#
# Library policy, by soname (each library `ldd` reports for any binary falls in exactly one class;
# an unclassified one stops the bundle with an error, so a new dependency gets a decision):
#   SYSTEM    glibc, the C++/OpenMP runtimes and base-system libraries: every Linux has them, and
#             glibc's own must never be mixed with another version's.
#   CUDA      the CUDA runtime, cuBLAS(Lt), cuDNN, NCCL, the driver: installed there (CUDA 13, cuDNN
#             9.14, NCCL 2.28) and tied to its driver; huge (cuBLASLt alone is 540 MB).
#   MPI       Open MPI and what it pulls in (hwloc, libevent, udev) plus OpenBLAS and its Fortran
#             runtime: installed there (Open MPI 4.1.6 is ABI compatible with Debian's 4.1.4;
#             Debian's libmpi would load the other installation's plugins and fail). OpenBLAS is
#             installed there too, and is 36 MB.
#   BUNDLE    missing there or of another flavour: Debian's *parallel* HDF5 (the machine has only
#             serial HDF5, another soname), libyaml (absent), FFTW and libpng (maybe absent), szip/aec
#             (HDF5's filters, same package family as the HDF5 we bring).
#   FALLBACK  libcurl and its network/crypto tree (needed by Debian's HDF5 for its read-only S3
#             driver, never called by lola): Ubuntu's own HDF5 needs libcurl too, so the machine most
#             likely has it; taken along (~15 MB) in case it does not.
set -euo pipefail
B=${1:?usage: tests/gpu/bundle.sh BUNDLE NAME=BINARY...}
shift
[ $# -gt 0 ] || { echo "bundle.sh: no binaries given" >&2; exit 2; }
cd "$(dirname "$0")/../.."

SYSTEM='linux-vdso.so.1 ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1
  libresolv.so.2 libutil.so.1 libstdc++.so.6 libgcc_s.so.1 libgomp.so.1 libz.so.1 libzstd.so.1
  liblzma.so.5 libbz2.so.1.0 libffi.so.8 libcap.so.2 libselinux.so.1 libpcre2-8.so.0 libcrypt.so.1'
CUDA='libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libnccl.so.2 libnvrtc.so.13
  libcudnn_graph.so.9 libcudnn_ops.so.9 libcudnn_cnn.so.9 libcudnn_adv.so.9 libcudnn_heuristic.so.9
  libcudnn_engines_precompiled.so.9 libcudnn_engines_runtime_compiled.so.9 libnvJitLink.so.13'
MPI='libmpi.so.40 libopen-rte.so.40 libopen-pal.so.40 libhwloc.so.15 libevent_core-2.1.so.7
  libevent_pthreads-2.1.so.7 libevent-2.1.so.7 libudev.so.1 libpmix.so.2 libfabric.so.1 libucp.so.0
  libucs.so.0 libucm.so.0 libuct.so.0 libibverbs.so.1 librdmacm.so.1 libnl-3.so.200 libnl-route-3.so.200
  libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libblas.so.3 libcblas.so.3'
BUNDLE='libhdf5_openmpi.so.103 libhdf5_openmpi_hl.so.100 libyaml-0.so.2 libfftw3.so.3 libfftw3f.so.3
  libpng16.so.16 libsz.so.2 libaec.so.0'
FALLBACK='libcurl.so.4 libnghttp2.so.14 libidn2.so.0 librtmp.so.1 libssh2.so.1 libpsl.so.5 libssl.so.3
  libcrypto.so.3 libgssapi_krb5.so.2 libldap-2.5.so.0 liblber-2.5.so.0 libbrotlidec.so.1
  libbrotlicommon.so.1 libkrb5.so.3 libk5crypto.so.3 libkrb5support.so.0 libcom_err.so.2
  libkeyutils.so.1 libsasl2.so.2 libgnutls.so.30 libhogweed.so.6 libnettle.so.8 libgmp.so.10
  libunistring.so.2 libp11-kit.so.0 libtasn1.so.6'
in_list() { case " $(echo $2) " in *" $1 "*) return 0 ;; esac; return 1; } # in_list SONAME "LIST"
class_of() {
    local s=$1
    in_list "$s" "$SYSTEM" && { echo SYSTEM; return; }
    in_list "$s" "$CUDA" && { echo CUDA; return; }
    in_list "$s" "$MPI" && { echo MPI; return; }
    in_list "$s" "$BUNDLE" && { echo BUNDLE; return; }
    in_list "$s" "$FALLBACK" && { echo FALLBACK; return; }
    echo UNKNOWN
}

rm -rf "$B.tmp"
mkdir -p "$B.tmp/bin" "$B.tmp/lib" "$B.tmp/lib-fallback"
M=$B.tmp/MANIFEST.txt
{
    echo "# lola-c GPU bundle (tests/gpu/bundle.sh), made $(date -u +%FT%TZ) on $(hostname)"
    echo "# source: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100) $(git status --porcelain 2>/dev/null | grep -q . && echo '(+ uncommitted changes)')"
    echo "# glibc here: $(ldd --version | head -1 | sed 's/.* //')"
} >"$M"

declare -A copied=()
unknown=""
names=()
for arg in "$@"; do
    name=${arg%%=*}
    src=${arg#*=}
    [ -x "$src" ] || { echo "bundle.sh: $src ($name) is not built" >&2; exit 1; }
    objcopy --strip-debug "$src" "$B.tmp/bin/$name"
    names+=("$name")
    echo "" >>"$M"
    echo "== $name <- $src ($(stat -c %s "$src") bytes, stripped $(stat -c %s "$B.tmp/bin/$name"))" >>"$M"
    # "soname => path (addr)" lines; a "not found" here is an error (the binary does not run here).
    if ldd "$src" | grep -q 'not found'; then
        echo "bundle.sh: $src has unresolved libraries here:" >&2
        ldd "$src" | grep 'not found' >&2
        exit 1
    fi
    while read -r so path; do
        c=$(class_of "$so")
        printf '   %-9s %-32s %s\n' "$c" "$so" "$path" >>"$M"
        case $c in
        BUNDLE | FALLBACK)
            dir=lib
            [ "$c" = FALLBACK ] && dir=lib-fallback
            if [ -z "${copied[$so]:-}" ]; then
                cp -L "$path" "$B.tmp/$dir/$so"
                copied[$so]=$dir
            fi
            ;;
        UNKNOWN) unknown="$unknown $so($path)" ;;
        esac
    done < <(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $1 ~ /^\// { n = split($1, p, "/"); print p[n], $1 } $1 == "linux-vdso.so.1" { print $1, "-" }')
done
if [ -n "$unknown" ]; then
    echo "bundle.sh: libraries not classified in tests/gpu/bundle.sh (add each to SYSTEM/CUDA/MPI/BUNDLE/FALLBACK):$unknown" >&2
    exit 1
fi

# ROOTS: the fallback libraries that a binary or a lib/ library needs directly; if the machine has
# all of them, it has their dependencies too (they come from its own packages).
roots=""
for f in "$B.tmp"/bin/* "$B.tmp"/lib/*; do
    for so in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ "${copied[$so]:-}" = lib-fallback ] && ! in_list "$so" "$roots" && roots="$roots $so"
    done
done
echo "${roots# }" >"$B.tmp/lib-fallback/ROOTS"

cat >"$B.tmp/env.sh" <<'EOF'
# shellcheck shell=sh
# Sourced by the wrappers (and usable by hand: `. build/gpu-bundle/env.sh`): the bundle's libraries
# first, then lib-fallback/ only if the machine lacks one of lib-fallback/ROOTS (ldconfig -p).
LOLA_BUNDLE=$(cd "$(dirname "${LOLA_BUNDLE_SELF:-${BASH_SOURCE:-$0}}")" && pwd)
_lp=$LOLA_BUNDLE/lib
if [ -s "$LOLA_BUNDLE/lib-fallback/ROOTS" ]; then
    _cache=$( (/sbin/ldconfig -p || ldconfig -p) 2>/dev/null)
    for _so in $(cat "$LOLA_BUNDLE/lib-fallback/ROOTS"); do
        case $_cache in *"$_so "*) ;; *) _lp=$_lp:$LOLA_BUNDLE/lib-fallback; break ;; esac
    done
fi
LD_LIBRARY_PATH=$_lp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH LOLA_BUNDLE
unset _lp _cache _so
EOF
for name in "${names[@]}"; do
    cat >"$B.tmp/$name" <<'EOF'
#!/bin/sh
# lola-c GPU bundle wrapper: runs bin/<this name> with the bundle's libraries (env.sh); a symbolic
# link to it works too.
LOLA_BUNDLE_SELF=$(readlink -f "$0" 2>/dev/null || echo "$0")
. "$(dirname "$LOLA_BUNDLE_SELF")/env.sh"
exec "$LOLA_BUNDLE/bin/$(basename "$LOLA_BUNDLE_SELF")" "$@"
EOF
    chmod +x "$B.tmp/$name"
done

{
    echo ""
    echo "== lib/ (always used):"
    (cd "$B.tmp/lib" && ls -l | awk 'NR > 1 { printf "   %9d %s\n", $5, $9 }')
    echo "== lib-fallback/ (used only if the machine lacks one of: $(cat "$B.tmp/lib-fallback/ROOTS")):"
    (cd "$B.tmp/lib-fallback" && ls -l | awk 'NR > 1 && $9 != "ROOTS" { printf "   %9d %s\n", $5, $9 }')
    echo "== total: $(du -sb "$B.tmp" | cut -f1) bytes"
} >>"$M"
rm -rf "$B"
mv "$B.tmp" "$B"
total=$(du -sb "$B" | cut -f1)
printf 'gpu-bundle: %s: %s (%d MiB): bin/ %s; lib/ %d libraries, lib-fallback/ %d (see MANIFEST.txt)\n' \
    "$B" "$(du -sh "$B" | cut -f1)" $((total >> 20)) "${names[*]}" "$(ls "$B/lib" | wc -l)" "$(ls "$B/lib-fallback" | grep -vc ROOTS)"
if [ "$total" -gt $((56 << 20)) ]; then
    echo "bundle.sh: the bundle is $((total >> 20)) MiB, over the 56 MiB allowed (it travels in a 64 MiB carry with the ~4 MiB source tree)" >&2
    exit 1
fi
