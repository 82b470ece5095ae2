"""One way to keep native libraries quiet while they probe what a user handed us.

OpenCV/FFmpeg ("moov atom not found", "Connection refused"), OpenVINO's frontends (absl/glog
lines) and ONNX Runtime print straight to file descriptor 2 when they look at a broken video, a
stream that is down or a garbage model file; numpy warns on ``inf`` inputs.  The project's own
error is one line, so these run inside :func:`quiet_native`: the native output is captured
(``captured()`` returns it, for a message that needs it) instead of reaching the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np


class _Captured:
    text = ""

    def __call__(self) -> str:
        return self.text


@contextlib.contextmanager
def quiet_native() -> Iterator[_Captured]:
    """Silence OpenCV's log, numpy floating-point warnings and everything native code writes
    to file descriptor 2 for the duration; yields a callable returning what was written."""
    cap = _Captured()
    cv_log = level = None
    if "cv2" in sys.modules:
        cv_log = sys.modules["cv2"].utils.logging
        level = cv_log.getLogLevel()
        cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    saved = None
    tmp = tempfile.TemporaryFile(mode="w+b")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
    except OSError:  # no usable fd 2 (embedded interpreters): the log level alone
        saved = None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield cap
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        cap.text = tmp.read().decode(errors="replace")
        tmp.close()
        if cv_log is not None:
            cv_log.setLogLevel(level)
