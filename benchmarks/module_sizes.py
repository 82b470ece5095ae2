"""Module sizes (lines) of the package at two git revisions, as a Markdown table.

    python -m benchmarks.module_sizes 962434e HEAD [--top 30]

The first revision is the code before the "one place per concept" refactor (issue 14).
"""

from __future__ import annotations

import argparse
import subprocess

ROOTS = ("mtlsi_edge", "quantize", "targets", "calibration")


def sizes(rev: str) -> dict[str, int]:
    """``{path: lines}`` of every Python file under :data:`ROOTS` at ``rev``."""
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", *ROOTS],
                           capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for f in files:
        if f.endswith(".py"):
            text = subprocess.run(["git", "show", f"{rev}:{f}"], capture_output=True,
                                  text=True, check=True).stdout
            out[f] = text.count("\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--top", type=int, default=30, help="largest modules shown")
    args = ap.parse_args()
    a, b = sizes(args.before), sizes(args.after)
    rows = sorted(set(a) | set(b), key=lambda f: -max(a.get(f, 0), b.get(f, 0)))
    print(f"| module | lines at {args.before} | lines at {args.after} |\n|---|---|---|")
    for f in rows[:args.top]:
        print(f"| `{f}` | {a.get(f, '—')} | {b.get(f, '—')} |")
    print(f"| **all {len(a)} → {len(b)} modules** | {sum(a.values())} | {sum(b.values())} |")
    big = max(b.items(), key=lambda kv: kv[1])
    print(f"\nLargest module at {args.after}: `{big[0]}`, {big[1]} lines.")


if __name__ == "__main__":
    main()
