"""Frame sources for the live loop: cameras, video files, URLs and image folders.

:class:`LatestFrameGrabber` reads in its own thread and keeps only the newest frame, so a
slow consumer never builds up latency: frames it did not take in time are dropped and counted.
Camera read failures are retried with exponential backoff (unplugged USB cameras come back),
then reported with one line.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.native import quiet_native

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class CaptureError(MtlsiError, RuntimeError):
    """A source that cannot be opened or read; the message names it."""


@dataclass
class SourceInfo:
    kind: str  # camera | file | url | folder
    name: str
    fps: float
    frames: int | None  # None for live sources


class Source:
    """One frame source.  ``read()`` → BGR uint8 frame, or None at the end of a file/folder."""

    def __init__(self, spec: str | int, retries: int = 5, backoff_s: float = 0.2,
                 loop: bool = False):
        self.spec = str(spec)
        self.loop = loop  # files/folders: start again at the end (demos, soak tests)
        self.retries, self.backoff_s = retries, backoff_s
        self._files: list[Path] | None = None
        self.skipped: list[str] = []  # unreadable images of a folder source, reported
        self._i = 0
        self.cap: cv2.VideoCapture | None = None
        s = self.spec
        if s.isdigit():
            self.info = SourceInfo("camera", f"camera {s}", 30.0, None)
            self._open_camera()
        elif "://" in s:
            self.info = SourceInfo("url", s, 30.0, None)
            with quiet_native():  # FFmpeg's own lines ("Connection refused") stay out
                self.cap = cv2.VideoCapture(s)
            if not self.cap.isOpened():
                raise CaptureError(f"{s}: stream could not be opened")
        elif os.path.isdir(s):
            self._files = sorted(p for p in Path(s).iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not self._files:
                raise CaptureError(f"{s}: folder has no images ({', '.join(sorted(IMAGE_EXTS))})")
            self.info = SourceInfo("folder", s, 30.0, len(self._files))
            self._first = self.read()
            if self._first is None:
                raise CaptureError(f"{s}: none of its {len(self._files)} images can be read "
                                   f"(e.g. {self.skipped[0]})")
        elif os.path.isfile(s):
            with quiet_native():  # FFmpeg's "moov atom not found" etc. stay out
                self.cap = cv2.VideoCapture(s)
                n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.cap.isOpened() else 0
                ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
            if not self.cap.isOpened():
                raise CaptureError(f"{s}: not a readable video")
            fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
            self.info = SourceInfo("file", s, fps if 1 <= fps <= 240 else 30.0, n or None)
            if not ok or frame is None:
                raise CaptureError(f"{s}: no decodable frame (corrupt or truncated video)")
            self._first: np.ndarray | None = frame
        else:
            raise CaptureError(f"{s}: no such file, folder or camera index")

    def _open_camera(self) -> None:
        idx = int(self.spec)
        with quiet_native():  # a missing camera is reported below in one line
            self.cap = cv2.VideoCapture(idx)
        if not self.cap.isOpened():
            raise CaptureError(f"camera {idx} not available (no device, or in use)")
        ok, frame = self.cap.read()
        if not ok:
            raise CaptureError(f"camera {idx} opened but returned no frame")
        self._first = frame

    def read(self) -> np.ndarray | None:
        first = getattr(self, "_first", None)
        if first is not None:
            self._first = None
            return first
        if self._files is not None:
            while self._i < len(self._files):
                p = self._files[self._i]
                self._i += 1
                with quiet_native():  # libpng/libjpeg warnings on a broken image
                    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is not None:
                    return img
                self.skipped.append(str(p))
            if self.loop and len(self.skipped) < len(self._files):
                self._i = 0
                return self.read()
            return None
        assert self.cap is not None
        ok, frame = self.cap.read()
        if ok and frame is not None:
            return frame
        if self.info.kind == "file":
            if self.loop:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.cap.read()
                if ok and frame is not None:
                    return frame
            return None  # end of file, or the rest is truncated: a clean end
        return self._recover()

    def _recover(self) -> np.ndarray:
        """A live source stopped delivering: reopen with backoff, then give up clearly."""
        delay = self.backoff_s
        for _ in range(self.retries):
            time.sleep(delay)
            delay *= 2
            if self.cap is not None:
                self.cap.release()
            with quiet_native():
                self.cap = (cv2.VideoCapture(int(self.spec)) if self.spec.isdigit()
                            else cv2.VideoCapture(self.spec))
            if self.cap.isOpened():
                ok, frame = self.cap.read()
                if ok and frame is not None:
                    return frame
        raise CaptureError(f"{self.info.name}: stopped delivering frames "
                           f"(gave up after {self.retries} reconnects)")

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()


def camera_available(index: int = 0) -> bool:
    """True when camera ``index`` opens and delivers a frame (probed silently)."""
    with quiet_native():
        cap = cv2.VideoCapture(index)
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
    return bool(ok)


def default_source(walkthrough: str | Path = "runs/demo/walkthrough.mp4",
                   console=None, render: Callable[[Path], object] | None = None
                   ) -> tuple[str, str]:
    """Camera 0 when one answers, else the SynthIndoor walkthrough video at ``walkthrough``
    (rendered once by ``render(path)`` — the build half's renderer — when it is not there);
    returns (source spec, one line saying which).  A device without a camera, the video and
    the renderer gets a :class:`CaptureError` asking for ``--source``."""
    if camera_available(0):
        return "0", "camera 0"
    video = Path(walkthrough)
    if not video.is_file():
        if render is None:
            raise CaptureError("no camera found and no --source given: pass --source (a "
                               "camera index or /dev/video path, a video, an image folder or "
                               "a URL)")
        msg = "no camera: rendering the SynthIndoor walkthrough video…"
        with console.status(msg) if console is not None else contextlib.nullcontext():
            render(video)
    return str(video), f"no camera found; showing the built-in SynthIndoor walkthrough ({video})"


class LatestFrameGrabber:
    """Reads a :class:`Source` in a thread; ``get()`` returns the newest unseen frame.

    ``pace``: for files/folders, deliver at the source's frame rate (as a camera would), so
    frames the consumer is too slow for are dropped; with ``pace=False`` the reader waits for
    the consumer instead (no drops: used to measure maximum throughput).
    """

    def __init__(self, source: Source, pace: bool = True):
        self.source = source
        # Only videos are paced like a camera; an image folder is a set to process, not a
        # stream: every image is shown (and recorded), none dropped.
        self.pace = pace and source.info.kind == "file"
        self.live = source.info.kind in ("camera", "url")
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._taken = 0
        self.dropped = 0
        self.ended = False
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.source.info.fps
        next_t = time.perf_counter()
        try:
            while not self._stop.is_set():
                if not (self.pace or self.live):
                    with self._cond:  # wait until the consumer took the previous frame
                        self._cond.wait_for(lambda: self._taken == self._seq
                                            or self._stop.is_set())
                frame = self.source.read()
                if frame is None:
                    break
                if self.pace:
                    next_t += period
                    time.sleep(max(0.0, next_t - time.perf_counter()))
                with self._cond:
                    if self._frame is not None and self._taken < self._seq:
                        self.dropped += 1
                    self._frame = frame
                    self._seq += 1
                    self._cond.notify_all()
        except Exception as e:  # reported to the consumer, which owns the error message
            self.error = e
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def get(self, timeout: float = 10.0) -> np.ndarray | None:
        """The newest frame not yet returned; None when the source ended."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._taken < self._seq or self.ended, timeout)
            if self.error is not None:
                raise self.error
            if self._taken < self._seq:
                self._taken = self._seq
                frame = self._frame
                self._cond.notify_all()
                return frame
            if not ok:
                raise CaptureError(f"{self.source.info.name}: no frame within {timeout:.0f} s")
            return None

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2)
        self.source.release()
