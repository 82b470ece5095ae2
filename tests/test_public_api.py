"""The README's public-API example runs as written (paths made local to a temp folder)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import STARTER, needs_starter

import mtlsi_edge

ROOT = Path(__file__).parent.parent


def test_lazy_public_names():
    for name in mtlsi_edge.__all__:
        assert getattr(mtlsi_edge, name) is not None
    with pytest.raises(AttributeError):
        mtlsi_edge.nope  # noqa: B018


@needs_starter
def test_readme_example_runs(tmp_path, monkeypatch, scene_bgr):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = next(b for b in blocks if "from mtlsi_edge import" in b)
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mtlsi_edge" / "weights").mkdir(parents=True)
    for f in STARTER.parent.glob("starter.*"):
        (tmp_path / "mtlsi_edge" / "weights" / f.name).symlink_to(f)
    cv2.imwrite(str(tmp_path / "frame.jpg"), cv2.resize(scene_bgr, (320, 240)))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    out = ns["out"]
    assert set(out) == {"semseg", "depth", "normals", "boundary"}
    assert out["semseg"].shape == (240, 320) and out["semseg"].dtype == np.uint8
    assert ns["predictor"].check.passed
