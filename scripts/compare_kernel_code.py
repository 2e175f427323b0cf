#!/usr/bin/env python3
"""Compares the machine code of a C kernel file with its code at an earlier commit, loop by loop, so that a
rewrite of kernels this CPU cannot run (AVX-512 VNNI/BF16, AMX) is still checked here: the innermost loops of each
function — where a micro-kernel spends its time — must be the same instructions, registers renamed.

    scripts/compare_kernel_code.py Sources/CInceptionReduced/reduced.c [--against HEAD]

Both versions are compiled as SwiftPM compiles the package in release (the toolchain's clang, -O2, the module's
include folders) and disassembled with objdump. A hot loop is an innermost loop that multiplies and adds (FMA,
VPDPBUSD, VDPBF16PS, VPMADDWD, the tile products): those must be the same; other loops (a tap's pointer set-up,
the stores after a panel) and straight-line code may differ and are counted only. Prints one line per function;
exits 1 when a hot loop differs (the differing loops printed), 0 otherwise.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clang():
    swift = shutil.which("swift")
    beside = os.path.join(os.path.dirname(os.path.realpath(swift)), "clang") if swift else None
    return beside if beside and os.path.exists(beside) else "clang"


def compile_source(text, path, output):
    module = os.path.dirname(os.path.join(ROOT, path))
    source = os.path.join(os.path.dirname(output), os.path.basename(path))
    with open(source, "w") as f:
        f.write(text)
    includes = [os.path.join(module, "include"), os.path.join(ROOT, "Sources/CInceptionSystem/include")]
    subprocess.run([clang(), "-O2", "-DSWIFT_PACKAGE=1", "-fblocks", "-fPIC", "-fno-omit-frame-pointer"]
                   + [f"-I{i}" for i in includes] + ["-c", source, "-o", output], check=True)


def functions(obj):
    """Each function's instructions as (address, text), from objdump."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True,
                          check=True).stdout
    found, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+ <([\w.]+)>:", line)
        if head:
            current = found.setdefault(head.group(1), [])
            continue
        body = re.match(r"^\s*([0-9a-f]+):\s+(.*)$", line)
        if body and current is not None:
            current.append((int(body.group(1), 16), body.group(2).split("#")[0].strip()))
    return found


def canonical(instructions):
    """The instructions with registers numbered by first use, jump targets and zero displacements dropped."""
    names, out = {}, []
    for _, text in instructions:
        text = re.sub(r"\s+", " ", text)
        text = re.sub(r"[0-9a-f]+ <[\w.]+\+0x[0-9a-f]+>", "<label>", text)
        text = text.replace("0x0(", "(")
        text = re.sub(r"%[a-z0-9]+", lambda m: names.setdefault(m.group(0), f"r{len(names)}"), text)
        out.append(text)
    return tuple(out)


def innermost_loops(instructions):
    """The loops (a backward conditional jump and its target) that contain no other loop."""
    loops = []
    for address, text in instructions:
        jump = re.match(r"(j(?!mp)\w+)\s+([0-9a-f]+)", text)
        if jump and int(jump.group(2), 16) < address:
            loops.append((int(jump.group(2), 16), address))
    inner = [(s, e) for s, e in loops if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]
    return sorted(canonical([i for i in instructions if s <= i[0] <= e]) for s, e in inner)


MULTIPLY_ADD = re.compile(r"^({vex} )?(v\w*(fmadd|fnmadd|dpbusd|dpbf16|pmaddwd|pmaddubsw)\w*|tdp\w+)\b")


def is_hot(loop):
    return any(MULTIPLY_ADD.match(instruction) for instruction in loop)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a C file of the package, relative to the repository root")
    parser.add_argument("--against", default="HEAD", help="the commit to compare with (default: HEAD)")
    args = parser.parse_args()
    before = subprocess.run(["git", "-C", ROOT, "show", f"{args.against}:{args.source}"], capture_output=True,
                            text=True, check=True).stdout
    with open(os.path.join(ROOT, args.source)) as f:
        after = f.read()
    with tempfile.TemporaryDirectory() as folder:
        objects = []
        for name, text in (("before", before), ("after", after)):
            os.makedirs(os.path.join(folder, name))
            objects.append(os.path.join(folder, name, "kernel.o"))
            compile_source(text, args.source, objects[-1])
        old, new = functions(objects[0]), functions(objects[1])
    differing = 0
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            print(f"{'only after ' if name in new else 'only before'} {name}")
            continue
        loops_a, loops_b = innermost_loops(old[name]), innermost_loops(new[name])
        a, b = [x for x in loops_a if is_hot(x)], [x for x in loops_b if is_hot(x)]
        others = sum(x not in loops_b for x in loops_a if not is_hot(x))
        same = a == b
        differing += not same
        print(f"{'same   ' if same else 'DIFFERS'} {name}: {len(a)} hot loops "
              f"({', '.join(str(len(loop)) for loop in a) or '-'} instructions); other loops differing: {others}; "
              f"{len(old[name])} → {len(new[name])} instructions in all")
        if not same:
            for loop in (x for x in a if x not in b):
                print("  before only:\n    " + "\n    ".join(loop))
            for loop in (x for x in b if x not in a):
                print("  after only:\n    " + "\n    ".join(loop))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
