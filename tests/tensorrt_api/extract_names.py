"""Extract the Python API names a TensorRT bindings wheel exposes (no GPU, no import needed).

Usage (one JSON per TensorRT version the tensorrt target claims to support):

    pip download --no-deps tensorrt-cu12-bindings==10.3.0 -d wheels
    python tests/tensorrt_api/extract_names.py wheels/tensorrt_cu12_bindings-10.3.0-*.whl \
        tests/tensorrt_api/

Names come from two places: the identifier-shaped strings of the pybind11 extension module
(``tensorrt.so``: class, enum-member, method and property names) and the top-level
definitions of the wheel's ``__init__.py`` (``Logger``, ``nptype``, ``__version__`` ...).
The linker merges a string literal into the tail of a longer one ("INT8" lives at the end of
"UINT8"), so a name counts as present when it equals or ends one of the stored strings
(``tests/test_tensorrt_api_names.py::has_name``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{1,80}")
PRINTABLE = re.compile(rb"[\x20-\x7e]{2,}")


def so_strings(blob: bytes) -> set[str]:
    """Identifier-shaped printable runs (like ``strings -n 2 | grep -x IDENT``)."""
    out = set()
    for run in PRINTABLE.findall(blob):
        if IDENT.fullmatch(run) and not run.startswith(b"_Z"):  # skip mangled C++ symbols
            out.add(run.decode())
    return out


def py_names(src: str) -> set[str]:
    names = set()
    for node in ast.parse(src).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def main(wheel: str, out_dir: str) -> Path:
    wheel_path = Path(wheel)
    with zipfile.ZipFile(wheel_path) as z:
        so = next(n for n in z.namelist() if n.endswith("/tensorrt.so"))
        init = next(n for n in z.namelist() if n.endswith("tensorrt_bindings/__init__.py"))
        so_names = so_strings(z.read(so))
        init_src = z.read(init).decode()
    version = re.search(r'__version__ = "([^"]+)"', init_src).group(1)
    doc = {
        "tensorrt_version": version,
        "wheel": wheel_path.name,
        "wheel_sha256": hashlib.sha256(wheel_path.read_bytes()).hexdigest(),
        "command": f"pip download --no-deps {wheel_path.name.split('-')[0].replace('_', '-')}"
                   f"=={wheel_path.name.split('-')[1]} && python "
                   f"tests/tensorrt_api/extract_names.py {wheel_path.name} "
                   "tests/tensorrt_api/",
        "python_names": sorted(py_names(init_src)),
        "so_names": sorted(so_names),
    }
    out = Path(out_dir) / f"tensorrt-{'.'.join(version.split('.')[:2])}.json"
    out.write_text(json.dumps(doc, indent=0) + "\n")
    return out


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
