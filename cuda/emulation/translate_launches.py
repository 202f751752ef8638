#!/usr/bin/env python3
"""Rewrites a CUDA source (cuda/*.cu) into C++ for the CUDA emulation (LOOM_CUDA=EMULATE; device.h says what it
is): each `kernel<<<grid, block[, shared_bytes[, stream]]>>>(args)` becomes
`::loom::emulation::launch(grid, block, shared_bytes, kernel_id, [&](auto... a) { kernel(a...); }, args)`, and each
`extern __shared__ T name[];` a pointer to the launch's dynamic shared memory. Everything else is left as it is,
line for line, so compiler messages point at the right lines of the original file.

usage: translate_launches.py IN.cu OUT.cpp
"""
import os
import re
import sys

IDENT = re.compile(r"[A-Za-z0-9_:]")


def matching(text, at, open_ch, close_ch, step):
    """Index of the bracket matching the one at `at`, scanning forwards (step 1) or backwards (step -1)."""
    depth = 0
    while 0 <= at < len(text):
        if text[at] in (open_ch, close_ch):
            depth += 1 if text[at] == (open_ch if step > 0 else close_ch) else -1
            if depth == 0:
                return at
        at += step
    raise ValueError("unbalanced " + open_ch + close_ch)


def split_top_level(text):
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def rewrite_launch(text, at):
    """Rewrites the launch whose `<<<` starts at `at`; returns (new text, where to continue)."""
    # The kernel: an identifier path, optionally with template arguments.
    end = at
    i = at - 1
    while text[i].isspace():
        i -= 1
    if text[i] == ">":
        i = matching(text, i, "<", ">", -1) - 1
    while i >= 0 and IDENT.match(text[i]):
        i -= 1
    begin = i + 1
    kernel = text[begin:end].strip()
    close = text.index(">>>", at)
    config = split_top_level(text[at + 3 : close])
    grid, block = config[0], config[1]
    shared = config[2] if len(config) > 2 else "0"
    paren = close + 3
    while text[paren].isspace():
        paren += 1
    assert text[paren] == "(", "expected the kernel's arguments after >>>"
    args_end = matching(text, paren, "(", ")", 1)
    args = text[paren + 1 : args_end]
    # The kernel's address identifies it to cudaFuncSetAttribute's shared-memory opt-in; only launches with
    # dynamic shared memory need it (and name their kernel's template arguments, so it resolves).
    kernel_id = f"reinterpret_cast<const void*>(&{kernel})" if len(config) > 2 else "nullptr"
    call = (f"::loom::emulation::launch({grid}, {block}, {shared}, {kernel_id}, "
            f"[&](auto... emulated_args) {{ {kernel}(emulated_args...); }}")
    call += (", " + args if args.strip() else "") + ")"
    new = text[:begin] + call + text[args_end + 1 :]
    return new, begin + len(call)


def translate(text):
    text = re.sub(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;",
                  r"\1* \2 = reinterpret_cast<\1*>(::loom::emulation::dynamic_shared());", text)
    pos = 0
    while True:
        at = text.find("<<<", pos)
        if at < 0:
            return text
        text, pos = rewrite_launch(text, at)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    out = f'#line 1 "{src}"\n' + translate(text)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w") as f:
        f.write(out)


if __name__ == "__main__":
    main()
