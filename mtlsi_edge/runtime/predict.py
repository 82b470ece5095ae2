"""``predict``: every frame of a source through the Predictor, its outputs written to files.

:func:`iter_predictions` is the Python interface (also ``Predictor.predict(source)``): a
generator of :class:`Prediction` — the frame, its place in the source and the outputs at frame
size — pipelined like the live loop (inference of frame N runs in a worker thread while frame
N−1 is postprocessed and handed to the caller).  :func:`run_predict` (the ``mtlsi-edge
predict`` command) consumes the same generator and writes, per frame, in a writer thread:

- segmentation: 8-bit *indexed* PNG — the pixel values are the class indices, the PNG palette
  (``PLTE``) is the task's palette, so viewers show colours and PIL/libpng give the indices;
  OpenCV cannot write one, so OpenCV's grayscale PNG is re-labelled as colour type 3 with the
  palette chunk added (OpenCV *reads* it as the palette's colours: :func:`read_labels` maps them
  back);
- depth: 16-bit PNG in millimetres (NYUD's convention; 0 = no value, saturates at 65.535 m),
  and with ``depth_npy`` float32 metres as ``.npy``;
- normals: 8-bit RGB PNG, ``round((n + 1) / 2 · 255)``, R = x, G = y, B = z (camera frame:
  x right, y down, z forward);
- boundary / saliency probability: 8-bit PNG, ``round(p · 255)``;
- with ``overlay``: the annotated 2×2 grid as JPEG.

Each file is written under a hidden temporary name and moved into place (``os.replace``), and
only then is the frame's line appended to ``predictions.jsonl`` (one ``write`` per line): a
frame counts as done for ``resume`` when its line is there and every file it lists exists with
the size the line records.  ``docs/predict.md`` documents the layout and formats.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import statistics
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.fileio import (
    OutputPathError,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    pid_alive,
)
from mtlsi_edge.runtime.capture import FrameItem, LatestFrameGrabber, Source
from mtlsi_edge.runtime.overlay import Renderer
from mtlsi_edge.runtime.sources import SourceOptions, parse_source

INDEX = "predictions.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
LOCK = ".predict.lock"
SCHEMA = "mtlsi-edge.predict@1"
DEPTH_SCALE = 1000.0  # PNG units per metre (millimetres)
OVERLAY_DIR = "overlay"
JPEG_QUALITY = 90


class PredictError(MtlsiError, RuntimeError):
    """A predict run that cannot start or go on; one line."""


# -- file formats -------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_indexed_png(labels: np.ndarray, palette_rgb) -> bytes:
    """``H×W`` uint8 class indices → an 8-bit indexed PNG with ``palette_rgb`` (K×3, RGB) as
    its palette (256 entries: unused ones black).  OpenCV compresses (its grayscale PNG, fast
    settings); the header's colour type becomes 3 (palette) and a ``PLTE`` chunk is added —
    the filtered, compressed pixel data of a grayscale and an indexed 8-bit PNG are the same."""
    labels = np.ascontiguousarray(labels, np.uint8)
    ok, buf = cv2.imencode(".png", labels)
    if not ok:
        raise PredictError("OpenCV could not encode a label PNG")
    data = buf.tobytes()
    # signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC)
    assert data[12:16] == b"IHDR" and data[25] == 0 and data[24] == 8, "unexpected PNG header"
    ihdr = bytearray(data[16:29])
    ihdr[9] = 3  # colour type: palette
    pal = np.zeros((256, 3), np.uint8)
    p = np.asarray(palette_rgb, np.uint8).reshape(-1, 3)[:256]
    pal[:len(p)] = p
    return data[:8] + _chunk(b"IHDR", bytes(ihdr)) + _chunk(b"PLTE", pal.tobytes()) + data[33:]


def png_palette(data: bytes) -> np.ndarray | None:
    """The ``PLTE`` chunk of PNG bytes as ``N×3`` RGB uint8 (None when there is none)."""
    pos = 8
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"PLTE":
            return np.frombuffer(data[pos + 8:pos + 8 + n], np.uint8).reshape(-1, 3)
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + n
    return None


def read_labels(path: str | Path) -> np.ndarray:
    """Class indices of an indexed label PNG written by ``predict``, with OpenCV only: OpenCV
    expands the palette to colours; each colour is mapped back to the first palette entry
    that has it (the classes' colours are distinct)."""
    data = Path(path).read_bytes()
    pal = png_palette(data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pal is None or bgr is None:
        raise PredictError(f"{path}: not an indexed PNG")
    keys = pal.astype(np.int64) @ np.array([65536, 256, 1])
    lut = np.zeros(1 << 24, np.uint8)
    lut[keys[::-1]] = np.arange(len(keys))[::-1].astype(np.uint8)  # first entry wins
    return lut[bgr.astype(np.int64) @ np.array([1, 256, 65536])]


def depth_png(depth_m: np.ndarray) -> np.ndarray:
    """Metres → uint16 millimetres (rounded; 0..65535)."""
    return np.clip(np.rint(depth_m * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def normals_png(n: np.ndarray) -> np.ndarray:
    """Unit normals (x, y, z) → uint8 ``round((n + 1) / 2 · 255)``, in OpenCV's BGR order so
    that the file's R, G, B hold x, y, z (one saturating, rounding OpenCV pass: 0.4 ms at
    480×640, the NumPy expression took 4 ms)."""
    u8 = cv2.convertScaleAbs(np.ascontiguousarray(n, np.float32), alpha=127.5, beta=127.5)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)


def probability_png(p: np.ndarray) -> np.ndarray:
    """Probability → uint8 ``round(p · 255)`` (saturating)."""
    return cv2.convertScaleAbs(np.ascontiguousarray(p, np.float32), alpha=255.0)


def _png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise PredictError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, np.ascontiguousarray(a, np.float32))
    return b.getvalue()


@dataclass(frozen=True)
class OutputFormats:
    """What ``predict`` writes per frame, besides one PNG per task."""

    depth_npy: bool = False  # float32 metres as .npy next to each metric PNG
    overlay: bool = False  # the annotated grid as JPEG

    def files(self, task_set, stem: str) -> dict[str, str]:
        """Key → path relative to the output folder, for one frame."""
        out = {}
        for t in task_set:
            out[t.name] = f"{t.name}/{stem}.png"
            if self.depth_npy and t.spec.output == "metres":
                out[f"{t.name}_npy"] = f"{t.name}/{stem}.npy"
        if self.overlay:
            out[OVERLAY_DIR] = f"{OVERLAY_DIR}/{stem}.jpg"
        return out


def describe_formats(task_set, formats: OutputFormats) -> dict:
    """The ``outputs`` record of ``run.json``: per file key, format and how to read it."""
    d: dict[str, dict] = {}
    for t in task_set:
        o = t.spec.output
        if o == "labels":
            d[t.name] = {"format": "PNG, 8-bit indexed: pixel = class index, PNG palette = "
                                   "class colours", "classes": list(t.class_names),
                         "palette": [list(c) for c in t.palette]}
        elif o == "metres":
            d[t.name] = {"format": "PNG, 16-bit", "unit": "mm", "scale": DEPTH_SCALE,
                         "invalid": 0, "max_m": 65535 / DEPTH_SCALE}
            if formats.depth_npy:
                d[f"{t.name}_npy"] = {"format": "NPY, float32", "unit": "m"}
        elif o == "unit_vectors":
            d[t.name] = {"format": "PNG, 8-bit RGB", "encoding": "round((n + 1) / 2 * 255), "
                         "R = x, G = y, B = z", "frame": "camera: x right, y down, z forward"}
        else:
            d[t.name] = {"format": "PNG, 8-bit", "encoding": "round(p * 255)"}
    if formats.overlay:
        d[OVERLAY_DIR] = {"format": f"JPEG, quality {JPEG_QUALITY}",
                          "content": "2x2 grid: segmentation, depth, normals, boundaries"}
    return d


def encode_frame(task_set, outputs: dict[str, np.ndarray], formats: OutputFormats,
                 frame: np.ndarray | None = None, renderer: Renderer | None = None
                 ) -> dict[str, bytes]:
    """The bytes of every file of one frame, keyed like :meth:`OutputFormats.files`."""
    data = {}
    for t in task_set:
        a, o = outputs[t.name], t.spec.output
        if o == "labels":
            data[t.name] = encode_indexed_png(a, t.palette)
        elif o == "metres":
            data[t.name] = _png(depth_png(a))
            if formats.depth_npy:
                data[f"{t.name}_npy"] = _npy(a)
        elif o == "unit_vectors":
            data[t.name] = _png(normals_png(a))
        else:
            data[t.name] = _png(probability_png(a))
    if formats.overlay and frame is not None and renderer is not None:
        ok, buf = cv2.imencode(".jpg", renderer.render(frame, outputs, "grid"),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        data[OVERLAY_DIR] = buf.tobytes()
    return data


_PARTIAL = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>\d+)")


def write_atomic(path: Path, data: bytes) -> int:
    """``data`` to a hidden ``.NAME.partial-PID`` beside ``path``, then ``os.replace``: a kill
    leaves the old file or the new one under ``path``, never a torn one."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:  # named by the file the user asked for, not the hidden one
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)


def sweep_partials(out: Path) -> int:
    """Remove the ``.NAME.partial-PID`` files that killed runs left under ``out``."""
    n = 0
    if not out.is_dir():
        return 0
    for p in out.rglob(".*.partial-*"):
        m = _PARTIAL.fullmatch(p.name)
        if m and p.is_file() and not pid_alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            n += 1
    return n


# -- the generator ------------------------------------------------------------------------------
@dataclass
class Prediction:
    """One frame of a source and the Predictor's outputs for it (at frame size)."""

    index: int  # frame number in the source (images: position in the sorted list)
    name: str  # the image's path, else the source's name
    stem: str  # the output name predict gives its files
    time: float  # Unix time the frame was read
    pos_s: float | None  # media time of a video frame
    frame: np.ndarray  # BGR uint8
    outputs: dict[str, np.ndarray]
    latency_ms: dict[str, float] = field(default_factory=dict)


def _infer(predictor, frame):
    t0 = time.perf_counter()
    x, geom = predictor.preprocess(frame)
    t1 = time.perf_counter()
    raw = predictor.runner(x)
    t2 = time.perf_counter()
    return raw, geom, 1e3 * (t1 - t0), 1e3 * (t2 - t1)


class _Done:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def iter_predictions(predictor, source, *, options: SourceOptions | None = None,
                     pipeline: bool = True, skip: Callable[[str], bool] | None = None,
                     max_frames: int | None = None, pace: bool = False,
                     stop: Callable[[], bool] | None = None) -> Iterator[Prediction]:
    """Predictions for every frame of ``source`` (a :class:`Source`, or anything
    :func:`~mtlsi_edge.runtime.sources.parse_source` takes, opened with ``options``).

    Files and folders are read completely (the reader waits for inference: no frame is
    dropped, unless ``pace``); live sources keep only the newest frame (stale ones dropped,
    counted in ``source.dropped``).  ``pipeline``: frame N is inferred in a worker thread while
    frame N−1 is postprocessed and yielded.  ``skip(stem)``: frames not to predict
    (``resume``).  ``stop()`` true ends the iteration after the frame in hand.  Unreadable
    images are skipped and listed in ``source.skipped``.  The source is released when the
    generator ends or is closed.
    """
    own = not isinstance(source, Source)
    src = Source(source, options=options) if own else source
    grabber = LatestFrameGrabber(src, pace=pace, skip=skip)
    pool = ThreadPoolExecutor(1, thread_name_prefix="infer") if pipeline else None
    pending = None
    done = 0

    def finish(item: FrameItem, fut, wait_ms: float) -> Prediction:
        raw, geom, pre_ms, inf_ms = fut.result()
        t0 = time.perf_counter()
        out = predictor.postprocess(raw, geom)
        post_ms = 1e3 * (time.perf_counter() - t0)
        return Prediction(item.index, item.name, item.stem, item.wall, item.pos_s, item.frame,
                          out, {"wait": wait_ms, "preprocess": pre_ms, "inference": inf_ms,
                                "postprocess": post_ms})

    try:
        while True:
            if max_frames is not None and done + (pending is not None) >= max_frames:
                break
            if stop is not None and stop():
                break
            t0 = time.perf_counter()
            item = grabber.get_item(stop=stop)
            wait_ms = 1e3 * (time.perf_counter() - t0)
            if item is None:
                break
            if pool is None:
                done += 1
                yield finish(item, _Done(_infer(predictor, item.frame)), wait_ms)
                continue
            fut = pool.submit(_infer, predictor, item.frame)
            if pending is not None:
                done += 1
                yield finish(*pending)
            pending = (item, fut, wait_ms)
        if pending is not None:
            p, pending = pending, None
            yield finish(*p)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        grabber.stop()
        src.dropped = grabber.dropped
        if own:
            src.release()


# -- stop on SIGINT / SIGTERM -------------------------------------------------------------------
class StopSignals:
    """SIGINT/SIGTERM → a flag (``reason``), handlers restored on exit; outside the main
    thread it installs nothing (the caller stops the run)."""

    def __init__(self):
        self.reason: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, _frame):
        self.reason = signal.Signals(signum).name

    def __call__(self) -> bool:
        return self.reason is not None

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


# -- the output folder --------------------------------------------------------------------------
def output_names(task_names) -> list[str]:
    return [INDEX, RUN, *task_names, OVERLAY_DIR]


def check_out_dir(out: str | Path, task_names, exist_ok: bool, resume: bool) -> Path:
    """``out`` can hold this run: a folder (or none yet) in a writable place; one that holds an
    earlier run's outputs only with ``resume`` or ``exist_ok``."""
    out = check_output_dir(out, "--out folder")
    if exist_ok and resume:
        raise OutputPathError("give --resume or --exist-ok, not both")
    if out.is_dir() and not (exist_ok or resume):
        found = [n for n in output_names(task_names) if (out / n).exists()]
        if found:
            raise OutputPathError(f"{out}: holds an earlier predict run ({', '.join(found[:3])}"
                                  f"{' …' if len(found) > 3 else ''}); refusing to replace it "
                                  f"(pass --resume to continue it, or --exist-ok)")
    return out


class _Lock:
    """``out/.predict.lock`` holding our pid: a second run into the same folder is refused
    while the first is alive; a dead one's lock is taken over."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.held = False

    def __enter__(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and pid_alive(pid):
                    raise PredictError(f"{self.path.parent}: another predict (pid {pid}) is "
                                       f"writing here") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise PredictError(f"{self.path}: cannot take the lock")

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)


def _done_records(out: Path, lines: list[str], expected: Callable[[str], dict[str, str]]
                  ) -> dict[str, dict]:
    """Index lines whose frame is complete: every file the current run would write for it is
    listed, exists and has the recorded size (later lines of a stem win)."""
    done: dict[str, dict] = {}
    for ln in lines:
        try:
            rec = json.loads(ln)
            stem, files, sizes = rec["stem"], rec["files"], rec["bytes"]
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line
        want = expected(stem)
        ok = all(files.get(k) == rel and _size(out / rel) == sizes.get(k)
                 for k, rel in want.items())
        if ok:
            done.pop(stem, None)
            done[stem] = rec
        else:
            done.pop(stem, None)
    return done


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None


# -- the run ------------------------------------------------------------------------------------
@dataclass
class PredictStats:
    out: Path
    frames: int = 0  # written by this run
    resumed: int = 0  # found complete and not redone
    unreadable: list[str] = field(default_factory=list)
    dropped: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    reconnects: int = 0
    wall_s: float = 0.0
    bytes: int = 0
    stopped_by: str = "end of source"
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    total: int | None = None  # frames the source holds, when known

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.latency_ms.items() if v}

    def to_dict(self) -> dict:
        return {"frames": self.frames, "resumed": self.resumed, "fps": round(self.fps, 2),
                "wall_s": round(self.wall_s, 3), "bytes": self.bytes,
                "unreadable": self.unreadable, "dropped": self.dropped,
                "gaps": self.gaps, "gap_s": round(self.gap_s, 3),
                "reconnects": self.reconnects, "stopped_by": self.stopped_by,
                "median_latency_ms": {k: round(v, 2) for k, v in self.medians().items()},
                "notes": self.notes}


class _Writer:
    """Encodes and writes frames in its own thread, in order; appends each frame's index line
    once its files are in place.  A failure (disk full) is raised to the producer."""

    def __init__(self, out: Path, task_set, formats: OutputFormats, stats: PredictStats,
                 on_written: Callable[[dict], None] | None, depth: int = 3):
        self.out, self.task_set, self.formats, self.stats = out, task_set, formats, stats
        self.on_written = on_written
        self.renderer = Renderer(task_set, annotate=True) if formats.overlay else None
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._dirs: set[Path] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.thread.start()

    def put(self, pred: Prediction) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.q.put(pred, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        while self.thread.is_alive():
            try:
                self.q.put(None, timeout=0.2)
                break
            except queue.Full:
                if self.error is not None:
                    break
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while True:
                pred = self.q.get()
                if pred is None:
                    return
                if self.error is None:
                    self._write(pred)
        except BaseException as e:  # handed to the producer
            self.error = e
            while True:  # unblock the producer; drop what is queued
                try:
                    if self.q.get_nowait() is None:
                        return
                except queue.Empty:
                    time.sleep(0.05)
                    if not threading.main_thread().is_alive():
                        return

    def _write(self, p: Prediction) -> None:
        t0 = time.perf_counter()
        rel = self.formats.files(self.task_set, p.stem)
        data = encode_frame(self.task_set, p.outputs, self.formats, p.frame, self.renderer)
        sizes = {}
        for k, r in rel.items():
            path = self.out / r
            if path.parent not in self._dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(path.parent)
            sizes[k] = write_atomic(path, data[k])
        write_ms = 1e3 * (time.perf_counter() - t0)
        lat = {**p.latency_ms, "write": write_ms,
               "total": 1e3 * (time.time() - p.time)}
        rec = {"frame": p.index, "source": p.name, "stem": p.stem, "time": round(p.time, 3),
               "pos_s": None if p.pos_s is None else round(p.pos_s, 4),
               "size": [int(p.frame.shape[0]), int(p.frame.shape[1])], "files": rel,
               "bytes": sizes, "latency_ms": {k: round(v, 2) for k, v in lat.items()}}
        append_jsonl(self.out / INDEX, rec)
        with self.lock:
            self.stats.frames += 1
            self.stats.bytes += sum(sizes.values())
            for k, v in lat.items():
                self.stats.latency_ms.setdefault(k, []).append(v)
        if self.on_written is not None:
            self.on_written(rec)


def _norm_spec(spec: str) -> str:
    s = str(spec)
    return os.path.normpath(s) if os.path.exists(s) else s


@dataclass(frozen=True)
class PredictOptions:
    """How :func:`run_predict` reads a source and what it writes into the output folder.

    Reading:
    source_options: how to open the source (camera mode, reconnecting, looping:
      :class:`~mtlsi_edge.runtime.sources.SourceOptions`).
    max_frames: stop after this many frames written by this run (``None``: the whole source).
    pipeline: frame N is inferred in a worker thread while frame N−1 is postprocessed and
      written.

    Writing:
    formats: what is written per frame besides one PNG per task (:class:`OutputFormats`).
    exist_ok: write into a folder holding an earlier run, replacing its files.
    resume: continue the run in the folder (same source and bundle): frames already written
      completely are not predicted again.
    bundle: the bundle's path, recorded in ``run.json`` (``None``: not known).
    """

    source_options: SourceOptions = SourceOptions()
    max_frames: int | None = None
    pipeline: bool = True

    formats: OutputFormats = OutputFormats()
    exist_ok: bool = False
    resume: bool = False
    bundle: str | Path | None = None


def run_predict(predictor, source: str | int, out: str | Path,
                options: PredictOptions | None = None, *,
                on_start: Callable[[Source, PredictStats], None] | None = None,
                on_written: Callable[[dict], None] | None = None) -> PredictStats:
    """Predict every frame of ``source`` into the folder ``out`` (module docstring; the
    ``mtlsi-edge predict`` command) as ``options`` say (:class:`PredictOptions`).
    ``on_start(source, stats)`` is called once the source is open (``stats.resumed``,
    ``stats.total`` set); ``on_written(index_record)`` after each frame.  Raises
    :class:`~mtlsi_edge.fileio.OutputPathError` for an output folder that holds an earlier run
    (without ``resume``/``exist_ok``) or another run's source/bundle (with ``resume``), and
    :class:`~mtlsi_edge.runtime.sources.CaptureError` for sources."""
    options = options or PredictOptions()
    ts = predictor.task_set
    parsed = parse_source(source, options.source_options)  # before anything is written
    out = check_out_dir(out, ts.names, options.exist_ok, options.resume)
    run_doc = _run_doc(predictor, parsed, options)
    done: dict[str, dict] = {}
    if options.resume and (out / INDEX).exists():
        done = _resumed_records(out, run_doc, lambda s: options.formats.files(ts, s))
    # A live source's frames are numbered on from the last one written: its stems never repeat.
    start_index = (1 + max(int(r.get("frame", -1)) for r in done.values())
                   if parsed.live and done else 0)
    # The source opens before anything is written: a camera that is not there leaves no trace.
    src = Source(parsed.spec, options=options.source_options, start_index=start_index)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _Lock(out):
            stats = _start(out, src, parsed, run_doc, done)
            if on_start is not None:
                on_start(src, stats)
            done_stems = frozenset(done) if not parsed.live else frozenset()
            return _run(predictor, src, stats, done_stems, options, on_written)
    finally:
        src.release()


def _run_doc(predictor, parsed, options: PredictOptions) -> dict:
    """The ``run.json`` document: what produced the folder (source, bundle, target) and what
    it holds."""
    ts = predictor.task_set
    manifest = getattr(predictor, "manifest", {}) or {}
    bundle = options.bundle
    return {
        "schema": SCHEMA, "source": _norm_spec(parsed.spec), "source_kind": parsed.kind,
        "bundle": None if bundle is None else str(bundle),
        "bundle_integrity": manifest.get("integrity"),
        "target": getattr(predictor, "target", None),
        "precision": getattr(predictor, "precision", None),
        "task_set": ts.name, "outputs": describe_formats(ts, options.formats),
        "index": INDEX,
    }


def _resumed_records(out: Path, run_doc: dict, expected: Callable[[str], dict[str, str]]
                     ) -> dict[str, dict]:
    """The complete frames of the run in ``out`` (stem → index record), after checking that
    it predicted the same source with the same bundle."""
    prev = _read_run(out)
    for key, what in (("source", "source"), ("bundle_integrity", "bundle")):
        if prev is not None and prev.get(key) != run_doc[key]:
            shown = prev.get("bundle") if key == "bundle_integrity" else prev.get(key)
            raise OutputPathError(
                f"{out}: holds predictions of another {what} ({shown}); resume with the "
                f"same one, or use another --out (or --exist-ok)")
    lines = (out / INDEX).read_text(encoding="utf-8", errors="replace").splitlines()
    return _done_records(out, lines, expected)


def _start(out: Path, src: Source, parsed, run_doc: dict, done: dict[str, dict]
           ) -> PredictStats:
    """Write the fresh index (the frames done) and ``run.json``; the run's stats so far."""
    sweep_partials(out)
    # The index keeps one complete line per frame: torn, duplicate and incomplete frames'
    # lines go (their frames are predicted again); a new run starts an empty one.
    atomic_write_text(out / INDEX, "".join(json.dumps(r) + "\n" for r in done.values()))
    atomic_write_json(out / RUN, run_doc)
    stats = PredictStats(out)
    if parsed.images:
        stats.resumed = len(set(done) & set(parsed.stems))
    else:
        stats.resumed = 0 if parsed.live else len(done)
    stats.notes.extend(src.notes)
    stats.total = src.info.frames
    return stats


def _run(predictor, src: Source, stats: PredictStats, done_stems: frozenset[str],
         options: PredictOptions, on_written: Callable[[dict], None] | None) -> PredictStats:
    """Predict and write every frame not in ``done_stems``, then the summary; an error (or
    Ctrl-C) is raised once the frames predicted so far are written."""
    writer = _Writer(stats.out, predictor.task_set, options.formats, stats, on_written)
    max_frames = options.max_frames
    t0 = time.perf_counter()
    error: BaseException | None = None
    with StopSignals() as stop:
        gen = iter_predictions(predictor, src, pipeline=options.pipeline,
                               skip=(done_stems.__contains__ if done_stems else None),
                               max_frames=max_frames, stop=stop)
        try:
            n = 0
            for pred in gen:
                writer.put(pred)
                n += 1
            if stop.reason is not None:
                stats.stopped_by = stop.reason
            elif max_frames is not None and n >= max_frames:
                stats.stopped_by = "max frames"
        except BaseException as e:
            error = e
        finally:
            gen.close()
            try:
                writer.close()
            except BaseException as e:
                error = error or e
    stats.wall_s = time.perf_counter() - t0
    _finish(stats, src, error)
    return stats


def _finish(stats: PredictStats, src: Source, error: BaseException | None) -> None:
    """Fill in what the source counted and write ``summary.json``; re-raise the run's error
    (which takes precedence over one writing the summary)."""
    stats.unreadable = list(src.skipped)
    stats.dropped = src.dropped
    stats.gaps, stats.gap_s, stats.reconnects = src.gaps, src.gap_s, src.reconnects
    if error is not None:
        stats.stopped_by = f"error: {error}"
    try:
        atomic_write_json(stats.out / SUMMARY, {"schema": SCHEMA, **stats.to_dict()})
    except OSError:
        if error is None:
            raise
    if error is not None:
        raise error


def _read_run(out: Path) -> dict | None:
    try:
        doc = json.loads((out / RUN).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None
