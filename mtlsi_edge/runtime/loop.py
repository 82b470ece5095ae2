"""The real-time loop: capture → Predictor → overlay → window / recording, with a HUD.

Ctrl-C and SIGTERM only set a flag; the loop then leaves through ``finally``, which releases
the video writer (so the recording is finalised and plays back) and the source.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.runtime.capture import LatestFrameGrabber, Source
from mtlsi_edge.runtime.overlay import LAYOUTS, Renderer, draw_hud

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

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.stages_ms.items() if v}


class _Stop:
    """SIGINT/SIGTERM → a flag (restored on exit)."""

    def __init__(self):
        self.reason: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: rely on the caller
                pass
        return self

    def _handle(self, signum, _frame):
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def open_writer(path: Path, fps: float, size_wh: tuple[int, int]) -> cv2.VideoWriter:
    """An mp4v (.mp4) or MJPG (.avi) writer; H.264 writers fail in the pip OpenCV builds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    w = cv2.VideoWriter(str(path), fourcc, fps, size_wh)
    if not w.isOpened():
        raise OSError(f"{path}: cannot open a video writer (use .mp4 or .avi)")
    return w


def run_loop(predictor, source: Source, layout: str = "grid", record: Path | None = None,
             headless: bool = True, max_frames: int | None = None, pace: bool = True,
             snapshot_dir: Path = Path("runs/demo"), window: str = "mtlsi-edge",
             on_frame=None) -> LoopStats:
    """Run until the source ends, ``max_frames``, q/Esc, or SIGINT/SIGTERM."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    renderer = Renderer(predictor.task_set)
    grabber = LatestFrameGrabber(source, pace=pace)
    stats = LoopStats(stages_ms={k: [] for k in
                                 ("capture", "preprocess", "inference", "postprocess", "render")})
    writer = None
    paused = False
    last_view = None
    recent = deque(maxlen=30)
    t_start = time.perf_counter()
    with _Stop() as stop:
        try:
            while stop.reason is None:
                if max_frames is not None and stats.frames >= max_frames:
                    stats.stopped_by = "max frames"
                    break
                if not paused:
                    t0 = time.perf_counter()
                    frame = grabber.get()
                    t1 = time.perf_counter()
                    if frame is None:
                        break
                    out = predictor(frame)
                    t2 = time.perf_counter()
                    view = renderer.render(frame, out, layout)
                    tm = predictor.timings
                    recent.append(time.perf_counter())
                    fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0
                    draw_hud(view, [
                        f"{fps:5.1f} FPS  {predictor.target} {predictor.precision}  "
                        f"dropped {grabber.dropped}",
                        f"wait {1e3 * (t1 - t0):4.1f}  pre {tm.preprocess:4.1f}  "
                        f"infer {tm.inference:5.1f}  post {tm.postprocess:4.1f}  "
                        f"render {stats.medians().get('render', 0):4.1f} ms",
                    ])
                    t3 = time.perf_counter()
                    for k, v in (("capture", 1e3 * (t1 - t0)), ("preprocess", tm.preprocess),
                                 ("inference", tm.inference), ("postprocess", tm.postprocess),
                                 ("render", 1e3 * (t3 - t2))):
                        stats.stages_ms[k].append(v)
                    if record is not None:
                        if writer is None:
                            writer = open_writer(record, source.info.fps,
                                                 (view.shape[1], view.shape[0]))
                            stats.recording = str(record)
                        writer.write(view)
                    stats.frames += 1
                    last_view = view
                    if on_frame is not None:
                        on_frame(view, out)
                if not headless:
                    if last_view is not None:
                        cv2.imshow(window, last_view)
                    key = cv2.waitKey(1 if not paused else 30) & 0xFF
                    if key in (ord("q"), 27):
                        stats.stopped_by = "key"
                        break
                    if key == ord(" "):
                        paused = not paused
                    elif key in KEY_LAYOUTS:
                        layout = KEY_LAYOUTS[key]
                    elif key == ord("s") and last_view is not None:
                        snapshot_dir.mkdir(parents=True, exist_ok=True)
                        p = snapshot_dir / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}.png"
                        cv2.imwrite(str(p), last_view)
                        stats.snapshots.append(str(p))
            if stop.reason is not None:
                stats.stopped_by = stop.reason
        finally:
            stats.wall_s = time.perf_counter() - t_start
            stats.dropped = grabber.dropped
            grabber.stop()
            if writer is not None:
                writer.release()
            if not headless:
                cv2.destroyAllWindows()
    return stats


def frame_grid_ok(img: np.ndarray) -> bool:
    """True when the four quadrants of a grid view are each non-blank and mutually different."""
    h, w = img.shape[0] // 2, img.shape[1] // 2
    quads = [img[:h, :w], img[:h, w:], img[h:, :w], img[h:, w:]]
    if any(q.std() < 3 for q in quads):
        return False
    return all(np.abs(quads[i].astype(int) - quads[j].astype(int)).mean() > 5
               for i in range(4) for j in range(i + 1, 4))
