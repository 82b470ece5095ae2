"""What a source string means, checked before anything is opened: the one parser of ``demo``
and ``predict`` (and of :class:`~mtlsi_edge.runtime.capture.Source`).

Kinds (:func:`parse_source`):

=============  ==============================================================================
``image``      an image file (``IMAGE_EXTS``)
``folder``     a folder of images (sorted by name)
``glob``       a pattern (``*``, ``?``, ``[``; ``**`` recurses) matching images
``video``      any other existing file (decoded by OpenCV/FFmpeg)
``camera``     an index (``0``) or a device path (``/dev/video0``, V4L2 on Linux)
``csi``        ``csi://N``: a Jetson CSI sensor through ``nvarguscamerasrc`` (GStreamer)
``gstreamer``  a GStreamer pipeline (contains ``!``; needs an OpenCV built with GStreamer)
``stream``     ``rtsp://``, ``http(s)://``, ``rtmp://``, ``udp://``, ``tcp://``, ``srt://`` URLs
=============  ==============================================================================

Camera options (:class:`SourceOptions`: size, rate, FOURCC) are applied to cameras and folded
into the ``csi://`` pipeline; given for any other kind they are refused in one line rather
than silently ignored.
"""

from __future__ import annotations

import glob as _glob
import numbers
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from mtlsi_edge.errors import MtlsiError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
#: ``csi://N`` without --camera-size / --camera-fps: a mode every Jetson CSI sensor driver
#: (IMX219, IMX477, …) offers.
CSI_DEFAULT_SIZE = (1280, 720)
CSI_DEFAULT_FPS = 30.0
#: nvarguscamerasrc → NVMM → BGR in system memory for OpenCV's appsink; ``drop=1`` keeps the
#: newest frame only (the capture thread drops stale frames itself as well).
CSI_PIPELINE = ("nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={w},"
                "height={h},framerate={rate} ! nvvidconv ! video/x-raw,format=BGRx ! "
                "videoconvert ! video/x-raw,format=BGR ! appsink drop=1")
KINDS = ("image", "folder", "glob", "video", "camera", "csi", "gstreamer", "stream")
LIVE_KINDS = ("camera", "csi", "gstreamer", "stream")


class CaptureError(MtlsiError, RuntimeError):
    """A source that cannot be opened or read; the message names it."""


@dataclass(frozen=True)
class SourceOptions:
    """How to open a source (one record for ``demo``, ``predict`` and the Python API).

    camera_size: ``(width, height)`` asked of a camera (``--camera-size WxH``).
    camera_fps: frame rate asked of a camera (``--camera-fps``).
    fourcc: pixel format asked of a camera (``--fourcc MJPG|YUYV|…``, V4L2 cameras).
    strict: refuse a camera that gives another size / rate / format than asked (default: say
      what it gave in one line and go on: cameras round to the nearest mode they have).
    reconnect_s: how long one outage of a live source may last — the total time spent
      reopening it, over all attempts with backoff — before the run ends with one line.
    loop: start a video or folder again at its end.
    """

    camera_size: tuple[int, int] | None = None
    camera_fps: float | None = None
    fourcc: str | None = None
    strict: bool = False
    reconnect_s: float = 30.0
    loop: bool = False

    def __post_init__(self):
        if self.camera_size is not None:
            w, h = self.camera_size
            if not (isinstance(w, numbers.Integral) and isinstance(h, numbers.Integral)
                    and 16 <= w <= 8192 and 16 <= h <= 8192):
                raise CaptureError(f"camera size {w}x{h}: both sides must be in 16..8192")
        if self.camera_fps is not None and not (0 < self.camera_fps <= 1000):
            raise CaptureError(f"camera rate {self.camera_fps:g}: must be in (0, 1000] frames "
                               f"per second")
        if self.fourcc is not None and not re.fullmatch(r"[A-Za-z0-9 ]{4}", self.fourcc):
            raise CaptureError(f"FOURCC {self.fourcc!r}: must be 4 letters or digits, e.g. "
                               f"MJPG or YUYV")
        if not (self.reconnect_s >= 0 and self.reconnect_s < float("inf")):
            raise CaptureError(f"reconnect budget {self.reconnect_s!r} s: must be ≥ 0 seconds")

    @classmethod
    def parse(cls, camera_size: str | None = None, camera_fps: float | None = None,
              fourcc: str | None = None, strict: bool = False, reconnect_s: float = 30.0,
              loop: bool = False) -> SourceOptions:
        """From command-line strings: ``camera_size`` is ``WxH`` (width first, as cameras
        and V4L2 name their modes)."""
        size = None
        if camera_size is not None:
            m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", camera_size)
            if not m:
                raise CaptureError(f"--camera-size {camera_size!r}: expected WxH, e.g. 1280x720")
            size = (int(m[1]), int(m[2]))
        return cls(size, camera_fps, fourcc.upper() if fourcc else None, strict, reconnect_s,
                   loop)

    @property
    def camera_requested(self) -> bool:
        return (self.camera_size, self.camera_fps, self.fourcc) != (None, None, None)

    def requested_flags(self) -> list[str]:
        return [f for f, v in (("--camera-size", self.camera_size),
                               ("--camera-fps", self.camera_fps),
                               ("--fourcc", self.fourcc)) if v is not None]


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source.  ``target``: what ``cv2.VideoCapture`` opens (index, device path, URL,
    pipeline; None for image kinds); ``files``: the images, in order; ``stems``: their output
    names (relative path without suffix, unique)."""

    kind: str
    spec: str
    name: str
    target: str | int | None = None
    files: tuple[Path, ...] = ()
    stems: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    @property
    def images(self) -> bool:
        return self.kind in ("image", "folder", "glob")


def gstreamer_status() -> str:
    """``GStreamer:`` of ``cv2.getBuildInformation()`` (``YES (1.20.3)``, ``NO``, ``?``)."""
    import cv2

    m = re.search(r"^\s*GStreamer:\s*(.+?)\s*$", cv2.getBuildInformation(), re.M)
    return m[1] if m else "?"


def gstreamer_available() -> bool:
    return gstreamer_status().upper().startswith("YES")


def _no_gstreamer(what: str) -> CaptureError:
    import cv2

    where = Path(cv2.__file__).parent
    pip = "site-packages" in str(where) and "dist-packages" not in str(where)
    return CaptureError(
        f"{what} needs OpenCV with GStreamer, but this cv2 {cv2.__version__} ({where}"
        f"{', a pip wheel' if pip else ''}) is built without it: on a Jetson use the system "
        f"OpenCV (apt install python3-opencv, a venv with --system-site-packages and no pip "
        f"opencv-python: docs/nvidia.md, \"Jetson\"); elsewhere install an OpenCV built with "
        f"GStreamer (-D WITH_GSTREAMER=ON, or your distribution's python3-opencv)")


def csi_pipeline(sensor: int, size: tuple[int, int] | None = None, fps: float | None = None
                 ) -> str:
    """The ``nvarguscamerasrc`` pipeline of ``csi://sensor`` at ``size`` (W, H) and ``fps``."""
    w, h = size or CSI_DEFAULT_SIZE
    rate = Fraction(fps or CSI_DEFAULT_FPS).limit_denominator(1001)
    return CSI_PIPELINE.format(sensor=sensor, w=w, h=h,
                               rate=f"{rate.numerator}/{rate.denominator}")


def image_stems(files: list[Path]) -> list[str]:
    """Output names of ``files``: the path relative to their common folder, without suffix
    (``sub/x``); names that would collide (``x.png``, ``x.jpg``) keep their suffix."""
    if not files:
        return []
    parents = [str(p.parent.resolve()) for p in files]
    root = Path(os.path.commonpath(parents))
    rel = [p.resolve().relative_to(root) for p in files]
    bare = [r.with_suffix("").as_posix() for r in rel]
    counts: dict[str, int] = {}
    for b in bare:
        counts[b] = counts.get(b, 0) + 1
    return [r.as_posix() if counts[b] > 1 else b for r, b in zip(rel, bare)]


def _is_pipeline(s: str) -> bool:
    """A GStreamer pipeline: elements joined by ``!`` (``[!…]`` in a glob is not one)."""
    if "!" not in s or os.path.exists(s):
        return False
    return " ! " in s or not any(c in s for c in "*?[")


def _verb(flags: list[str], one: str, many: str) -> str:
    return f"{', '.join(flags)} {one if len(flags) == 1 else many}"


def _cameras_here() -> str:
    devs = sorted(_glob.glob("/dev/video*"), key=lambda s: (len(s), s))
    return (f"cameras here: {', '.join(devs)}" if devs else "no /dev/video* device here")


def _images(paths, what: str, spec: str) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    files = sorted({Path(p) for p in paths if Path(p).suffix.lower() in IMAGE_EXTS
                    and Path(p).is_file()})
    if not files:
        raise CaptureError(f"{spec}: {what} ({', '.join(sorted(IMAGE_EXTS))})")
    return tuple(files), tuple(image_stems(files))


def parse_source(spec: str | int, options: SourceOptions | None = None) -> SourceSpec:
    """Classify and check ``spec`` (nothing is opened).  Raises :class:`CaptureError` with one
    line for a missing file or device, an empty folder or glob, a GStreamer pipeline without
    GStreamer, or camera options given for a source that is not a camera."""
    o = options or SourceOptions()
    s = str(spec).strip()
    if not s:
        raise CaptureError("empty source: give a camera index or /dev/video path, an image, a "
                           "folder, a glob, a video, a URL or a GStreamer pipeline")
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    flags = o.requested_flags()
    if scheme == "csi":
        m = re.fullmatch(r"csi://(\d+)", s, re.I)
        if not m:
            raise CaptureError(f"{s}: expected csi://N (N: the sensor id, 0 or 1 …)")
        if o.fourcc is not None:
            raise CaptureError(f"{s}: --fourcc does not apply to a CSI camera (nvarguscamerasrc "
                               f"delivers NV12 in NVMM memory; the pipeline converts to BGR)")
        if not gstreamer_available():
            raise _no_gstreamer(f"{s} (a Jetson CSI camera)")
        pipe = csi_pipeline(int(m[1]), o.camera_size, o.camera_fps)
        return SourceSpec("csi", s, f"CSI camera {m[1]}", pipe)
    if _is_pipeline(s):
        if flags:
            raise CaptureError(f"{_verb(flags, 'does not apply', 'do not apply')} to a "
                               f"GStreamer pipeline: put "
                               f"the size and rate in its caps (video/x-raw,width=…,height=…,"
                               f"framerate=…)")
        if not gstreamer_available():
            raise _no_gstreamer("a GStreamer pipeline (a source containing '!')")
        return SourceSpec("gstreamer", s, "GStreamer pipeline", s)
    if s.isdigit() or s.startswith("/dev/"):
        if s.isdigit():
            return SourceSpec("camera", s, f"camera {int(s)}", int(s))
        if not os.path.exists(s):
            raise CaptureError(f"camera {s} not available: no such device ({_cameras_here()})")
        if not os.access(s, os.R_OK | os.W_OK):
            raise CaptureError(f"camera {s}: no permission to open it (add your user to the "
                               f"group that owns it, usually 'video', and log in again)")
        return SourceSpec("camera", s, f"camera {s}", s)
    if flags:
        raise CaptureError(f"{_verb(flags, 'applies', 'apply')} to cameras (an index, "
                           f"/dev/videoN, csi://N), not to {s}")
    if scheme:
        if scheme not in STREAM_SCHEMES:
            raise CaptureError(f"{s}: unknown scheme {scheme}:// (streams: "
                               f"{', '.join(STREAM_SCHEMES)}; Jetson cameras: csi://N)")
        return SourceSpec("stream", s, s, s)
    if os.path.isdir(s):
        files, stems = _images(Path(s).iterdir(), "folder has no images", s)
        return SourceSpec("folder", s, s, None, files, stems)
    if os.path.isfile(s):
        if Path(s).suffix.lower() in IMAGE_EXTS:
            return SourceSpec("image", s, s, None, (Path(s),), (Path(s).stem,))
        return SourceSpec("video", s, s, s)
    if any(c in s for c in "*?["):
        files, stems = _images(_glob.glob(s, recursive=True), "pattern matches no images", s)
        return SourceSpec("glob", s, s, None, files, stems)
    raise CaptureError(f"{s}: no such file, folder or camera index")
