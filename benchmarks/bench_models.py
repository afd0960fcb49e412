"""Whole-model forward: the textbook MNIST CNN (220,234 params) at batch 256, visionkit vs torch, same weights."""

import numpy as np

import visionkit as vk
from visionkit import layers as L
from _harness import median_time, record, run_benchmark

BATCH = 256
CASE = f"MNIST CNN forward, batch {BATCH}"


def mnist_cnn():
    return vk.Sequential([
        L.Conv2D(32, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
        L.MaxPool2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(10, activation="softmax"),
    ], seed=0)


def _macs():
    return 2 * BATCH * (28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 3136 * 64 + 64 * 10)


def test_mnist_cnn_forward(benchmark):
    model = mnist_cnn()
    x = np.random.default_rng(0).random((BATCH, 1, 28, 28), dtype=np.float32)
    run_benchmark(benchmark, CASE, "visionkit", lambda: model.predict(x, batch_size=BATCH), (_macs(), "GFLOP"))


def test_mnist_cnn_forward_torch(torch_mod):
    torch = torch_mod
    model = mnist_cnn()
    convs = [l for l in model.layers if isinstance(l, L.Conv2D)]
    denses = [l for l in model.layers if isinstance(l, L.Dense)]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
        torch.nn.Softmax(dim=1)).eval()
    tl = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        for t, v in zip(tl, convs + denses):
            params = {p.name.split("/")[-1]: p.value for p in v.parameters()}
            t.weight.copy_(torch.from_numpy(params["kernel"]))
            t.bias.copy_(torch.from_numpy(params["bias"]))
        x = np.random.default_rng(0).random((BATCH, 1, 28, 28), dtype=np.float32)
        xt = torch.from_numpy(x)
        np.testing.assert_allclose(net(xt).numpy(), model(x), atol=1e-4)
        record(CASE, "torch", median_time(lambda: net(xt)))
