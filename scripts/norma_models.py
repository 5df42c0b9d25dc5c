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

The deep networks (crates/layers/src/models/resnet.rs, `build_deep`): He et al.'s CIFAR ResNet of
depth 6n+2 on 1x28x28 inputs, and the same network without shortcuts, named
`resnet<depth>-<norm>` / `plain<depth>-<norm>` with norm none, batch, group or layer:

    conv1 (1 -> 16, 3x3, padding 1), bn1 | norm1, relu,
    layer1.0 .. layer1.{n-1}   BasicBlock(16), stride 1         (N, 16, 28, 28)
    layer2.0 .. layer2.{n-1}   BasicBlock(32), the first stride 2 (N, 32, 14, 14)
    layer3.0 .. layer3.{n-1}   BasicBlock(64), the first stride 2 (N, 64, 7, 7)
    pool (AdaptiveAvgPool2d(1)), flatten, fc (64 -> 10)

    BasicBlock: conv1 (3x3, stride), bn1 | norm1, ReLU, conv2 (3x3), bn2 | norm2, + shortcut, ReLU;
    shortcut (ResNet only, when stride or width changes): shortcut.0 Conv2d 1x1 (stride),
    shortcut.1 its normalization; otherwise the identity.

Batch norm is BatchNorm2d (named bn1, bn2), group norm GroupNorm(8, C) and layer norm
LayerNorm([C, H, W]) (named norm1, norm2); with none the convolutions have biases, else none.

A library for the scripts next to it and for crates/layers/tests/data/make_lenet_fixtures.py; it
needs torch (scripts/setup-torch-venv.sh makes a venv with it).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
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


# The deep networks (see the module docstring): widths of the three stages, the input side, the
# groups of group norm (norma's NormKind::GROUPS).
DEEP_NORMS = ("none", "batch", "group", "layer")
DEEP_WIDTHS = (16, 32, 64)
DEEP_SIDE = 28
DEEP_GN_GROUPS = 8


def parse_deep(name: str) -> tuple[bool, int, str]:
    """`resnet20-batch` -> (True, 20, "batch"); raises ValueError for another name or a depth
    that is not 6n+2."""
    for family, residual in (("resnet", True), ("plain", False)):
        if name.startswith(family):
            depth, _, norm = name[len(family):].partition("-")
            if depth.isdigit() and norm in DEEP_NORMS and int(depth) >= 8 and (int(depth) - 2) % 6 == 0:
                return residual, int(depth), norm
    raise ValueError(f"unknown network {name!r} (expected resnet<6n+2>-<norm> or plain<6n+2>-<norm>, "
                     f"norm one of {', '.join(DEEP_NORMS)})")


def deep_norm(norm: str, index: int, channels: int, side: int) -> list[tuple[str, nn.Module]]:
    """The normalization `index` after a convolution with `channels` outputs of side x side, as
    a (name, module) list: empty for none."""
    if norm == "batch":
        return [(f"bn{index}", nn.BatchNorm2d(channels))]
    if norm == "group":
        return [(f"norm{index}", nn.GroupNorm(DEEP_GN_GROUPS, channels))]
    if norm == "layer":
        return [(f"norm{index}", nn.LayerNorm([channels, side, side]))]
    return []


class BasicBlock(nn.Module):
    """norma's BasicBlock (crates/layers/src/residual.rs), with its attribute names."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, side: int, shortcut: bool):
        super().__init__()
        bias = norm == "none"
        out_side = (side - 1) // stride + 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.n1 = deep_norm(norm, 1, cout, out_side)
        for name, module in self.n1:
            self.add_module(name, module)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.n2 = deep_norm(norm, 2, cout, out_side)
        for name, module in self.n2:
            self.add_module(name, module)
        self.project = shortcut and (stride != 1 or cin != cout)
        self.identity = shortcut and not self.project
        if self.project:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=bias),
                                          *(m for _, m in deep_norm(norm, 1, cout, out_side)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        for _, m in self.n1:
            y = m(y)
        y = torch.relu(y)
        y = self.conv2(y)
        for _, m in self.n2:
            y = m(y)
        if self.project:
            y = y + self.shortcut(x)
        elif self.identity:
            y = y + x
        return torch.relu(y)


def build_deep(name: str) -> nn.Sequential:
    """A network of norma's `models::resnet` / `models::plain` by its DeepNet name
    (`resnet8-batch`, `plain20-none`), PyTorch's default initialisation (norma's weights are
    loaded over it, or init_deep gives He-normal ones)."""
    residual, depth, norm = parse_deep(name)
    n = (depth - 2) // 6
    layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(1, DEEP_WIDTHS[0], 3, padding=1, bias=norm == "none"))]
    layers += deep_norm(norm, 1, DEEP_WIDTHS[0], DEEP_SIDE)
    layers.append(("relu", nn.ReLU()))
    channels, side = DEEP_WIDTHS[0], DEEP_SIDE
    for stage, width in enumerate(DEEP_WIDTHS):
        blocks = []
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(BasicBlock(channels, width, stride, norm, side, residual))
            channels, side = width, (side - 1) // stride + 1
        layers.append((f"layer{stage + 1}", nn.Sequential(*blocks)))
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, 10))]
    return nn.Sequential(OrderedDict(layers))


def init_deep(model: nn.Module) -> None:
    """norma's initialisation of the deep networks: He-normal (fan_out) convolutions, zero conv
    biases, Xavier-uniform fc with zero bias (norms keep gamma 1, beta 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
