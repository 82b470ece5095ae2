"""Predictor: frames of any size / channel layout in, per-task outputs at frame size out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mtlsi_edge.bundle import MANIFEST, write_manifest
from mtlsi_edge.errors import BundleError
from mtlsi_edge.export import normalize
from mtlsi_edge.runtime.predictor import FrameError, Predictor, to_bgr
from mtlsi_edge.targets import TargetUnavailable
from mtlsi_edge.targets.tensorrt import TensorRTTarget

pytestmark = pytest.mark.usefixtures("torch_one_thread")
BUNDLE_KINDS = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
                ("openvino", "fp16")]
SIZE = (64, 96)  # the tiny model's input size (tests/conftest.py)


@pytest.fixture(scope="module")
def ort_predictor(predictor):
    return predictor("onnxruntime")


def check_outputs(out: dict, pred: Predictor, h: int, w: int) -> None:
    assert list(out) == pred.task_set.names
    for t in pred.task_set:
        a = out[t.name]
        if a.dtype != np.uint8:
            assert np.isfinite(a).all(), t.name
        if t.kind == "segmentation":
            assert a.shape == (h, w) and a.dtype == np.uint8, t.name
            assert int(a.max()) < t.out_channels
        elif t.kind == "depth":
            assert a.shape == (h, w) and a.dtype == np.float32
            assert (a >= 0).all()
        elif t.kind == "normals":
            assert a.shape == (h, w, 3) and a.dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-4)
        else:  # boundary / saliency
            assert a.shape == (h, w) and a.dtype == np.float32
            assert (a >= 0).all() and (a <= 1).all()


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("target,precision", BUNDLE_KINDS)
def test_predictor_from_each_bundle(predictor, frame, target, precision):
    p = predictor(target, precision)
    assert p.target == target and p.precision == precision
    assert p.input_size == SIZE
    out = p(frame(120, 160))
    check_outputs(out, p, 120, 160)
    assert p.timings.preprocess > 0 and p.timings.inference > 0 and p.timings.postprocess > 0


def test_targets_agree_after_postprocessing(predictor, frame):
    """NCHW (torch, onnxruntime) and NHWC (openvino) outputs give the same final predictions."""
    f = frame(90, 130)
    outs = {t: predictor(t)(f) for t in ("torch", "onnxruntime", "openvino")}
    ref = outs["torch"]
    for name, out in outs.items():
        agree = (out["semseg"] == ref["semseg"]).mean()
        assert agree >= 0.999, (name, agree)
        for k in ("depth", "normals", "boundary"):
            np.testing.assert_allclose(out[k], ref[k], atol=1e-4, err_msg=f"{name} {k}")


def test_preprocess_of_a_frame_bundle_is_the_frame(ort_predictor, frame):
    """Frame-I/O bundles take the uint8 BGR frame itself (normalisation is in the graph)."""
    f = frame(*SIZE)
    x, _ = ort_predictor.preprocess(f)
    assert ort_predictor.frame_io
    assert x.shape == (1, *SIZE, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], f)


def test_preprocess_of_a_tensor_bundle_matches_export_normalisation(tiny_checkpoint, tmp_path,
                                                                   frame):
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.targets import CompileOptions

    b = compile_bundle(tmp_path / "t", CompileRequest(
        "onnxruntime", "fp32", checkpoint=tiny_checkpoint, frame_io=False,
        options=CompileOptions(device="cpu", threads=1)))
    p = Predictor.from_bundle(b, threads=1)
    f = frame(*SIZE)
    x, _ = p.preprocess(f)
    assert not p.frame_io
    assert x.shape == (1, 3, *SIZE) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x, normalize(f[None, :, :, ::-1]), atol=1e-5)


@pytest.mark.parametrize("hw", [(37, 53), (481, 641), SIZE, (64, 300), (200, 31), (2, 2)])
def test_odd_frame_sizes(ort_predictor, frame, hw):
    check_outputs(ort_predictor(frame(*hw)), ort_predictor, *hw)


@pytest.fixture(scope="module")
def ort_letterbox(bundle):
    return Predictor.from_bundle(bundle("onnxruntime"), letterbox=True)


@pytest.mark.parametrize("hw", [(37, 53), (481, 641), (300, 64), (128, 192)])
def test_letterbox_outputs_at_frame_size(ort_letterbox, frame, hw):
    check_outputs(ort_letterbox(frame(*hw)), ort_letterbox, *hw)


def test_letterbox_equals_resize_for_same_aspect(ort_letterbox, ort_predictor, frame):
    f = frame(SIZE[0] * 2, SIZE[1] * 2)  # same aspect ratio as the input: no bars
    lb = ort_letterbox(f)
    rs = ort_predictor(f)
    assert_same(lb, rs)


class GrayRunner:
    """A stand-in runner whose outputs (at 1/4) encode the input's brightness, so the
    Predictor's geometry (resize, letterbox crop, layouts) can be checked exactly."""

    def __init__(self, pred: Predictor, layout: str = "NCHW"):
        self.task_set, self.pred = pred.task_set, pred
        self.layouts = {t.name: layout for t in self.task_set}

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.pred.frame_io:  # uint8 BGR frame in, labels out
            rgb = x[0][:, :, ::-1].astype(np.float32)
        else:
            rgb = x[0].transpose(1, 2, 0) / self.pred.inv_std + self.pred.mean  # 0..255
        g = rgb.mean(-1)
        h, w = g.shape
        g4 = g.reshape(h // 4, 4, w // 4, 4).mean((1, 3))[None]  # 1×h×w
        out = {}
        for t in self.task_set:
            if t.kind == "segmentation":  # argmax = brightness bin
                k = np.arange(t.out_channels, dtype=np.float32)[:, None, None]
                y = -np.abs(k - g4 / 255 * (t.out_channels - 1))
                if self.pred.frame_io:
                    y = y.argmax(0)[None].astype(np.uint8)
            elif t.kind == "depth":
                y = g4
            elif t.kind == "normals":
                y = np.concatenate([g4 / 255, np.ones_like(g4), np.zeros_like(g4)])
            else:
                y = g4 / 255
            y = y[None] if y.dtype == np.uint8 else y[None].astype(np.float32)
            out[t.name] = y.transpose(0, 2, 3, 1).copy() if self.layouts[t.name] == "NHWC" else y
        return out


def _gray_predictor(bundle, letterbox: bool, layout: str = "NCHW", frame_io: bool = True
                    ) -> Predictor:
    from mtlsi_edge.bundle import load_bundle

    manifest, _ = load_bundle(bundle("onnxruntime"))
    if not frame_io:  # what the Predictor reads of a float-input (schema 2) bundle
        manifest = {**manifest, "io": "tensor"}
    p = Predictor(None, manifest, letterbox=letterbox)
    p.runner = GrayRunner(p, layout)
    p.layouts = p.runner.layouts
    return p


def _interior(hw, letterbox: bool):
    """The frame region whose 1/4-resolution outputs cannot see the letterbox bars: one and a
    half output cells (6 input pixels) away from the image border, in frame pixels."""
    if not letterbox:
        return np.s_[:, :]
    s = min(SIZE[0] / hw[0], SIZE[1] / hw[1])
    m = int(np.ceil(6 / s))
    return np.s_[m:hw[0] - m, m:hw[1] - m]


@pytest.mark.parametrize("frame_io", [True, False])
@pytest.mark.parametrize("letterbox", [False, True])
@pytest.mark.parametrize("hw", [(128, 48), (48, 200), (37, 53), (481, 641), (64, 96)])
def test_flat_frame_gives_flat_outputs(bundle, letterbox, hw, frame_io):
    """Letterbox bars (black) must be cropped away: a flat frame stays flat (away from the
    image border, where the network's 1/4-resolution cells straddle image and bar)."""
    p = _gray_predictor(bundle, letterbox, frame_io=frame_io)
    out = p(np.full((*hw, 3), 200, np.uint8))
    check_outputs(out, p, *hw)
    sl = _interior(hw, letterbox)
    assert out["depth"][sl].size > 0
    np.testing.assert_allclose(out["depth"][sl], 200.0, atol=0.05)
    np.testing.assert_allclose(out["boundary"][sl], 200 / 255, atol=1e-3)
    assert (out["semseg"][sl] == round(200 / 255 * 39)).all()


@pytest.mark.parametrize("letterbox", [False, True])
@pytest.mark.parametrize("hw", [(128, 48), (48, 200), (120, 160), (37, 53), (481, 641)])
def test_outputs_register_with_the_frame(bundle, letterbox, hw):
    """A brightness ramp comes back as the same ramp: not shifted, stretched, flipped or
    transposed (the network-resolution round trip only blurs it)."""
    p = _gray_predictor(bundle, letterbox)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = 40 + 160 * (0.3 * yy / (h - 1) + 0.7 * xx / (w - 1))
    f = np.repeat(ramp.round().astype(np.uint8)[:, :, None], 3, axis=2)
    depth = p(f)["depth"]
    sl = _interior(hw, letterbox)
    err = np.abs(depth[sl] - ramp[sl])
    # a linear ramp survives average pooling + bilinear resampling up to the uint8 rounding
    # and the input resize; without letterbox the frame border (edge cells) is included.
    # (A crop that snaps the letterbox box to the 1/4 grid stretches the map: median ≥ 1.)
    assert np.median(err) < 0.5, np.median(err)
    assert err.max() < (1.0 if letterbox else 4.0), err.max()


def test_nhwc_and_nchw_runners_give_identical_predictions(bundle, frame):
    f = frame(70, 90)
    for letterbox in (False, True):
        a = _gray_predictor(bundle, letterbox, "NCHW")(f)
        b = _gray_predictor(bundle, letterbox, "NHWC")(f)
        assert_same(a, b)


def test_grayscale_frames(ort_predictor, frame):
    gray = frame(50, 70)[:, :, 1].copy()
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    want = ort_predictor(bgr)
    assert_same(ort_predictor(gray), want)
    assert_same(ort_predictor(gray[:, :, None]), want)


def test_bgra_frame_equals_bgr(ort_predictor, frame):
    bgr = frame(50, 70)
    alpha = np.random.default_rng(0).integers(0, 256, bgr.shape[:2], dtype=np.uint8)
    bgra = np.dstack([bgr, alpha])
    assert_same(ort_predictor(bgra), ort_predictor(bgr))
    # a strided view (BGR channels of the BGRA buffer) works too
    assert_same(ort_predictor(bgra[:, :, :3]), ort_predictor(bgr))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((40, 50, 3), np.float32), "dtype must be uint8"),
    (np.zeros((40, 50, 3), np.uint16), "dtype must be uint8"),
    (np.zeros((40, 50, 2), np.uint8), "not H×W"),
    (np.zeros((40, 50, 5), np.uint8), "not H×W"),
    (np.zeros(40, np.uint8), "not H×W"),
    (np.zeros((1, 40, 50, 3), np.uint8), "not H×W"),
    ([[1, 2], [3, 4]], "numpy array"),
    (np.zeros((1, 50, 3), np.uint8), "too small"),
    (np.zeros((1, 1), np.uint8), "too small"),
    (np.zeros((0, 0), np.uint8), "too small"),
    (np.zeros((0, 10, 1), np.uint8), "too small"),
    (np.zeros((0, 10, 3), np.uint8), "too small"),
    (np.zeros((10, 0, 4), np.uint8), "too small"),
])
def test_bad_frames_refused(ort_predictor, bad, match):
    with pytest.raises(FrameError, match=match):
        ort_predictor(bad)


def test_to_bgr_passthrough():
    f = np.zeros((4, 5, 3), np.uint8)
    assert to_bgr(f) is f


def test_deterministic_and_not_aliased(ort_predictor, frame):
    a, b = frame(60, 80), frame(60, 80)[::-1].copy()
    first = ort_predictor(a)
    kept = {k: v.copy() for k, v in first.items()}
    assert_same(ort_predictor(a), kept)
    ort_predictor(b)  # a later call must not overwrite earlier results
    assert_same(first, kept)


def test_openvino_outputs_not_aliased(predictor, frame):
    p = predictor("openvino")
    raw1 = p.runner(p.preprocess(frame(*SIZE))[0])
    kept = {k: v.copy() for k, v in raw1.items()}
    p.runner(p.preprocess(frame(*SIZE)[::-1].copy())[0])
    assert_same(raw1, kept)


def test_timings_populated(ort_predictor, frame):
    ort_predictor(frame(37, 53))
    t = ort_predictor.timings
    assert t.preprocess > 0 and t.inference > 0 and t.postprocess > 0


def test_bundle_for_unavailable_target_refused(bundle, tmp_path):
    folder = shutil.copytree(bundle("onnxruntime"), tmp_path / "b")
    m = json.loads((folder / MANIFEST).read_text())
    m.pop("integrity")
    m["target"] = "nope"
    write_manifest(folder, m)  # re-signed: the field check, not the hash, must refuse it
    with pytest.raises(BundleError, match="'target' 'nope' is not one of"):
        Predictor.from_bundle(folder)
    ok, _ = TensorRTTarget().available()
    if not ok:
        m["target"] = "tensorrt"
        write_manifest(folder, m)
        with pytest.raises(TargetUnavailable, match="needs target tensorrt: .*not installed"):
            Predictor.from_bundle(folder)
