#!/usr/bin/env python3
"""launch_rewrite.py IN.cu OUT.cpp: turns every CUDA launch `kern<<<cfg>>>(args);` of a .cu file
into `emu_launch(cfg, [&] { kern(args); });` (tests/gpu/psgd_emu/cuda_emu.h), so that the file
compiles as host C++. The launch configuration gets the defaults of the missing fields
(shared memory 0, stream 0). A `#line` directive keeps compiler messages pointing at IN.cu."""
import re
import sys


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
    raise SystemExit("launch_rewrite.py: unbalanced %s%s" % (open_c, close_c))


def split_top(s):
    """Top-level comma-separated parts of s."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def main():
    src = open(sys.argv[1]).read()
    head = re.compile(r"([A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<")
    out, pos, count = [], 0, 0
    while True:
        m = head.search(src, pos)
        if not m:
            break
        end_cfg = src.index(">>>", m.end())
        cfg = split_top(src[m.end():end_cfg])
        if not 2 <= len(cfg) <= 4:
            raise SystemExit("launch_rewrite.py: launch configuration <<<%s>>>" % ", ".join(cfg))
        cfg += ["0", "0"][: 4 - len(cfg)]
        p = end_cfg + 3
        while src[p].isspace():
            p += 1
        if src[p] != "(":
            raise SystemExit("launch_rewrite.py: no argument list after <<<...>>> of %s" % m.group(1))
        q = balanced(src, p, "(", ")")
        args = src[p + 1:q - 1]
        out.append(src[pos:m.start()])
        lost = src[m.end():end_cfg].count("\n") + src[end_cfg + 3:p].count("\n")  # keep the line numbers
        out.append("emu_launch(%s, [&] { %s(%s); })%s" % (", ".join(cfg), m.group(1), args, "\n" * lost))
        pos = q
        count += 1
    out.append(src[pos:])
    text = '#line 1 "%s"\n' % sys.argv[1] + "".join(out)
    if count == 0:
        raise SystemExit("launch_rewrite.py: no kernel launch found in %s" % sys.argv[1])
    open(sys.argv[2], "w").write(text)
    print("launch_rewrite.py: %d launches rewritten" % count)


main()
