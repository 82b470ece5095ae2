"""The real-time loop: capture → Predictor → overlay → window / recording, with a HUD.

Ctrl-C and SIGTERM only set a flag; the loop then leaves through ``finally``, which releases
the video writer (so the recording is finalised and plays back) and the source.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.runtime.capture import LatestFrameGrabber, Source
from mtlsi_edge.runtime.overlay import LAYOUTS, Renderer, draw_hud
from mtlsi_edge.runtime.predict import StopSignals
from mtlsi_edge.runtime.predictor import Timings

KEY_LAYOUTS = {ord(str(i + 1)): name for i, name in enumerate(LAYOUTS)}


def display_available() -> bool:
    """True when a window can be opened.  OpenCV's Qt build aborts the whole process when it
    has no display, so this must be known before the first ``imshow``."""
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return True
    disp = os.environ.get("DISPLAY", "")
    if not disp and not os.environ.get("WAYLAND_DISPLAY"):
        return False
    if disp.startswith(":"):
        num = disp[1:].split(".")[0]
        return os.path.exists(f"/tmp/.X11-unix/X{num}")
    return bool(disp or os.environ.get("WAYLAND_DISPLAY"))


@dataclass
class LoopStats:
    frames: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    recording: str | None = None
    snapshots: list[str] = field(default_factory=list)
    stopped_by: str = "end of source"
    gaps: int = 0  # outages of a live source it came back from (or the last one, if not)
    gap_s: float = 0.0  # seconds lost in them
    reconnects: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.stages_ms.items() if v}


_Stop = StopSignals  # SIGINT/SIGTERM → a flag (restored on exit)


class RecordingError(MtlsiError, OSError):
    """A recording that could not be written completely."""


def open_writer(path: Path, fps: float, size_wh: tuple[int, int]) -> cv2.VideoWriter:
    """An mp4v (.mp4) or MJPG (.avi) writer; H.264 writers fail in the pip OpenCV builds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    w = cv2.VideoWriter(str(path), fourcc, fps, size_wh)
    if not w.isOpened():
        raise RecordingError(f"{path}: cannot open a video writer (use .mp4 or .avi)")
    return w


def _infer(predictor, frame):
    """Preprocess and run one frame (the worker thread's share); postprocessing happens on the
    loop's thread, next to rendering, so that the two threads' work is balanced (at 480×640
    the worker was the limit at 50 FPS with it, measured)."""
    t0 = time.perf_counter()
    x, geom = predictor.preprocess(frame)
    t1 = time.perf_counter()
    raw = predictor.runner(x)
    t2 = time.perf_counter()
    return raw, geom, Timings(1e3 * (t1 - t0), 1e3 * (t2 - t1))


@dataclass(frozen=True)
class LoopOptions:
    """How :func:`run_loop` shows, records and paces the frames, and when it stops.

    View:
    layout: the view it starts with (one of :data:`LAYOUTS`; keys 1-6 switch it).
    annotate: panel names, the depth colour bar and the class legend on the views
      (:class:`~mtlsi_edge.runtime.overlay.Renderer`).
    headless: no window (and so no keys); ``window`` is the window's title.
    snapshot_dir: where the s key saves the view shown.

    Recording:
    record: the rendered views as a video (.mp4 or .avi), written as a hidden partial file and
      moved into place when finished and read back.
    overwrite: replace an existing ``record`` file; without it, when another program created
      one meanwhile, this recording keeps the next free name (``stats.recording`` says which).

    Pacing and stopping:
    pace: deliver a video file at its frame rate, as a camera would (frames the loop is too
      slow for are dropped); ``False`` waits for the loop (maximum throughput).
    pipeline: inference of frame N runs in a worker thread while frame N−1 is rendered, shown
      and written (runtimes release the GIL), at the cost of one frame of latency.
    max_frames: stop after this many frames (``None``: at the end of the source).
    """

    layout: str = "grid"
    annotate: bool = True
    headless: bool = True
    window: str = "mtlsi-edge"
    snapshot_dir: Path = Path("runs/demo")

    record: Path | None = None
    overwrite: bool = False

    pace: bool = True
    pipeline: bool = True
    max_frames: int | None = None


def run_loop(predictor, source: Source, options: LoopOptions | None = None, *,
             on_frame: Callable[[np.ndarray, dict], None] | None = None) -> LoopStats:
    """Run until the source ends, ``options.max_frames``, q/Esc, or SIGINT/SIGTERM
    (:class:`LoopOptions`); ``on_frame(view, outputs)`` is called after each frame.

    A live source that drops is reconnected by the capture thread; the HUD and the stats count
    the gaps and the seconds lost.
    """
    options = options or LoopOptions()
    if options.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {options.layout!r}; choose from {', '.join(LAYOUTS)}")
    loop = _Loop(predictor, source, options, on_frame)
    t_start = time.perf_counter()
    with _Stop() as stop:
        try:
            loop.run(stop)
        finally:
            loop.close(time.perf_counter() - t_start)
    loop.publish()
    return loop.stats


class _Loop:
    """The state of one :func:`run_loop`: renderer, capture thread, inference worker, the
    recording being written and the HUD's recent frame times."""

    def __init__(self, predictor, source: Source, options: LoopOptions, on_frame):
        self.predictor, self.source, self.options = predictor, source, options
        self.on_frame = on_frame
        self.renderer = Renderer(predictor.task_set, annotate=options.annotate)
        self.grabber = LatestFrameGrabber(source, pace=options.pace)
        self.stats = LoopStats(stages_ms={k: [] for k in ("capture", "preprocess",
                                                          "inference", "postprocess",
                                                          "render")})
        self.layout = options.layout
        self.last_view = None
        self.writer: cv2.VideoWriter | None = None
        self.partial: Path | None = None  # the recording until it is complete
        self.size: tuple[int, int] | None = None  # the recording's (width, height)
        self.written = 0
        self.recent: deque[float] = deque(maxlen=30)
        # The HUD's render time: median of the last 30 frames (the median of the whole history,
        # recomputed every frame, cost 4 ms per frame after 10k frames).
        self.recent_render: deque[float] = deque(maxlen=30)
        self.pool = (ThreadPoolExecutor(1, thread_name_prefix="infer") if options.pipeline
                     else None)
        self.pending = None  # (frame, future, capture wait ms) of the frame being inferred
        self.paused = False

    def run(self, stop: StopSignals) -> None:
        """Read, infer and show frames until a stop condition; the frame still in flight is
        finished unless a signal ended the run."""
        max_frames = self.options.max_frames
        while stop.reason is None:
            queued = 1 if self.pending is not None else 0
            if max_frames is not None and self.stats.frames + queued >= max_frames:
                self.stats.stopped_by = "max frames"
                break
            if not self.paused and not self._advance(stop):
                break
            if not self.options.headless and self._show_and_read_key():
                break
        if self.pending is not None and stop.reason is None:
            pf, pfut, pwait = self.pending  # the frame still in flight
            self.emit(pf, *pfut.result(), pwait)
        if stop.reason is not None:
            self.stats.stopped_by = stop.reason

    def _advance(self, stop: StopSignals) -> bool:
        """Take the next frame and start its inference, emitting the frame inferred before it
        (pipelined) or this one (sequential); False when the source has ended."""
        t0 = time.perf_counter()
        item = self.grabber.get_item(stop=stop)  # Ctrl-C ends a reconnect wait too
        wait_ms = 1e3 * (time.perf_counter() - t0)
        if item is None:
            return False
        frame = item.frame
        if self.pool is None:
            self.emit(frame, *_infer(self.predictor, frame), wait_ms)
        else:
            fut = self.pool.submit(_infer, self.predictor, frame)
            if self.pending is not None:
                pf, pfut, pwait = self.pending
                self.emit(pf, *pfut.result(), pwait)
            self.pending = (frame, fut, wait_ms)
        return True

    def _show_and_read_key(self) -> bool:
        """Show the newest view and act on a key (pause, layout, snapshot); True for q/Esc."""
        if self.last_view is not None:
            cv2.imshow(self.options.window, self.last_view)
        key = cv2.waitKey(1 if not self.paused else 30) & 0xFF
        if key in (ord("q"), 27):
            self.stats.stopped_by = "key"
            return True
        if key == ord(" "):
            self.paused = not self.paused
        elif key in KEY_LAYOUTS:
            self.layout = KEY_LAYOUTS[key]
        elif key == ord("s") and self.last_view is not None:
            snapshot_dir = self.options.snapshot_dir
            snapshot_dir.mkdir(parents=True, exist_ok=True)
            p = snapshot_dir / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}.png"
            cv2.imwrite(str(p), self.last_view)
            self.stats.snapshots.append(str(p))
        return False

    def emit(self, frame, raw, geom, tm: Timings, wait_ms: float) -> None:
        """Postprocess, render, annotate, record and count one inferred frame."""
        t1 = time.perf_counter()
        out = self.predictor.postprocess(raw, geom)
        t2 = time.perf_counter()
        tm.postprocess = 1e3 * (t2 - t1)
        view = self.renderer.render(frame, out, self.layout)
        self._draw_hud(view, tm, wait_ms)
        t3 = time.perf_counter()
        for k, v in (("capture", wait_ms), ("preprocess", tm.preprocess),
                     ("inference", tm.inference), ("postprocess", tm.postprocess),
                     ("render", 1e3 * (t3 - t2))):
            self.stats.stages_ms[k].append(v)
        self.recent_render.append(1e3 * (t3 - t2))
        if self.options.record is not None:
            view = self._record(view)
        self.stats.frames += 1
        self.last_view = view
        if self.on_frame is not None:
            self.on_frame(view, out)

    def _draw_hud(self, view, tm: Timings, wait_ms: float) -> None:
        """The two HUD lines: frame rate, model, drops and gaps; per-stage milliseconds."""
        recent, source, predictor = self.recent, self.source, self.predictor
        recent.append(time.perf_counter())
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0
        gaps = (f"  gaps {source.gaps} ({source.gap_s:.1f} s lost)" if source.gaps else "")
        draw_hud(view, [
            f"{fps:5.1f} FPS  {predictor.target} {predictor.precision}  "
            f"dropped {self.grabber.dropped}{gaps}",
            f"wait {wait_ms:4.1f}  pre {tm.preprocess:4.1f}  infer {tm.inference:5.1f}  "
            f"post {tm.postprocess:4.1f}  render "
            f"{statistics.median(self.recent_render) if self.recent_render else 0:4.1f} ms",
        ])

    def _record(self, view):
        """Append ``view`` to the recording (opened at the first frame); returns the view as
        written."""
        record = self.options.record
        if self.writer is None:
            self.size = (view.shape[1], view.shape[0])
            # Written beside the destination and moved in once complete and checked: an
            # existing file there stays intact until then (kill, full disk).
            self.partial = record.with_name(
                f".{record.stem}.partial-{os.getpid()}{record.suffix}")
            self.writer = open_writer(self.partial, self.source.info.fps, self.size)
            self.stats.recording = str(record)
        if (view.shape[1], view.shape[0]) != self.size:
            # A writer takes one size; it silently drops frames of any other (folders of mixed
            # image sizes).
            view = cv2.resize(view, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(view)
        self.written += 1
        return view

    def close(self, wall_s: float) -> None:
        """Fill in the run's totals and release the worker, the capture thread, the writer
        and the window, whatever ended the run."""
        stats, source = self.stats, self.source
        stats.wall_s = wall_s
        stats.dropped = self.grabber.dropped
        stats.gaps, stats.gap_s = source.gaps, source.gap_s
        stats.reconnects = source.reconnects
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.grabber.stop()
        if self.writer is not None:
            self.writer.release()
        if not self.options.headless:
            cv2.destroyAllWindows()

    def publish(self) -> None:
        """Check the finished recording and move it into place (the partial file never
        stays behind)."""
        if self.writer is None:
            return
        record = self.options.record
        try:
            check_recording(self.partial, self.written, record)
            self.stats.recording = str(_publish(self.partial, record, self.options.overwrite))
        finally:
            self.partial.unlink(missing_ok=True)


def _publish(partial: Path, record: Path, overwrite: bool) -> Path:
    """Move a finished recording to ``record``; without ``overwrite`` never onto an existing
    file (a hard link fails when the name is taken, atomically): then the next free name."""
    if overwrite:
        os.replace(partial, record)
        return record
    for i in range(1, 1000):
        dst = record if i == 1 else record.with_name(f"{record.stem}-{i}{record.suffix}")
        try:
            os.link(partial, dst)
        except FileExistsError:
            continue
        partial.unlink()
        return dst
    raise RecordingError(f"{record}: no free name for the recording")


def check_recording(path: Path, written: int, shown: Path | None = None) -> None:
    """Read the finished recording back: the writer reports no failed write (a full disk or
    a file-size limit leaves an empty or short file), so count what is really there."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    if n < written:
        raise RecordingError(f"{shown or path}: recording holds {n} of {written} frames (disk "
                             f"full or file-size limit?); not written")

