"""PyTorch mirrors of norma's LeNet models (crates/layers/src/models/mod.rs).

Same layers, same order, same child names, so a norma checkpoint loads into them with
`load_state_dict(strict=True)` and gives the same outputs, and a PyTorch `state_dict()` loads into
norma:

    lenet     conv1 (padding 2), act1, pool1, conv2, act2, pool2, flatten, fc1 (400 -> 120), act3,
              fc2, act4, fc3
    lenet-bn  conv1, bn1, act1, pool1, conv2, bn2, act2, pool2, flatten, fc1 (256 -> 120), bn3,
              act3, fc2, bn4, act4, fc3
    lenet-gn  as lenet-bn with norm1..norm4 = GroupNorm(2, 6), GroupNorm(4, 16), GroupNorm(4, 120),
              GroupNorm(4, 84)
    lenet-ln  as lenet-bn with norm1..norm4 = LayerNorm([6, 24, 24]), LayerNorm([16, 8, 8]),
              LayerNorm([120]), LayerNorm([84])

The activation is sigmoid with 2x2 average pooling (d2l's LeNet) or ReLU with 2x2 max pooling; each
normalization sits before its activation (`before`, the default) or after it (`after`).

A library for the scripts next to it and for crates/layers/tests/data/make_lenet_fixtures.py; it
needs torch (scripts/setup-torch-venv.sh makes a venv with it).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

MODELS = ("lenet", "lenet-bn", "lenet-gn", "lenet-ln")
NORMALIZED = ("lenet-bn", "lenet-gn", "lenet-ln")
ACTIVATIONS = ("sigmoid", "relu")
PLACEMENTS = ("before", "after")
# Groups of group norm after conv1, conv2, fc1 and fc2 (norma's GN_GROUPS).
GN_GROUPS = (2, 4, 4, 4)


def norm_layer(model: str, index: int, channels: int, side: int) -> tuple[str, nn.Module]:
    """Name and module of normalization `index` (1-4) of `model`, after a layer whose output has
    `channels` channels of side x side positions (`side` 0 after a linear layer)."""
    if model == "lenet-bn":
        return f"bn{index}", nn.BatchNorm2d(channels) if side else nn.BatchNorm1d(channels)
    if model == "lenet-gn":
        return f"norm{index}", nn.GroupNorm(GN_GROUPS[index - 1], channels)
    if model == "lenet-ln":
        return f"norm{index}", nn.LayerNorm([channels, side, side] if side else [channels])
    raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")


def build(model: str, activation: str = "sigmoid", placement: str = "before") -> nn.Sequential:
    """One of MODELS with PyTorch's default initialisation (norma's weights are loaded over it)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (expected sigmoid or relu)")
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r} (expected before or after)")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")
    act = nn.Sigmoid if activation == "sigmoid" else nn.ReLU
    pool = (lambda: nn.AvgPool2d(2, 2)) if activation == "sigmoid" else (lambda: nn.MaxPool2d(2, 2))
    plain = model == "lenet"
    layers: list[tuple[str, nn.Module]] = []

    def block(index: int, channels: int, side: int) -> None:
        """Normalization `index` and activation `index`, in the placement's order."""
        pair = [(f"act{index}", act())]
        if not plain:
            norm = norm_layer(model, index, channels, side)
            pair = [norm] + pair if placement == "before" else pair + [norm]
        layers.extend(pair)

    layers.append(("conv1", nn.Conv2d(1, 6, 5, padding=2 if plain else 0)))
    block(1, 6, 24)
    layers += [("pool1", pool()), ("conv2", nn.Conv2d(6, 16, 5))]
    block(2, 16, 8)
    layers += [("pool2", pool()), ("flatten", nn.Flatten()), ("fc1", nn.Linear(400 if plain else 256, 120))]
    block(3, 120, 0)
    layers.append(("fc2", nn.Linear(120, 84)))
    block(4, 84, 0)
    layers.append(("fc3", nn.Linear(84, 10)))
    return nn.Sequential(OrderedDict(layers))
