"""Training and evaluation loops.  Runs as one process or under ``torchrun`` (DDP).

Exact resume: the sample seen at global position ``p`` (step × global batch + offset) and its
augmentation are functions of ``(seed, p)`` only, the learning rate is a function of the step,
and weights, optimizer state and the torch RNG are checkpointed together; so a run killed at any
point and resumed from its last checkpoint replays the same steps as an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from huggingface_hub.errors import LocalEntryNotFoundError
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    track,
)
from torch.utils.data import DataLoader, Dataset

from mtlsi_edge.data.datasets import MultiTaskDataset, build_dataset
from mtlsi_edge.data.transforms import train_transforms, val_transforms
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.fileio import append_jsonl, atomic_write_json
from mtlsi_edge.model.mtlsi import DEFAULT_VARIANT, VARIANTS, MTLSINet, create_model
from mtlsi_edge.model.restore import model_from_state_dict
from mtlsi_edge.objectives import objective, task_activate, task_loss, task_metric
from mtlsi_edge.tasks import TaskSet
from mtlsi_edge.train.checkpoint import (
    load_training_state,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
)


@dataclass
class TrainConfig:
    """One training run.  Saved in every checkpoint; ``--resume`` restores it."""

    data: str
    out: str = "runs/train/exp"
    variant: str = DEFAULT_VARIANT
    model_overrides: dict = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adam | adamw
    schedule: str = "poly"  # poly | cosine
    warmup_steps: int = 100
    grad_clip: float = 10.0  # 0 = off
    deep_supervision: bool = True
    crop: tuple[int, int] | None = None  # default: the variant's input size
    scale: tuple[float, float] = (0.5, 2.0)
    seed: int = 0
    workers: int = 2
    ckpt_every: int = 200
    log_every: int = 10
    amp: bool = True  # CUDA only: BF16 autocast where supported, else FP16 (see amp_dtype)


class Stream(Dataset):
    """Global sample position ``p`` → the transformed sample, a pure function of (seed, p).

    ``ds[p]``: sample ``p mod len(ds)`` of a fresh permutation per epoch (seeded by ``seed`` and
    the epoch), through ``transform(sample, rng)`` with an rng seeded by (seed, epoch, index);
    its ``meta`` is dropped.  Pair it with :class:`Positions`, which picks the positions.
    """

    def __init__(self, ds: MultiTaskDataset, transform, seed: int):
        self.ds, self.transform, self.seed = ds, transform, seed
        self._perm: dict[int, np.ndarray] = {}

    def __len__(self) -> int:  # effectively infinite; the sampler decides what is drawn
        return 1 << 40

    def index_of(self, p: int) -> tuple[int, int]:
        """(epoch, dataset index) of global position ``p``."""
        n = len(self.ds)
        epoch = p // n
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(n)}
        return epoch, int(self._perm[epoch][p % n])

    def __getitem__(self, p: int):
        epoch, idx = self.index_of(p)
        sample = self.ds.load(idx)
        sample = self.transform(sample, np.random.default_rng([self.seed, epoch, idx, 7]))
        sample.pop("meta", None)
        return sample


class Positions(torch.utils.data.Sampler):
    """Yields this rank's sample positions from ``start_step`` to ``steps`` (exclusive).

    Step ``s`` draws positions ``s·batch·world + rank·batch`` … ``+ batch − 1``: each rank its
    own slice of the global batch, so a run is the same at any step it is resumed from.
    """

    def __init__(self, start_step: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = (
            start_step, steps, batch, rank, world)

    def __iter__(self):
        for s in range(self.start, self.steps):
            base = s * self.batch * self.world + self.rank * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.batch


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for training on ``device``: BF16 where the GPU supports it, else FP16;
    None (full FP32) on CPU, where autocast is slower than FP32 on most machines.

    Either way the linear-attention sums run in FP32 (``MTMQLFB.fp32_core``)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then poly(0.9) or cosine decay to 0 at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    t = min(max(t, 0.0), 1.0)
    return (1 - t) ** 0.9 if cfg.schedule == "poly" else 0.5 * (1 + math.cos(math.pi * t))


def multitask_loss(out: dict, batch: dict, task_set: TaskSet, deep_supervision: bool):
    """Σ_t w_t (L_t(final) + L_t(preliminary)); returns (total, {task: final loss}).

    Final outputs are upsampled to the ground truth.  The 1/16 preliminary outputs are
    supervised at 1/4 resolution: upsampling 40-channel logits 16× to full size for a
    deep-supervision term cost as much as the whole forward pass on CPU.
    """
    total = 0.0
    parts = {}
    for t in task_set:
        gt = batch[t.name]
        lt = task_loss(t, out[t.name], gt)
        parts[t.name] = lt.detach()
        total = total + t.loss_weight * lt
        if deep_supervision and "aux" in out:
            total = total + t.loss_weight * task_loss(t, out["aux"][t.name],
                                                            objective(t.kind).aux_downsample(gt, 4))
    return total, parts


class PretrainedUnavailable(MtlsiError, RuntimeError):
    """The backbone's pretrained weights could not be fetched (offline, hub unreachable)."""


def _create(cfg: TrainConfig) -> MTLSINet:
    """The run's model; pretrained backbone weights come through timm from the HF hub."""
    try:
        return create_model(cfg.variant, **cfg.model_overrides)
    except LocalEntryNotFoundError:
        backbone = cfg.model_overrides.get("backbone", VARIANTS[cfg.variant].config.backbone)
        raise PretrainedUnavailable(
            f"pretrained weights of backbone {backbone!r} are not reachable on the Hugging Face "
            "hub and not in the local cache (offline?); connect, or pre-fill the cache "
            "(HF_HOME), or train from scratch with --set pretrained=false") from None


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _join() -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; joins the process group under torchrun
    (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = _dist_info()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                          if torch.cuda.is_available() else "cpu")
    return rank, world, device


def _restore(stem: Path) -> tuple[TrainConfig, MTLSINet, dict]:
    """The run checkpointed at ``stem``: its config, model (train mode) and checkpoint doc."""
    doc, _ = read_checkpoint_meta(stem.with_suffix(".json"))
    cfg = TrainConfig(**{**doc["train_config"],
                         "crop": tuple(doc["train_config"]["crop"]),
                         "scale": tuple(doc["train_config"]["scale"])})
    model = model_from_state_dict(doc["model_config"],
                                  load_weights(stem.with_suffix(".json"))[1],
                                  doc.get("pruned")).train()
    return cfg, model, doc


@dataclass
class _Stepper:
    """What one optimisation step needs: the model (``net``: it, or its DDP wrapper), the
    optimizer, the autocast dtype (None: FP32) and the FP16 loss scaler."""

    cfg: TrainConfig
    model: MTLSINet
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    amp: torch.dtype | None
    scaler: torch.amp.GradScaler
    device: torch.device

    @classmethod
    def build(cls, cfg: TrainConfig, model: MTLSINet, device: torch.device, world: int,
              resumed: tuple[dict, Path] | None) -> _Stepper:  # fmt: skip
        """The optimizer, DDP when ``world`` > 1, autocast and loss scaling per ``cfg.amp``.

        resumed: (checkpoint doc, run folder) to restore the optimizer state and torch RNG from.
        """
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if resumed is not None:
            opt_state, rng = load_training_state(*resumed)
            opt.load_state_dict(opt_state)
            torch.set_rng_state(rng)
        net = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        amp = amp_dtype(device) if cfg.amp else None
        # Only FP16 needs loss scaling; BF16 has FP32's exponent range.
        scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
        return cls(cfg, model, net, opt, amp, scaler, device)

    def step(self, batch: dict, step: int) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Train on ``batch`` at ``step``: (loss, {task: loss}, gradient norm before clipping)."""
        cfg, opt = self.cfg, self.opt
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, cfg)
        with torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext():
            out_ = self.net(batch["image"])
        loss, parts = multitask_loss(out_, batch, self.model.task_set, cfg.deep_supervision)
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        # grad_clip 0 = no clipping (InvPT clips nothing); the norm is logged either way.
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                               cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        self.scaler.step(opt)
        self.scaler.update()
        return loss, parts, gnorm


@dataclass
class _Recorder:
    """Rank 0's bookkeeping: the JSONL log, the progress bar and the checkpoints at ``stem``
    (``meta``: what every checkpoint records besides the step and config)."""

    cfg: TrainConfig
    stem: Path
    meta: dict
    progress: Progress
    bar: TaskID
    t0: float

    def record(self, step: int, stepper: _Stepper, loss: torch.Tensor, parts: dict,
               gnorm: torch.Tensor) -> Path | None:  # fmt: skip
        """Log ``step`` and move the bar; checkpoint when due (then the JSON's path)."""
        cfg = self.cfg
        rec = {"step": step, "loss": float(loss.detach()),
               "lr": stepper.opt.param_groups[0]["lr"], "grad_norm": float(gnorm),
               **{f"loss_{k}": float(v) for k, v in parts.items()},
               "time_s": round(time.perf_counter() - self.t0, 3)}
        if step % cfg.log_every == 0 or step == cfg.steps:
            append_jsonl(self.stem.parent / "log.jsonl", rec)
        self.progress.update(self.bar, completed=step, info=f"loss {rec['loss']:.3f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            return save_checkpoint(self.stem, stepper.model, {**self.meta, "step": step,
                                                              "train_config": asdict(cfg)},
                                   stepper.opt)  # fmt: skip
        return None


def train(cfg: TrainConfig, resume: bool = False, console=None) -> Path:
    """Train; returns the path of the last checkpoint's JSON.  DDP when WORLD_SIZE > 1."""
    rank, world, device = _join()
    out = Path(cfg.out)
    stem = out / "last"
    torch.manual_seed(cfg.seed)
    doc, start = None, 0
    if resume:  # config, weights, optimizer state and torch RNG from the last checkpoint
        cfg, model, doc = _restore(stem)
        start = int(doc["step"])
    else:
        model = _create(cfg)
    cfg.crop = tuple(cfg.crop or model.cfg.input_size)
    model.to(device).train()
    ds = build_dataset(cfg.data, "train", model.task_set)
    stepper = _Stepper.build(cfg, model, device, world, None if doc is None else (doc, out))
    loader = DataLoader(Stream(ds, train_transforms(cfg.crop, cfg.scale), cfg.seed),
                        batch_size=cfg.batch_size,
                        sampler=Positions(start, cfg.steps, cfg.batch_size, rank, world),
                        num_workers=cfg.workers, persistent_workers=False,
                        pin_memory=device.type == "cuda")
    meta = {"model_config": model.cfg.to_dict(), "task_set": model.task_set.to_dict(),
            "variant": cfg.variant}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "train_config.json", asdict(cfg))
    progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/"
                        "{task.total} {task.fields[info]}"), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=rank != 0)
    step = start
    last = stem.with_suffix(".json")
    t0 = time.perf_counter()
    with progress:
        bar = progress.add_task("train", total=cfg.steps, completed=start, info="")
        recorder = _Recorder(cfg, stem, meta, progress, bar, t0)
        for batch in loader:
            loss, parts, gnorm = stepper.step(batch, step)
            step += 1
            if rank == 0:
                last = recorder.record(step, stepper, loss, parts, gnorm) or last
    if world > 1:
        dist.barrier()
    return last


def _collate_eval(batch: list[dict]) -> dict:
    meta = [b.pop("meta") for b in batch]
    out = torch.utils.data.default_collate(batch)
    out["meta"] = meta
    return out


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate` reads and scores a split.

    workers: DataLoader worker processes. limit: only the first ``limit`` images. progress: show
    a progress bar. boundary_monitor: add the fast approximation (``odsF_approx``) next to the
    SEISM scores of boundary tasks. boundary_flavour: the SEISM reader (``seism-nms`` by
    default, or ``mtl``).  boundary_seism: False scores boundary tasks with the fast
    approximation only (SEISM's matching costs 1.5-2 s per image on 2 cores).
    """

    workers: int = 0
    limit: int | None = None
    progress: bool = False
    boundary_monitor: bool = False
    boundary_flavour: str | None = None
    boundary_seism: bool = True


@torch.no_grad()
def evaluate(model: MTLSINet, data: str, split: str = "val", batch_size: int = 4, *,
             options: EvalOptions | None = None, **fields) -> dict:
    """Pooled metrics of every task on a split: ``{task: {metric: value}}``.

    Images are padded to a multiple of 32 (labels untouched), predictions are upsampled to
    the padded size and cropped back to each image's own size. Boundary tasks are scored on
    the SEISM protocol at the task's tolerance. ``options`` (default ``EvalOptions()``), with
    any of its fields overridden by keyword: ``evaluate(model, data, limit=8)``.
    """
    opts = replace(options or EvalOptions(), **fields)  # unknown keywords: TypeError
    model.eval()
    task_set = model.task_set
    ds0 = build_dataset(data, split, task_set)
    h, w = ds0.load(0)["image"].shape[:2]
    pad = (-(-h // 32) * 32, -(-w // 32) * 32)
    ds = build_dataset(data, split, task_set, val_transforms(pad))
    if opts.limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(opts.limit, len(ds))))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=opts.workers,
                        collate_fn=_collate_eval)
    monitors = {t.name: objective(t.kind).monitor(t) for t in task_set
                if (opts.boundary_monitor or not opts.boundary_seism)
                and objective(t.kind).monitor is not None}
    metrics = {t.name: task_metric(t, opts.boundary_flavour) for t in task_set
               if opts.boundary_seism or t.name not in monitors}
    device = next(model.parameters()).device
    it = loader
    if opts.progress:
        it = track(loader, description="eval", total=len(loader))
    for batch in it:
        out = model(batch["image"].to(device))
        for t in task_set:
            raw = F.interpolate(out[t.name].float(), size=batch["image"].shape[-2:],
                                mode="bilinear", align_corners=False)
            pred = task_activate(t, raw).cpu().numpy()
            gt = batch[t.name].numpy()
            for i, m in enumerate(batch["meta"]):
                oh, ow = m["orig_size"]
                p, g = pred[i:i + 1, ..., :oh, :ow], gt[i:i + 1, ..., :oh, :ow]
                if t.name in metrics:
                    metrics[t.name].update(p, g)
                if t.name in monitors:
                    monitors[t.name].update(p, g)
    out = {name: m.compute() for name, m in metrics.items()}
    for name, m in monitors.items():
        out.setdefault(name, {}).update(m.compute())
    return out
