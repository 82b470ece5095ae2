"""Atomic writes, checksums and schema-checked JSON reads shared by every artifact writer
(checkpoints, bundles, calibration caches, reports)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mtlsi_edge.errors import MtlsiError


class OutputPathError(MtlsiError, ValueError):
    """An output path that cannot be written as asked; checked before any work starts."""


def _first_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(".")


def _check_place(path: Path, shown: Path | None = None) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    anc = _first_existing(path.parent)
    if not anc.is_dir():
        raise OutputPathError(f"{shown or path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputPathError(f"{shown or path}: no permission to write in {anc}")


def check_output_file(path: str | Path, suffixes: Iterable[str] = (), what: str = "output"
                      ) -> Path:
    """``path`` can be written as a file: not a folder, a known suffix, a writable place."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; the {what} must be a file path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{path}: the {what} must end in {' or '.join(suffixes)}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{path}: no permission to overwrite it")
    _check_place(path)
    return path


def refuse_existing(paths: Iterable[str | Path], overwrite: bool = False) -> None:
    """The one output-path policy for files a command writes under names the user chose:
    an existing file is never replaced unless the user says ``--overwrite``."""
    if overwrite:
        return
    for p in paths:
        p = Path(p)
        if p.exists() or p.is_symlink():
            raise OutputPathError(f"{p}: exists; refusing to replace it (pass --overwrite)")


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` can be used as a folder: not a file, in a writable place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file; the {what} must be a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{path}: no permission to write in it")
    else:
        _check_place(path / "x", path)
    return path


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_name)`` on a temp file next to ``path``, then ``os.replace`` it in.

    A crash leaves either the old file or the new one, never a torn one.  Permissions follow
    the umask (``mkstemp`` alone would make every artifact 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_files(path: str | Path, write: Callable[[str], None],
                       companions: Iterable[str] = ()) -> Path:
    """Like :func:`atomic_write` for a file that comes with companions written beside it under
    the same stem (an OpenVINO ``.xml`` and its ``.bin``): ``write(tmp)`` writes ``tmp`` and
    ``tmp`` with each companion suffix; companions are moved in first, ``path`` last."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")) / path.name
    try:
        write(str(tmp))
        for f in [tmp.with_suffix(c) for c in companions] + [tmp]:
            os.chmod(f, 0o666 & ~_umask())
            os.replace(f, path.with_suffix(f.suffix) if f != tmp else path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def replace_dir(stage: str | Path, dst: str | Path) -> Path:
    """Move the finished folder ``stage`` to ``dst`` on the same filesystem, replacing a
    previous ``dst``: that one is renamed aside first and removed after, so a reader sees the
    old folder or the new one, never a mix (``dst`` is absent only between two renames)."""
    stage, dst = Path(stage), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(dst, old)
        os.replace(stage, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, dst)
    return dst


def append_jsonl(path: str | Path, obj: Any) -> Path:
    """Append ``obj`` as one JSON line to a log, in a single ``write`` on an ``O_APPEND``
    descriptor: concurrent writers never interleave within a line, and a crash loses at most
    the last line (logs are journals, not replaced atomically)."""
    path = Path(path)
    line = (json.dumps(obj) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def read_json_doc(path: Path, schema: str, required: Iterable[str],
                  error: type[Exception], what: str) -> dict:
    """A JSON object with ``"schema": schema`` and the ``required`` keys, else ``error`` with
    one line naming ``path`` (``what`` names the document in the message)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: unreadable {what} ({e})") from None
    found = doc.get("schema") if isinstance(doc, dict) else "?"
    if found != schema:
        raise error(f"{path}: {what} schema {found} is not {schema}")
    for key in required:
        if key not in doc:
            raise error(f"{path}: {what} lacks {key!r}")
    return doc


def next_free_path(folder: str | Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``folder/stem-2.suffix``, ``-3``… : the first that does not
    exist yet (outputs named by the tool never overwrite an earlier one)."""
    folder = Path(folder)
    path, k = folder / f"{stem}{suffix}", 2
    while path.exists() or path.is_symlink():
        path, k = folder / f"{stem}-{k}{suffix}", k + 1
    return path


def display_path(p: str | Path) -> str:
    """A path as the user would type it here: relative to the working directory when under
    it, else just its name (reports must not carry one machine's absolute paths)."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return p.name


#: Hidden staging names of this package's atomic writes: ``.NAME.partial-PID-…`` (bundle
#: stages), ``.NAME.old-PID-…`` (the bundle being replaced), ``.STEM.partial-PID.EXT``
#: (recordings).
_STAGE = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)(?:-.*)?")
_REC_STAGE = re.compile(r"\.(?P<stem>.+)\.partial-(?P<pid>\d+)(?P<suffix>\.[^.]+)")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_stages(out: Path) -> None:
    """The one sweep of what killed writers left beside ``out``: staging folders of bundles
    (if a kill came between moving the old bundle aside and the new one in, the old one is
    put back first) and partial recordings, whose process is gone."""
    out = Path(out)
    if not out.parent.is_dir():
        return
    for d in sorted(out.parent.iterdir()):
        m = _STAGE.fullmatch(d.name)
        if m and m["name"] == out.name and d.is_dir() and not pid_alive(int(m["pid"])):
            if ".old-" in d.name and not out.exists():
                d.rename(out)
            else:
                shutil.rmtree(d, ignore_errors=True)
            continue
        r = _REC_STAGE.fullmatch(d.name)
        if (r and r["stem"] == out.stem and r["suffix"] == out.suffix and d.is_file()
                and not pid_alive(int(r["pid"]))):
            d.unlink(missing_ok=True)
