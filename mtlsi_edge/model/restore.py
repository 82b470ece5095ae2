"""One way to rebuild a model from its config and a state dict, pruned shapes included.

Checkpoints, bundles (the torch targets) and training resume all go through
:func:`model_from_state_dict`; the pruning tool writes checkpoints this reads, and does not
have to be importable to read them.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.model.mtlsi import MTLSIConfig, MTLSINet

#: ``pruned["method"]`` values a checkpoint may record.
PRUNE_METHODS = ("channels", "magnitude")


class WeightsMismatch(MtlsiError, ValueError):
    """A state dict that does not fit the model its config builds."""


def fit_to_state_dict(model: nn.Module, sd: dict[str, torch.Tensor]) -> nn.Module:
    """Shrink a freshly built model's layers to the shapes of a channel-pruned state dict.

    A pruned architecture is fully determined by its tensor shapes, so a pruned checkpoint
    stays plain safetensors + the original config: convs, batch norms, layer norms and
    linears take their new widths from the stored weights (depthwise convs keep groups =
    channels).
    """
    mods = dict(model.named_modules())
    for name, m in mods.items():
        w = sd.get(f"{name}.weight") if name else None
        if w is None:
            continue
        if isinstance(m, nn.Conv2d) and tuple(w.shape) != tuple(m.weight.shape):
            depthwise = m.groups == m.in_channels and m.groups > 1
            out_c = w.shape[0]
            in_c = out_c if depthwise else w.shape[1] * m.groups
            m.out_channels, m.in_channels = out_c, in_c
            if depthwise:
                m.groups = out_c
            m.weight = nn.Parameter(torch.empty_like(w))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(out_c))
        elif isinstance(m, nn.ConvTranspose2d) and tuple(w.shape) != tuple(m.weight.shape):
            m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
            m.weight = nn.Parameter(torch.empty_like(w))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(m.out_channels))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and w.shape[0] != m.num_features:
            n = w.shape[0]
            m.num_features = n
            m.weight, m.bias = nn.Parameter(torch.empty(n)), nn.Parameter(torch.empty(n))
            m.running_mean, m.running_var = torch.zeros(n), torch.ones(n)
        elif isinstance(m, nn.LayerNorm) and tuple(w.shape) != tuple(m.normalized_shape):
            m.normalized_shape = tuple(w.shape)
            m.weight, m.bias = nn.Parameter(torch.empty_like(w)), nn.Parameter(torch.empty_like(w))
        elif isinstance(m, nn.Linear) and tuple(w.shape) != tuple(m.weight.shape):
            m.out_features, m.in_features = w.shape
            m.weight = nn.Parameter(torch.empty_like(w))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(w.shape[0]))
    return model


def model_from_state_dict(config: dict | MTLSIConfig, sd: dict[str, torch.Tensor],
                          pruned: dict | None = None) -> MTLSINet:
    """The ``MTLSINet`` of ``config`` (a dict as checkpoints store it, or a config) holding
    ``sd``, in eval mode; no pretrained download.

    ``pruned``: the checkpoint's pruning record; with ``method == "channels"`` the layers are
    first re-shaped to the stored tensors (:func:`fit_to_state_dict`). Raises
    :class:`~mtlsi_edge.errors.ConfigError` for a bad config and :class:`WeightsMismatch` when
    the weights do not fit.
    """
    cfg = MTLSIConfig.from_dict(config) if isinstance(config, dict) else config
    cfg.pretrained = False
    model = MTLSINet(cfg)
    if (pruned or {}).get("method") == "channels":
        fit_to_state_dict(model, sd)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch: another variant's or a pruned model's weights
        first = str(e).split("size mismatch for ", 1)[-1].split(":")[0]
        raise WeightsMismatch(f"shape mismatch at {first}") from None
    if missing or unexpected:
        raise WeightsMismatch(f"{len(missing)} missing, {len(unexpected)} unexpected, e.g. "
                              f"{(missing or unexpected)[0]}")
    return model.eval()
