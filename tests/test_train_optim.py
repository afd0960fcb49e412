"""visionkit.train.optim and .schedules against torch.optim: five steps of every optimizer on the same parameters
and gradients, the state round trip through a safetensors file (bit-for-bit), gradient clipping, the lr schedules
over 30 epochs, and one small end-to-end training run."""

import json
import warnings

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit import ops
from visionkit.layers import Parameter
from visionkit.train import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ReduceLROnPlateau,
    RMSprop,
    SoftmaxCrossEntropy,
    StepLR,
    clip_grad_norm,
    clip_grad_value,
    flat_state,
    from_flat_state,
)

torch = pytest.importorskip("torch")

SHAPES = [("conv/kernel", (4, 3, 3, 3)), ("conv/bias", (4,)), ("dense/kernel", (5, 7)), ("dense/bias", (5,))]


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(name, rng.standard_normal(shape).astype(np.float32)) for name, shape in SHAPES]


def make_grads(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape).astype(np.float32) for _, shape in SHAPES] for _ in range(steps)]


def run_ours(cls, kw, params, grads):
    opt = cls(params, **kw)
    history = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.copy()
        opt.step()
        history.append([p.value.copy() for p in params])
    return opt, history


def run_torch(cls, kw, init, grads):
    ts = [torch.tensor(p.value.copy(), requires_grad=True) for p in init]
    opt = cls(ts, foreach=False, **kw)
    history = []
    for gs in grads:
        for t, g in zip(ts, gs):
            t.grad = torch.tensor(g)
        opt.step()
        history.append([t.detach().numpy().copy() for t in ts])
    return history


CONFIGS = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3}),
    (Adam, torch.optim.Adam, {}),
    (Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": 1e-2}),
    (Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3}),
    (Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.5, 0.9), "eps": 1e-6}),
    (AdamW, torch.optim.AdamW, {"lr": 1e-2}),
    (AdamW, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    (RMSprop, torch.optim.RMSprop, {}),
    (RMSprop, torch.optim.RMSprop, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-2}),
    (RMSprop, torch.optim.RMSprop, {"lr": 1e-2, "alpha": 0.9, "momentum": 0.5, "centered": True}),
]


def _id(cfg):
    return cfg[0].__name__ + "-" + "-".join(f"{k}={v}" for k, v in cfg[2].items())


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_five_steps_match_torch(cfg):
    ours, theirs, kw = cfg
    grads = make_grads(5)
    params = make_params()
    _, mine = run_ours(ours, kw, params, grads)
    ref = run_torch(theirs, kw, make_params(), grads)
    for step, (a, b) in enumerate(zip(mine, ref)):
        for p, x, y in zip(params, a, b):
            assert x.dtype == np.float32
            np.testing.assert_allclose(x, y, rtol=2e-6, atol=2e-7, err_msg=f"step {step + 1}, {p.name}")


def test_skips_frozen_parameters_and_missing_grads():
    params = make_params()
    before = [p.value.copy() for p in params]
    params[1].trainable = False
    params[1].grad = np.ones(params[1].shape, np.float32)
    params[2].grad = None
    params[0].grad = np.ones(params[0].shape, np.float32)
    params[3].grad = np.ones(params[3].shape, np.float32)
    opt = Adam(params, lr=0.1)
    value0 = params[0].value
    opt.step()
    assert params[0].value is value0  # in place
    assert not np.array_equal(params[0].value, before[0]) and not np.array_equal(params[3].value, before[3])
    np.testing.assert_array_equal(params[1].value, before[1])
    np.testing.assert_array_equal(params[2].value, before[2])
    sd = opt.state_dict()
    assert sorted(sd["state"]) == ["conv/kernel", "dense/bias"]
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("cfg", [CONFIGS[2], CONFIGS[6], CONFIGS[9], CONFIGS[12]], ids=_id)
def test_state_round_trip_through_safetensors_is_bit_exact(cfg, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    ours, _, kw = cfg
    grads = make_grads(5)
    full_params = make_params()
    full_opt, _ = run_ours(ours, kw, full_params, grads)

    params = make_params()
    opt, _ = run_ours(ours, kw, params, grads[:3])
    arrays, scalars = opt.flat_state()
    assert all(k.startswith("optimizer/") and k.count("/") == 3 for k in arrays)
    weights = {f"model/{p.name}": p.value for p in params}
    path = tmp_path / "ckpt.safetensors"
    save_file({**weights, **arrays}, str(path), metadata={"optimizer": json.dumps(scalars)})

    with safe_open(str(path), framework="np") as f:
        meta = json.loads(f.metadata()["optimizer"])
        loaded = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    resumed = [Parameter(p.name, loaded[f"model/{p.name}"].copy()) for p in reversed(params)]  # order irrelevant
    fresh_kw = {k: v for k, v in kw.items() if k != "lr"}
    opt2 = ours(resumed, lr=123.0, **fresh_kw)  # the lr comes back from the state
    opt2.load_flat_state(loaded, meta)
    assert opt2.lr == kw.get("lr", 1e-3 if ours is not SGD else None)
    for gs in grads[3:]:
        for p, g in zip(resumed, reversed(gs)):
            p.grad = g.copy()
        opt2.step()
    by_name = {p.name: p.value for p in resumed}
    for p in full_params:
        assert np.array_equal(by_name[p.name], p.value), p.name
    a, b = full_opt.state_dict(), opt2.state_dict()
    assert a["hyper"] == b["hyper"] and sorted(a["state"]) == sorted(b["state"])
    for name, st in a["state"].items():
        for k, v in st.items():
            assert np.array_equal(v, b["state"][name][k]), (name, k)


def test_flat_state_helpers_and_load_checks():
    params = make_params()
    opt, _ = run_ours(RMSprop, {"momentum": 0.9}, params, make_grads(2))
    sd = opt.state_dict()
    arrays, scalars = flat_state(sd, prefix="opt")
    json.dumps(scalars)
    assert set(arrays) == {f"opt/{n}/{s}" for n, _ in SHAPES for s in ("square_avg", "momentum_buffer")}
    assert scalars["steps"] == {n: 2 for n, _ in SHAPES} and scalars["type"] == "RMSprop"
    back = from_flat_state({**arrays, "model/x": np.zeros(1)}, scalars, prefix="opt")
    assert back["hyper"] == sd["hyper"]
    for name, st in sd["state"].items():
        assert back["state"][name]["step"] == st["step"]
        np.testing.assert_array_equal(back["state"][name]["square_avg"], st["square_avg"])
    with pytest.raises(ValueError, match="RMSprop optimizer"):
        Adam(make_params()).load_state_dict(sd)
    with pytest.raises(ValueError, match="no parameter named"):
        RMSprop(make_params()[:2]).load_state_dict(sd)
    RMSprop(make_params()[:2]).load_state_dict(sd, strict=False)
    bad = make_params()
    bad[0] = Parameter("conv/kernel", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        RMSprop(bad).load_state_dict(sd)
    with pytest.raises(ValueError, match="unique"):
        SGD([Parameter("a", np.zeros(1)), Parameter("a", np.zeros(1))], lr=0.1)


def test_device_parameters_update_through_the_host():
    """CUDA device arrays (the simulator here): the same numbers as on the CPU, the device array updated in place."""
    grads = make_grads(2)
    cpu = make_params()
    run_ours(Adam, {"lr": 1e-2, "amsgrad": True}, cpu, grads)
    dev = make_params()
    for p in dev:
        p.value = ops.to_device(p.value, "cuda")
    handles = [p.value for p in dev]
    opt = Adam(dev, lr=1e-2, amsgrad=True)
    for gs in grads:
        for p, g in zip(dev, gs):
            p.grad = ops.to_device(g, "cuda")
        opt.step()
    for p, c, h in zip(dev, cpu, handles):
        assert p.value is h
        np.testing.assert_array_equal(ops.to_numpy(p.value), c.value)


# ---------------------------------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e4])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    params = make_params()
    grads = make_grads(1)[0]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    params[1].grad = None
    ts = [torch.tensor(p.value, requires_grad=True) for p in params]
    for t, p in zip(ts, params):
        t.grad = None if p.grad is None else torch.tensor(p.grad)
    total = clip_grad_norm(params, max_norm, norm_type=norm_type)
    ref = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type=norm_type, foreach=False)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, float(ref), rtol=1e-6)
    for p, t in zip(params, ts):
        if p.grad is None:
            assert t.grad is None
            continue
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-6, atol=1e-8)
    assert clip_grad_norm([Parameter("x", np.zeros(2, np.float32))], 1.0) == 0.0


def test_clip_grad_value_matches_torch():
    params = make_params()
    for p, g in zip(params, make_grads(1)[0]):
        p.grad = g.copy()
    ts = [torch.tensor(p.value, requires_grad=True) for p in params]
    for t, p in zip(ts, params):
        t.grad = torch.tensor(p.grad)
    clip_grad_value(params, 0.7)
    torch.nn.utils.clip_grad_value_(ts, 0.7)
    for p, t in zip(params, ts):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


# ---------------------------------------------------------------------------------------------------- schedules


def _torch_opt(lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def _lr_sequence(opt, sched, get_lr, metrics=None, epochs=30):
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in range(epochs):
            lrs.append(get_lr(opt))
            sched.step() if metrics is None else sched.step(metrics[e])
    return lrs


SCHEDULES = [
    (StepLR, torch.optim.lr_scheduler.StepLR, {"step_size": 7, "gamma": 0.3}),
    (StepLR, torch.optim.lr_scheduler.StepLR, {"step_size": 1, "gamma": 0.9}),
    (CosineAnnealingLR, torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 10, "eta_min": 1e-3}),
    (CosineAnnealingLR, torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 30}),
]


@pytest.mark.parametrize("cfg", SCHEDULES, ids=lambda c: f"{c[0].__name__}-{c[2]}")
def test_schedules_match_torch_over_30_epochs(cfg):
    ours, theirs, kw = cfg
    opt = SGD(make_params(), lr=0.1)
    mine = _lr_sequence(opt, ours(opt, **kw), lambda o: o.lr)
    topt = _torch_opt(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tsched = theirs(topt, **kw)
    ref = _lr_sequence(topt, tsched, lambda o: o.param_groups[0]["lr"])
    np.testing.assert_allclose(mine, ref, rtol=1e-15, atol=0)


LOSSES = [1.0, 0.9, 0.85, 0.85, 0.86, 0.849, 0.87, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7999, 0.8, 0.81, 0.5, 0.5,
          0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.5, 0.5, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("kw", [
    {"factor": 0.5, "patience": 2},
    {"factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.02, "threshold": 0.01},
    {"mode": "max", "factor": 0.3, "patience": 0, "threshold": 0.05, "threshold_mode": "abs"},
])
def test_reduce_on_plateau_matches_torch(kw):
    opt = SGD(make_params(), lr=0.1)
    mine = _lr_sequence(opt, ReduceLROnPlateau(opt, **kw), lambda o: o.lr, LOSSES)
    topt = _torch_opt(0.1)
    ref = _lr_sequence(topt, torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw),
                       lambda o: o.param_groups[0]["lr"], LOSSES)
    assert mine == ref
    assert len(set(mine)) > 1


@pytest.mark.parametrize("make", [
    lambda o: CosineAnnealingLR(o, T_max=8, eta_min=0.01),
    lambda o: StepLR(o, 5, 0.5),
    lambda o: ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1),
])
def test_schedule_state_round_trip(make):
    def drive(sched, opt, epochs):
        out = []
        for e in epochs:
            out.append(opt.lr)
            sched.step(LOSSES[e]) if isinstance(sched, ReduceLROnPlateau) else sched.step()
        return out

    opt = SGD(make_params(), lr=0.1)
    full = drive(make(opt), opt, range(30))
    opt = SGD(make_params(), lr=0.1)
    sched = make(opt)
    first = drive(sched, opt, range(12))
    saved_opt, saved_sched = opt.state_dict(), json.loads(json.dumps(sched.state_dict()))
    opt2 = SGD(make_params(), lr=0.1)
    opt2.load_state_dict(saved_opt)
    sched2 = make(opt2)
    sched2.load_state_dict(saved_sched)
    assert first + drive(sched2, opt2, range(12, 30)) == full


# ---------------------------------------------------------------------------------------------------- end to end


def test_tiny_cnn_trains_with_adam():
    rng = np.random.default_rng(0)
    model = vk.Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(1, 8, 8)),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(3),
    ], seed=0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    loss_fn = SoftmaxCrossEntropy()
    opt = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        losses.append(loss_fn(model(x, training=True), y))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses
