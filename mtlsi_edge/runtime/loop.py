"""The real-time loop: capture → Predictor → overlay → window / recording, with a HUD.

Ctrl-C and SIGTERM only set a flag; the loop then leaves through ``finally``, which releases
the video writer (so the recording is finalised and plays back) and the source.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

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


def run_loop(predictor, source: Source, layout: str = "grid", record: Path | None = None,
             headless: bool = True, max_frames: int | None = None, pace: bool = True,
             snapshot_dir: Path = Path("runs/demo"), window: str = "mtlsi-edge",
             on_frame=None, pipeline: bool = True, overwrite: bool = False,
             annotate: bool = True) -> LoopStats:
    """Run until the source ends, ``max_frames``, q/Esc, or SIGINT/SIGTERM.

    ``record``: written as a hidden partial file and moved into place when finished; an
    existing file there is replaced only with ``overwrite`` — when another program created it
    meanwhile, this recording keeps the next free name (``stats.recording`` says which).

    ``pipeline``: inference of frame N runs in a worker thread while frame N−1 is rendered,
    shown and written (runtimes release the GIL), at the cost of one frame of latency.

    ``annotate``: panel names, the depth colour bar and the class legend on the views
    (:class:`~mtlsi_edge.runtime.overlay.Renderer`).  A live source that drops is reconnected
    by the capture thread; the HUD and the stats count the gaps and the seconds lost.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    renderer = Renderer(predictor.task_set, annotate=annotate)
    grabber = LatestFrameGrabber(source, pace=pace)
    stats = LoopStats(stages_ms={k: [] for k in
                                 ("capture", "preprocess", "inference", "postprocess", "render")})
    state = {"writer": None, "layout": layout, "last_view": None, "written": 0}
    recent = deque(maxlen=30)
    # The HUD's render time: median of the last 30 frames (the median of the whole history,
    # recomputed every frame, cost 4 ms per frame after 10k frames).
    recent_render = deque(maxlen=30)
    pool = ThreadPoolExecutor(1, thread_name_prefix="infer") if pipeline else None
    pending = None  # (frame, future, capture wait ms) of the frame being inferred

    def emit(frame, raw, geom, tm, wait_ms: float) -> None:
        """Postprocess, render, annotate, record and count one inferred frame."""
        t1 = time.perf_counter()
        out = predictor.postprocess(raw, geom)
        t2 = time.perf_counter()
        tm.postprocess = 1e3 * (t2 - t1)
        view = renderer.render(frame, out, state["layout"])
        recent.append(time.perf_counter())
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0
        gaps = (f"  gaps {source.gaps} ({source.gap_s:.1f} s lost)" if source.gaps else "")
        draw_hud(view, [
            f"{fps:5.1f} FPS  {predictor.target} {predictor.precision}  "
            f"dropped {grabber.dropped}{gaps}",
            f"wait {wait_ms:4.1f}  pre {tm.preprocess:4.1f}  infer {tm.inference:5.1f}  "
            f"post {tm.postprocess:4.1f}  render "
            f"{statistics.median(recent_render) if recent_render else 0:4.1f} ms",
        ])
        t3 = time.perf_counter()
        for k, v in (("capture", wait_ms), ("preprocess", tm.preprocess),
                     ("inference", tm.inference), ("postprocess", tm.postprocess),
                     ("render", 1e3 * (t3 - t2))):
            stats.stages_ms[k].append(v)
        recent_render.append(1e3 * (t3 - t2))
        if record is not None:
            if state["writer"] is None:
                state["size"] = (view.shape[1], view.shape[0])
                # Written beside the destination and moved in once complete and checked:
                # an existing file there stays intact until then (kill, full disk).
                state["partial"] = record.with_name(
                    f".{record.stem}.partial-{os.getpid()}{record.suffix}")
                state["writer"] = open_writer(state["partial"], source.info.fps,
                                              state["size"])
                stats.recording = str(record)
            if (view.shape[1], view.shape[0]) != state["size"]:
                # A writer takes one size; it silently drops frames of any other (folders
                # of mixed image sizes).
                view = cv2.resize(view, state["size"], interpolation=cv2.INTER_AREA)
            state["writer"].write(view)
            state["written"] += 1
        stats.frames += 1
        state["last_view"] = view
        if on_frame is not None:
            on_frame(view, out)

    paused = False
    t_start = time.perf_counter()
    with _Stop() as stop:
        try:
            while stop.reason is None:
                queued = 1 if pending is not None else 0
                if max_frames is not None and stats.frames + queued >= max_frames:
                    stats.stopped_by = "max frames"
                    break
                if not paused:
                    t0 = time.perf_counter()
                    item = grabber.get_item(stop=stop)  # Ctrl-C ends a reconnect wait too
                    wait_ms = 1e3 * (time.perf_counter() - t0)
                    if item is None:
                        break
                    frame = item.frame
                    if pool is None:
                        emit(frame, *_infer(predictor, frame), wait_ms)
                    else:
                        fut = pool.submit(_infer, predictor, frame)
                        if pending is not None:
                            pf, pfut, pwait = pending
                            emit(pf, *pfut.result(), pwait)
                        pending = (frame, fut, wait_ms)
                if not headless:
                    if state["last_view"] is not None:
                        cv2.imshow(window, state["last_view"])
                    key = cv2.waitKey(1 if not paused else 30) & 0xFF
                    if key in (ord("q"), 27):
                        stats.stopped_by = "key"
                        break
                    if key == ord(" "):
                        paused = not paused
                    elif key in KEY_LAYOUTS:
                        state["layout"] = KEY_LAYOUTS[key]
                    elif key == ord("s") and state["last_view"] is not None:
                        snapshot_dir.mkdir(parents=True, exist_ok=True)
                        p = snapshot_dir / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}.png"
                        cv2.imwrite(str(p), state["last_view"])
                        stats.snapshots.append(str(p))
            if pending is not None and stop.reason is None:
                pf, pfut, pwait = pending  # the frame still in flight
                emit(pf, *pfut.result(), pwait)
            if stop.reason is not None:
                stats.stopped_by = stop.reason
        finally:
            stats.wall_s = time.perf_counter() - t_start
            stats.dropped = grabber.dropped
            stats.gaps, stats.gap_s = source.gaps, source.gap_s
            stats.reconnects = source.reconnects
            if pool is not None:
                pool.shutdown(wait=True)
            grabber.stop()
            if state["writer"] is not None:
                state["writer"].release()
            if not headless:
                cv2.destroyAllWindows()
    if state["writer"] is not None:
        try:
            check_recording(state["partial"], state["written"], record)
            stats.recording = str(_publish(state["partial"], record, overwrite))
        finally:
            state["partial"].unlink(missing_ok=True)
    return stats


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

