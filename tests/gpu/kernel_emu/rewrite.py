#!/usr/bin/env python3
"""rewrite.py IN OUT: turns a CUDA source (.cu) or header (.cuh) of the backend into host C++ for
the emulation of tests/gpu/kernel_emu/cuda_emu.h:
  * every launch `kern<<<grid, block[, smem[, stream]]>>>(args);` becomes
    `emu_launch(grid, block, smem, stream, "kern", BOUND, [&] { kern(args); },
                [&] { emu_check_args("kern", kern, args); });`
    (BOUND: the kernel's __launch_bounds__ when this file declares one, else 0; the second lambda
    checks the pointer arguments once per launch);
  * `__shared__ T name[dims];` becomes `static T name[dims]; emu_shared_decl(name, sizeof name, "name");`
    and `extern __shared__ T name[];` becomes `T *name = (T *)emu_dyn_shared();`;
  * `__launch_bounds__(...)` is dropped after being recorded;
  * a .cu file gets a registration of its kernels (every `__global__` function) at the end.
A `#line` directive keeps compiler messages pointing at IN; line counts are preserved. Anything it
does not understand (a launch without an argument list, a `__shared__` it cannot parse) is an
error, so that a new construct is noticed rather than silently emulated wrong.
Prints the number of launches and shared declarations rewritten."""
import os
import re
import sys


def die(msg):
    raise SystemExit("rewrite.py: %s: %s" % (sys.argv[1], msg))


def balanced(s, i, open_c, close_c):
    """Index just after the bracket closing the one at s[i]."""
    depth = 0
    while i < len(s):
        if s[i] == open_c:
            depth += 1
        elif s[i] == close_c:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    die("unbalanced %s%s" % (open_c, close_c))


def split_top(s):
    """Top-level comma-separated parts of s."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def strip_comments(src):
    """src with comments and string literals blanked (same length, newlines kept): for searching."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif src[i] == '"' or (src[i] == "'" and not (i > 0 and src[i - 1].isalnum())):
            q = src[i]
            j = i + 1
            while j < n and src[j] != q:
                j += 2 if src[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                if out[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def main():
    path, dest = sys.argv[1], sys.argv[2]
    src = open(path).read()
    code = strip_comments(src)
    is_cu = path.endswith(".cu")

    # __launch_bounds__(N[, M]) before a kernel name: record N, blank the attribute.
    bounds = {}
    edits = []  # (start, end, replacement), on positions of src
    for m in re.finditer(r"__launch_bounds__\s*\(", code):
        end = balanced(code, m.end() - 1, "(", ")")
        args = split_top(src[m.end():end - 1])
        nm = re.match(r"\s*([A-Za-z_]\w*)\s*\(", code[end:])
        if not nm:
            die("__launch_bounds__ not followed by a kernel name")
        bounds[nm.group(1)] = args[0]
        edits.append((m.start(), end, ""))

    # Kernels defined here (for the registry).
    kernels = []
    for m in re.finditer(r"__global__\s+(?:void\s+)?(?:__launch_bounds__\s*\([^)]*\)\s*)?(?:void\s+)?([A-Za-z_]\w*)\s*\(", code):
        if m.group(1) not in kernels:
            kernels.append(m.group(1))

    # Shared memory declarations.
    n_shared = 0
    for m in re.finditer(r"\b__shared__\b", code):
        stmt_end = code.index(";", m.end())
        ext = re.search(r"\bextern\s+$", code[max(0, m.start() - 40):m.start()])
        start = m.start() - (len(ext.group(0)) if ext else 0)
        decl = src[m.end():stmt_end].strip()
        clean = re.sub(r"__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\)", "", decl)
        d = re.fullmatch(r"(.*?[\w>*\s])([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)", clean, re.S)
        if not d or "," in decl or "=" in decl or not d.group(1).strip() or not re.search(r"[\s*]$", d.group(1)):
            die("cannot parse the __shared__ declaration '%s'" % decl)
        typ, name, dims = d.group(1).strip(), d.group(2), d.group(3).strip()
        if ext:
            if dims.replace(" ", "") != "[]":
                die("extern __shared__ %s must be an array of unknown size" % name)
            rep = "%s *%s = (%s *)emu_dyn_shared()" % (typ, name, typ)
        else:
            rep = 'static %s %s%s; emu_shared_decl(&%s, sizeof %s, "%s")' % (typ, name, dims, name, name, name)
        rep += "\n" * src[start:stmt_end].count("\n")
        edits.append((start, stmt_end, rep))
        n_shared += 1

    # Launches.
    head = re.compile(r"([A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<")
    n_launch = 0
    pos = 0
    while True:
        m = head.search(code, pos)
        if not m:
            break
        end_cfg = code.index(">>>", m.end())
        cfg = split_top(src[m.end():end_cfg])
        if not 2 <= len(cfg) <= 4:
            die("launch configuration <<<%s>>>" % ", ".join(cfg))
        cfg += ["0", "0"][: 4 - len(cfg)]
        p = end_cfg + 3
        while code[p].isspace():
            p += 1
        if code[p] != "(":
            die("no argument list after <<<...>>> of %s" % m.group(1))
        q = balanced(code, p, "(", ")")
        args = src[p + 1:q - 1]
        kern = m.group(1)
        base = kern.split("<")[0]
        bound = "(unsigned)(%s)" % bounds[base] if base in bounds else "0u"
        lost = src[m.start():q].count("\n")  # keep the line numbers
        flat = " ".join(args.split())
        check_args = (", " + flat) if flat else ""
        rep = 'emu_launch(%s, "%s", %s, [&] { %s(%s); }, [&] { emu_check_args("%s", %s%s); })%s' % (
            ", ".join(cfg), kern, bound, kern, flat, kern, kern, check_args, "\n" * lost)
        edits.append((m.start(), q, rep))
        n_launch += 1
        pos = q

    edits.sort()
    out, last = [], 0
    for s, e, r in edits:
        if s < last:
            die("overlapping rewrites at offset %d" % s)
        out.append(src[last:s])
        out.append(r)
        last = e
    out.append(src[last:])
    text = '#line 1 "%s"\n' % os.path.abspath(path) + "".join(out)
    if is_cu:
        text += '\nstatic int emu_kernels_of_this_file_ = emu_register_kernels("%s", "%s");\n' % (
            os.path.basename(path), ",".join(kernels))
    if is_cu and kernels and n_launch == 0:
        die("kernels but no launch found")
    old = open(dest).read() if os.path.exists(dest) else None
    if old != text:  # keep the timestamp when nothing changed (run.sh rebuilds what is newer)
        open(dest, "w").write(text)
    print("rewrite.py: %s: %d launches, %d shared declarations, %d kernels" % (
        os.path.basename(path), n_launch, n_shared, len(kernels)))


main()
