"""What CPU this is: the one reader of ``/proc/cpuinfo`` (numbers depend on these flags)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: ISA flags that change speed or correctness of the runtimes' kernels.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
             "amx_int8")


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU; (platform name, empty) where unreadable."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "model name" and val.strip():
            model = val.strip()
        elif key == "flags" and not flags:
            flags = frozenset(val.split())
        if flags and key == "model name":
            break
    return model, flags


def cpu_flags() -> str:
    """The ISA flags of :data:`ISA_FLAGS` this CPU has, space-separated (e.g. ``avx2``)."""
    flags = cpu_info()[1]
    return " ".join(f for f in ISA_FLAGS if f in flags) or "none of " + "/".join(ISA_FLAGS)


def has_vnni() -> bool:
    return bool(cpu_info()[1] & {"avx512_vnni", "avx_vnni", "amx_int8"})


def describe(flags: bool = True) -> str:
    """One line naming this machine for a measurement: CPU model, logical cores, OS and
    architecture (and the ISA flags, which decide kernel speed and INT8 correctness)."""
    import os

    line = (f"{cpu_info()[0]}, {os.cpu_count()} logical cores, {platform.system()} "
            f"{platform.machine()}")
    return f"{line}; CPU flags: {cpu_flags()}" if flags else line
