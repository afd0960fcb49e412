"""Training speed and accuracy against PyTorch: the textbook MNIST CNN (keras-mnist-cnn) on Fashion-MNIST, batch 128,
Adam 1e-3, 2 threads each, the same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_train.py -s

- speed: one epoch over the 60,000 training images (the trainer's own loop: loader, forward, loss, backward,
  Adam step), visionkit vs the same network and loop in torch; images/s and the ratio.
- accuracy (only with VISIONKIT_BENCH_ACCURACY=N, N epochs, minutes per epoch here): both trained from the same
  initial weights on the same batches, then scored on the 10,000 test images; the gap should stay within 0.5 points.

Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist); skipped without it.
"""

import os
import time

import numpy as np
import pytest

from _harness import record

CASE = "train keras-mnist-cnn, Fashion-MNIST epoch (60k, batch 128, Adam)"
BATCH = 128


@pytest.fixture(scope="module")
def fashion():
    from visionkit.data import read_fashion_mnist

    try:
        return read_fashion_mnist(split="train"), read_fashion_mnist(split="test")
    except (OSError, ValueError) as e:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist): {e}")


def _visionkit_model():
    from visionkit import registry

    return registry.build("keras-mnist-cnn", num_classes=10, seed=0)


def _torch_twin(torch, model):
    """The same network in torch, with visionkit's initial weights (OIHW / (out, in) layouts are torch's)."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    params = [p.value for p in model.parameters()]
    with torch.no_grad():
        for t, v in zip(list(net.parameters()), params):
            t.copy_(torch.from_numpy(np.ascontiguousarray(v)))
    return net


def _epochs():
    return int(os.environ.get("VISIONKIT_BENCH_ACCURACY", "0") or 0)


def test_one_epoch_visionkit_vs_torch(fashion, torch_mod):
    from visionkit.train.trainer import Trainer

    torch = torch_mod
    train, _ = fashion
    warm = Trainer(_visionkit_model(), seed=0, progress=False)
    warm.fit(train.subset(np.arange(512)), epochs=1, batch_size=BATCH)  # compile / load the kernels first
    trainer = Trainer(_visionkit_model(), seed=0, progress=False)
    t0 = time.perf_counter()
    trainer.fit(train, epochs=1, batch_size=BATCH)
    vk_s = time.perf_counter() - t0

    net = _torch_twin(torch, _visionkit_model())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_all = torch.from_numpy(train.images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    y_all = torch.from_numpy(train.labels)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(train)))
    t0 = time.perf_counter()
    for i in range(0, len(train), BATCH):
        idx = order[i:i + BATCH]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x_all[idx]), y_all[idx])
        loss.backward()
        opt.step()
    torch_s = time.perf_counter() - t0
    record(CASE, "visionkit", vk_s, (len(train), "img"))
    record(CASE, "torch", torch_s)
    print(f"\n{CASE}: visionkit {vk_s:.1f} s ({len(train) / vk_s:,.0f} img/s), torch {torch_s:.1f} s "
          f"({len(train) / torch_s:,.0f} img/s): visionkit / torch = {vk_s / torch_s:.2f}")


@pytest.mark.skipif(_epochs() <= 0, reason="accuracy run: set VISIONKIT_BENCH_ACCURACY=<epochs> (minutes each)")
def test_same_accuracy_as_torch(fashion, torch_mod):
    from visionkit.data import DataLoader
    from visionkit.train.trainer import Trainer

    torch = torch_mod
    train, test = fashion
    epochs = _epochs()
    model = _visionkit_model()
    net = _torch_twin(torch, model)  # same initial weights
    trainer = Trainer(model, seed=0, progress=False)
    trainer.fit(train, epochs=epochs, batch_size=BATCH)
    vk_acc = trainer.evaluate(test)["accuracy"]

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(train, batch_size=BATCH, seed=0, prefetch=0)  # the very batches visionkit saw
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
    with torch.no_grad():
        x = torch.from_numpy(test.images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        torch_acc = float((net(x).argmax(1).numpy() == test.labels).mean())
    print(f"\ntest accuracy after {epochs} epochs: visionkit {vk_acc:.4f}, torch {torch_acc:.4f} "
          f"(gap {abs(vk_acc - torch_acc) * 100:.2f} points)")
