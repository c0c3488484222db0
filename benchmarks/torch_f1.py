"""F1's training step in plain PyTorch: the peer a user would pick instead (the `peers` extra).

The same network and step as keskar_repro.training: 784 -> 5 x [Linear 512, BatchNorm1d,
ReLU] -> Linear 10, Glorot-uniform kernels and zero biases, batch norm with the package's
momentum (torch's momentum = 1 - 0.99) and epsilon 1e-3, mean softmax cross-entropy on pixels
scaled to [0, 1], Adam with optax's defaults (torch.optim.Adam, lr 1e-3, betas 0.9 / 0.999,
eps 1e-8), float32, an epoch = floor(N / B) steps over a fresh permutation, the images kept as
uint8 and scaled per batch, as the package does. `epoch_runner` returns a zero-argument call
that trains the next epoch, for benchmarks/train_throughput.py to time beside the package's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def f1_model(hidden: tuple[int, ...] = (512,) * 5):
    import torch
    from torch import nn

    layers, width = [], 28 * 28
    for h in hidden:
        linear = nn.Linear(width, h)
        layers += [linear, nn.BatchNorm1d(h, eps=1e-3, momentum=0.01), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model.to(torch.float32)


def epoch_runner(x_uint8: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0) -> Callable:
    """A call that trains the next epoch and returns its mean minibatch loss."""
    import torch

    torch.manual_seed(seed)
    model = f1_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(np.ascontiguousarray(x_uint8.reshape(len(x_uint8), -1)))
    labels = torch.from_numpy(np.asarray(y, np.int64))
    steps = len(x) // batch_size
    generator = torch.Generator().manual_seed(seed)

    def epoch() -> float:
        model.train()
        perm = torch.randperm(len(x), generator=generator)[: steps * batch_size]
        total = torch.zeros(())
        for idx in perm.view(steps, batch_size):
            xb = x[idx].to(torch.float32) / 255.0
            loss = loss_fn(model(xb), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        return float(total / steps)

    return epoch
