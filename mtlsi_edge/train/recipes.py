"""Named training recipes: the published InvPT-family schedules, for ``train --recipe``.

Values are those of InvPT's configs (``configs/nyud/nyud_vitLp16.yml``,
``configs/pascal/pascal_vitLp16.yml``; crop sizes from ``utils/config.py``; augmentations from
``utils/common_config.py``), see ``docs/training.md``. Pure data: importing this module must
stay cheap (the CLI builds its help text from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtlsi_edge.errors import MtlsiError


class UnknownRecipe(MtlsiError, KeyError):
    """A ``--recipe`` name that is not in :data:`RECIPES`."""

    def __str__(self) -> str:  # the message, without KeyError's quotes
        return str(self.args[0])


@dataclass(frozen=True)
class Recipe:
    """A training schedule: ``train`` holds :class:`~mtlsi_edge.train.engine.TrainConfig`
    fields, ``model`` holds :class:`~mtlsi_edge.model.mtlsi.MTLSIConfig` overrides."""

    name: str
    summary: str
    source: str
    variant: str
    train: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable description, one setting per line."""
        t = self.train
        out = [
            f"recipe {self.name}: {self.summary}",
            f"  source        {self.source}",
            f"  variant       {self.variant}  (backbone pretrained through timm: "
            f"{self.model.get('pretrained', False)})",
            f"  task set      {self.model['task_set']}",
            f"  optimizer     {t['optimizer']}  lr {t['lr']:g}  weight decay {t['weight_decay']:g}",
            f"  schedule      {t['schedule']} (power 0.9) to 0, warm-up {t['warmup_steps']} steps",
            f"  iterations    {t['steps']}  batch {t['batch_size']} per process",
            f"  crop          {t['crop'][0]}×{t['crop'][1]}  (validation: pad to this size)",
            f"  augmentation  random scale U{tuple(t['scale'])}, random crop (cat_max_ratio "
            f"0.75), h-flip 0.5, photometric distortion, ImageNet normalisation",
            "  gradient clip " + ("none" if not t["grad_clip"] else f"{t['grad_clip']:g}"),
            "  supervision   final + preliminary (deep supervision) outputs, task weights "
            "of the task set",
        ]
        return out + [f"  note          {n}" for n in self.notes]


_INVPT_TRAIN = {
    "optimizer": "adam",
    "lr": 2e-5,
    "weight_decay": 1e-6,
    "schedule": "poly",
    "warmup_steps": 0,
    "steps": 40_000,
    "batch_size": 2,
    "scale": (0.5, 2.0),
    "grad_clip": 0.0,
    "deep_supervision": True,
}
_NOTES = (
    "InvPT trains in FP32; on CUDA we autocast (BF16 where supported, else FP16) with the "
    "linear-attention sums kept in FP32 — add --no-amp to match exactly",
    "InvPT's ViT-L backbone uses drop-path 0.15; our timm backbone is built without it",
)

RECIPES: dict[str, Recipe] = {
    "paper-nyud": Recipe(
        "paper-nyud",
        "InvPT NYUDv2 schedule (Adam 2e-5, 40k iterations, 448×576)",
        "InvPT configs/nyud/nyud_vitLp16.yml (prismformore/Multi-Task-Transformer)",
        "paper-vit-l",
        train={**_INVPT_TRAIN, "crop": (448, 576)},
        model={"task_set": "nyud", "input_size": (448, 576), "pretrained": True},
        notes=_NOTES,
    ),
    "paper-pascal": Recipe(
        "paper-pascal",
        "InvPT PASCAL-Context schedule (Adam 2e-5, 40k iterations, 512×512)",
        "InvPT configs/pascal/pascal_vitLp16.yml (prismformore/Multi-Task-Transformer)",
        "paper-vit-l",
        train={**_INVPT_TRAIN, "crop": (512, 512)},
        model={"task_set": "pascal", "input_size": (512, 512), "pretrained": True},
        notes=_NOTES,
    ),
}


def get_recipe(name: str) -> Recipe:
    """Look a recipe up by name (:class:`UnknownRecipe` naming the known ones otherwise)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownRecipe(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
