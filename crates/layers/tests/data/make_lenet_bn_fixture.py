#!/usr/bin/env python3
"""Makes the PyTorch-side fixture of tests/checkpoint.rs (run from the repository root with the
venv that scripts/setup-torch-venv.sh makes):

    /tmp/norma-torch-venv/bin/python crates/layers/tests/data/make_lenet_bn_fixture.py

Writes
- lenet_bn_torch.safetensors: state_dict() of d2l's LeNet-BN after 5 SGD steps (lr 1.0) on random
  batches, so the running statistics and num_batches_tracked are not at their initial values;
- lenet_bn_torch_io.safetensors: 'input' (4, 1, 28, 28) and PyTorch's eval-mode 'output' (4, 10).
"""
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

torch.manual_seed(2024)


class LeNetBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(256, 120)
        self.bn3 = nn.BatchNorm1d(120)
        self.fc2 = nn.Linear(120, 84)
        self.bn4 = nn.BatchNorm1d(84)
        self.fc3 = nn.Linear(84, 10)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x):
        x = self.pool(torch.sigmoid(self.bn1(self.conv1(x))))
        x = self.pool(torch.sigmoid(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        x = torch.sigmoid(self.bn3(self.fc1(x)))
        x = torch.sigmoid(self.bn4(self.fc2(x)))
        return self.fc3(x)


model = LeNetBN()
opt = torch.optim.SGD(model.parameters(), lr=1.0)
for _ in range(5):
    x = torch.rand(32, 1, 28, 28)
    y = torch.randint(0, 10, (32,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
inputs = torch.rand(4, 1, 28, 28)
with torch.no_grad():
    outputs = model(inputs)
here = Path(__file__).parent
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, here / "lenet_bn_torch.safetensors")
save_file({"input": inputs, "output": outputs}, here / "lenet_bn_torch_io.safetensors")
print({k: tuple(v.shape) for k, v in model.state_dict().items()})
