"""A training run's settings from a recipe plus explicit options, checked before any work."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mtlsi_edge.errors import ConfigError
from mtlsi_edge.fileio import check_output_dir
from mtlsi_edge.model.mtlsi import DEFAULT_VARIANT, check_config_values
from mtlsi_edge.train.engine import VARIANTS, TrainConfig
from mtlsi_edge.train.recipes import get_recipe

#: what ``train`` uses when neither a recipe nor an option says otherwise
DEFAULTS = {"variant": DEFAULT_VARIANT, "steps": 2000, "batch_size": 8, "lr": 1e-3,
            "weight_decay": 1e-4, "optimizer": "adamw", "schedule": "poly",
            "warmup_steps": 100, "scale": (0.5, 2.0)}


def parse_scale(text: str) -> tuple[float, float]:
    """``"lo,hi"`` → (lo, hi) with 0 < lo ≤ hi."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"bad --scale {text!r}: expected lo,hi e.g. 0.5,2.0") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"bad --scale {text!r}: needs 0 < lo ≤ hi, e.g. 0.5,2.0")
    return lo, hi


def parse_sets(specs: list[str]) -> dict:
    """``["KEY=VALUE", …]`` → {key: value}, values as JSON when they parse, else strings."""
    out = {}
    for kv in specs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ConfigError(f"bad --set {kv!r}: expected KEY=VALUE, e.g. num_tokens=32")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def train_config(data: str | Path | None, out: str | Path, recipe: str | None = None,
                 options: dict | None = None, scale: str | None = None,
                 sets: list[str] = (), resume: bool = False, **fixed) -> TrainConfig:
    """The run's :class:`TrainConfig`: :data:`DEFAULTS`, then the recipe's settings, then the
    ``options`` that are not None; ``fixed`` are TrainConfig fields passed as they are (amp,
    seed, workers, ckpt_every).  A new run (not ``resume``) is checked in full here."""
    settings = dict(DEFAULTS)
    overrides = {}
    if recipe is not None:
        r = get_recipe(recipe)
        settings.update(r.train, variant=r.variant)
        overrides.update(r.model)
    settings.update({k: v for k, v in (options or {}).items() if v is not None})
    if scale is not None:
        settings["scale"] = parse_scale(scale)
    if not resume:
        if settings["variant"] not in VARIANTS:
            raise ConfigError(f"unknown variant {settings['variant']!r}; known: "
                              f"{', '.join(VARIANTS)}")
        if data is None:
            raise ConfigError("--data is required (a NYUD/PASCAL folder, or render one: "
                              "mtlsi-edge data synth)")
        if settings["optimizer"] not in ("adam", "adamw") or settings["schedule"] not in (
                "poly", "cosine"):
            raise ConfigError("--optimizer must be adam|adamw and --schedule poly|cosine")
    for key in ("lr", "weight_decay"):  # before any work: a NaN or negative rate trains nothing
        v = settings.get(key)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                                  and (v > 0 or key != "lr")):
            raise ConfigError(f"bad --{key.replace('_', '-')} {v!r}: must be a finite number "
                              f"{'> 0' if key == 'lr' else '≥ 0'}")
    check_output_dir(out, "run folder")
    if not resume and (Path(out) / "last.json").exists():
        raise ConfigError(f"{out} already holds a run (last.json): continue it with --resume, "
                          f"or choose a new --out")
    overrides.update(parse_sets(list(sets)))
    if not resume:
        check_config_values(overrides)
    return TrainConfig(data=str(data), out=str(out), model_overrides=overrides, **fixed,
                       **settings)
