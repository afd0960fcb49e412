"""visionkit.train.losses: every loss against a plain-numpy reference written from its definition and against
torch (values and gradients), finite differences in float64, extreme logits, class weights, ignore_index,
label smoothing, probabilities as input, accuracy and the L2 penalty."""

import numpy as np
import pytest
from gradcheck import check_gradients

from visionkit import ops
from visionkit.layers import Parameter
from visionkit.train import (
    BinaryCrossEntropy,
    MeanSquaredError,
    PixelCrossEntropy,
    SmoothL1,
    SoftmaxCrossEntropy,
    accuracy,
    l2_penalty,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

SEEDS = range(4)


def rng_for(seed):
    return np.random.default_rng(1000 + seed)


def logits_labels(seed, scale=3.0):
    rng = rng_for(seed)
    n, k = int(rng.integers(1, 9)), int(rng.integers(2, 7))
    z = (scale * rng.standard_normal((n, k))).astype(np.float32)
    y = rng.integers(0, k, n)
    return rng, z, y


def torch_value_grad(fn, pred, *args, **kw):
    """(loss, d loss / d pred) from torch autograd, in float64."""
    t = torch.tensor(np.asarray(pred, np.float64), requires_grad=True)
    out = fn(t, *args, **kw)
    out.backward()
    return float(out.detach()), t.grad.numpy()


# ------------------------------------------------------------------------------------- numpy references (float64)


def ref_log_softmax(z, axis=1):
    z = np.asarray(z, np.float64)
    s = z - z.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def ref_softmax_ce(z, y, w=None, eps=0.0, reduction="mean"):
    # torch cross_entropy with integer targets: l_i = w[y_i] * -logp[i, y_i], smoothed as
    # (1 - eps) * nll + eps/K * (-sum_k w_k logp_ik); mean divides both by sum_i w[y_i] (N without weights)
    logp = ref_log_softmax(z)
    n, k = logp.shape
    w = np.ones(k) if w is None else np.asarray(w, np.float64)
    nll = np.array([-w[y[i]] * logp[i, y[i]] for i in range(n)])
    smooth = np.array([-(w * logp[i]).sum() for i in range(n)])
    total = (1 - eps) * nll.sum() + eps / k * smooth.sum()
    return total / w[y].sum() if reduction == "mean" else total


def ref_pixel_ce(z, y, ignore, w=None):
    # torch cross_entropy over (N, K, H, W) with ignore_index: mean over the kept pixels, weighted by w[y]
    logp = ref_log_softmax(z)
    n, k, h, wd = logp.shape
    w = np.ones(k) if w is None else w
    num = den = 0.0
    for a in range(n):
        for i in range(h):
            for j in range(wd):
                c = y[a, i, j]
                if c == ignore:
                    continue
                num -= w[c] * logp[a, c, i, j]
                den += w[c]
    return num / den


def ref_bce_logits(x, t, pw=None):
    # torch binary_cross_entropy_with_logits: -(pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), mean
    x = np.asarray(x, np.float64)
    pw = 1.0 if pw is None else pw
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    return float(np.mean(-(pw * t * log_sig + (1 - t) * log_one_minus)))


def ref_mse(p, t):
    # torch mse_loss: mean (p - t)^2
    return float(np.mean((np.asarray(p, np.float64) - t) ** 2))


def ref_smooth_l1(p, t, beta):
    # torch smooth_l1_loss: 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; beta = 0 is l1
    d = np.abs(np.asarray(p, np.float64) - t)
    if beta == 0:
        return float(d.mean())
    return float(np.mean(np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)))


# ------------------------------------------------------------------------------------------ softmax cross-entropy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_ce_matches_reference_and_torch(seed, weighted, eps):
    rng, z, y = logits_labels(seed)
    k = z.shape[1]
    w = rng.uniform(0.2, 3.0, k) if weighted else None
    loss = SoftmaxCrossEntropy(class_weights=w, label_smoothing=eps)
    v = loss(z, y)
    g = loss.backward()
    assert isinstance(v, float) and g.dtype == np.float32 and g.shape == z.shape
    np.testing.assert_allclose(v, ref_softmax_ce(z, y, w, eps), rtol=1e-10)
    tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(y),
                              weight=None if w is None else torch.tensor(w), label_smoothing=eps)
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_ce_one_hot_equals_labels_and_torch_soft_targets(weighted):
    rng, z, y = logits_labels(7)
    k = z.shape[1]
    w = rng.uniform(0.2, 3.0, k) if weighted else None
    onehot = np.eye(k, dtype=np.float32)[y]
    a, b = SoftmaxCrossEntropy(class_weights=w, label_smoothing=0.2), SoftmaxCrossEntropy(class_weights=w,
                                                                                          label_smoothing=0.2)
    np.testing.assert_allclose(a(z, onehot), b(z, y), rtol=1e-12)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-6, atol=1e-8)
    if not weighted:  # soft (probability) targets: torch's cross_entropy with a (N, K) float target
        soft = rng.dirichlet(np.ones(k), size=z.shape[0])
        c = SoftmaxCrossEntropy()
        tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(soft))
        np.testing.assert_allclose(c(z, soft), tv, rtol=1e-10)
        np.testing.assert_allclose(c.backward(), tg, rtol=1e-5, atol=1e-7)


def test_softmax_ce_sum_reduction_and_float64():
    rng, z, y = logits_labels(3)
    w = rng.uniform(0.5, 2.0, z.shape[1])
    loss = SoftmaxCrossEntropy(class_weights=w, reduction="sum")
    z64 = z.astype(np.float64)
    v = loss(z64, y)
    g = loss.backward()
    assert g.dtype == np.float64
    tv, tg = torch_value_grad(F.cross_entropy, z64, torch.tensor(y), weight=torch.tensor(w), reduction="sum")
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(v, ref_softmax_ce(z, y, w, reduction="sum"), rtol=1e-10)


def test_softmax_ce_extreme_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]], np.float32)
    y = np.array([1, 0, 2])
    loss = SoftmaxCrossEntropy(class_weights=[1.0, 2.0, 0.5], label_smoothing=0.1)
    v = loss(z, y)
    g = loss.backward()
    assert np.isfinite(v) and np.all(np.isfinite(g))
    tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(y), weight=torch.tensor([1.0, 2.0, 0.5],
                              dtype=torch.float64), label_smoothing=0.1)
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_ce_from_probabilities(seed):
    rng, z, y = logits_labels(seed)
    w = rng.uniform(0.2, 3.0, z.shape[1])
    p = ops.softmax(z.astype(np.float64))
    p[0, 0] = 1e-9  # below the clip: no gradient there
    loss = SoftmaxCrossEntropy(from_logits=False, class_weights=w)
    v = loss(p, y)
    g = loss.backward()

    def torch_ref(t, y, w):
        return F.nll_loss(torch.log(torch.clamp(t, 1e-7, 1.0)), y, weight=w)

    tv, tg = torch_value_grad(torch_ref, p, torch.tensor(y), torch.tensor(w))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_ce_probabilities_chain_to_the_logits_gradient(eps):
    """A model ending in softmax: the probability gradient, through softmax's backward, is the logits gradient."""
    rng, z, y = logits_labels(5, scale=1.0)
    z = z.astype(np.float64)
    w = rng.uniform(0.5, 2.0, z.shape[1])
    p = ops.softmax(z)
    lp, ll = SoftmaxCrossEntropy(False, w, eps), SoftmaxCrossEntropy(True, w, eps)
    np.testing.assert_allclose(lp(p, y), ll(z, y), rtol=1e-10)
    gz = ops.softmax_backward(lp.backward(), p)
    np.testing.assert_allclose(gz, ll.backward(), rtol=1e-8, atol=1e-12)


def test_softmax_ce_checks_its_inputs():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="labels must be in"):
        SoftmaxCrossEntropy()(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target must be"):
        SoftmaxCrossEntropy()(z, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="class_weights"):
        SoftmaxCrossEntropy(class_weights=[1, 2])(z, np.array([0, 1, 2]))
    with pytest.raises(RuntimeError, match="before backward"):
        SoftmaxCrossEntropy().backward()
    with pytest.raises(ValueError, match="reduction"):
        SoftmaxCrossEntropy(reduction="none")


# ------------------------------------------------------------------------------------------ pixel cross-entropy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_pixel_ce_matches_reference_and_torch(seed, weighted):
    rng = rng_for(seed)
    n, k, h, w_ = (int(v) for v in rng.integers([1, 2, 1, 1], [4, 6, 6, 6]))
    z = (3 * rng.standard_normal((n, k, h, w_))).astype(np.float32)
    y = rng.integers(0, k, (n, h, w_))
    y[rng.random(y.shape) < 0.3] = 255
    y.reshape(-1)[0] = 0  # at least one kept pixel
    cw = rng.uniform(0.2, 3.0, k) if weighted else None
    loss = PixelCrossEntropy(ignore_index=255, class_weights=cw)
    v = loss(z, y)
    g = loss.backward()
    assert g.shape == z.shape and g.dtype == np.float32
    np.testing.assert_allclose(v, ref_pixel_ce(z, y, 255, cw), rtol=1e-10)
    tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(y), ignore_index=255,
                              weight=None if cw is None else torch.tensor(cw))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-5, atol=1e-8)
    # ignored pixels: no gradient, and their logits do not move the loss
    ign = np.broadcast_to((y == 255)[:, None], z.shape)
    assert np.all(g[ign] == 0)
    z2 = z.copy()
    z2[ign] = 1e4 * rng.standard_normal(int(ign.sum()))
    np.testing.assert_allclose(PixelCrossEntropy(class_weights=cw)(z2, y), v, rtol=1e-12)


def test_pixel_ce_extreme_logits_all_ignored_and_bad_labels():
    z = np.array([1e4, -1e4, 0.0, 3.0], np.float32).reshape(1, 2, 1, 2).repeat(2, axis=2)
    y = np.array([[[1, 0], [255, 1]]])
    loss = PixelCrossEntropy()
    v = loss(z, y)
    g = loss.backward()
    tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(y), ignore_index=255)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-6, atol=1e-8)
    # every pixel ignored: 0 and no gradient (torch gives nan)
    assert loss(z, np.full_like(y, 255)) == 0.0 and not loss.backward().any()
    with pytest.raises(ValueError, match="outside"):
        loss(z, np.array([[[1, 2], [0, 0]]]))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(z, np.zeros((1, 2, 3), int))


def test_pixel_ce_sum_reduction():
    rng = rng_for(9)
    z = rng.standard_normal((2, 3, 4, 5))
    y = rng.integers(0, 3, (2, 4, 5))
    y[0, 0] = 7
    loss = PixelCrossEntropy(ignore_index=7, reduction="sum")
    tv, tg = torch_value_grad(F.cross_entropy, z, torch.tensor(y), ignore_index=7, reduction="sum")
    np.testing.assert_allclose(loss(z, y), tv, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), tg, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------ binary cross-entropy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pos_weight", [None, "vector"])
def test_bce_with_logits_matches_reference_and_torch(seed, pos_weight):
    rng = rng_for(seed)
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(2, 5))))
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    t = rng.random(shape)
    hard = rng.random(shape) < 0.5  # some hard 0/1 targets among the soft ones
    t[hard] = np.round(t[hard])
    pw = rng.uniform(0.5, 4.0, shape[-1]) if pos_weight else None
    loss = BinaryCrossEntropy(pos_weight=pw)
    v = loss(x, t)
    g = loss.backward()
    assert g.shape == x.shape and g.dtype == np.float32
    np.testing.assert_allclose(v, ref_bce_logits(x, t, pw), rtol=1e-10)
    tv, tg = torch_value_grad(F.binary_cross_entropy_with_logits, x, torch.tensor(t),
                              pos_weight=None if pw is None else torch.tensor(pw))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-5, atol=1e-8)


def test_bce_extreme_logits_and_probabilities():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 30.0]], np.float32)
    t = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.5]])
    pw = np.array([2.0, 0.5, 3.0])
    loss = BinaryCrossEntropy(pos_weight=pw)
    v, g = loss(x, t), loss.backward()
    tv, tg = torch_value_grad(F.binary_cross_entropy_with_logits, x, torch.tensor(t), pos_weight=torch.tensor(pw))
    assert np.isfinite(v) and np.all(np.isfinite(g))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-6, atol=1e-8)
    # probabilities in (a sigmoid head), 0 and 1 included: clipped to [1e-7, 1 - 1e-7]
    p = np.array([[0.0, 1.0, 0.3], [1e-9, 0.999, 0.5]])
    lp = BinaryCrossEntropy(from_logits=False)
    v, g = lp(p, t), lp.backward()

    def torch_ref(q, t):
        return F.binary_cross_entropy(torch.clamp(q, 1e-7, 1 - 1e-7), t)

    tv, tg = torch_value_grad(torch_ref, p, torch.tensor(t))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12)
    # pos_weight on probabilities: numpy reference
    lw = BinaryCrossEntropy(from_logits=False, pos_weight=pw)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(lw(p, t), np.mean(-(pw * t * np.log(pc) + (1 - t) * np.log(1 - pc))), rtol=1e-12)


# ------------------------------------------------------------------------------------------ regression losses


@pytest.mark.parametrize("seed", SEEDS)
def test_mse_matches_reference_and_torch(seed):
    rng = rng_for(seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, 3))
    p = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    loss = MeanSquaredError()
    v, g = loss(p, t), loss.backward()
    np.testing.assert_allclose(v, ref_mse(p, t), rtol=1e-10)
    tv, tg = torch_value_grad(F.mse_loss, p, torch.tensor(t, dtype=torch.float64))
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-6, atol=1e-8)
    ls = MeanSquaredError(reduction="sum")
    np.testing.assert_allclose(ls(p, t), ref_mse(p, t) * p.size, rtol=1e-10)
    with pytest.raises(ValueError, match="shape"):
        loss(p, t[..., :-1] if t.shape[-1] > 1 else np.zeros(t.shape + (2,)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", [1.0, 0.25, 0.0])
def test_smooth_l1_matches_reference_and_torch(seed, beta):
    rng = rng_for(seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, 2)) + (4,)
    p = (2 * rng.standard_normal(shape)).astype(np.float32)
    t = (2 * rng.standard_normal(shape)).astype(np.float32)
    loss = SmoothL1(beta=beta)
    v, g = loss(p, t), loss.backward()
    np.testing.assert_allclose(v, ref_smooth_l1(p, t, beta), rtol=1e-10)
    tv, tg = torch_value_grad(F.smooth_l1_loss, p, torch.tensor(t, dtype=torch.float64), beta=beta)
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tg, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------ finite differences


def _gradcheck(make_loss, pred, target, **kw):
    """The loss as a 0-d float64 'op' of pred, its backward scaled by grad_out, against central differences."""
    def forward(p):
        return np.asarray(make_loss()(p, target), np.float64)

    def backward(R, p):
        fn = make_loss()
        fn(p, target)
        return float(R) * fn.backward()

    check_gradients(forward, [pred], backward, **kw)


def test_finite_differences_float64():
    rng = rng_for(42)
    z = rng.standard_normal((3, 4))
    y = np.array([0, 3, 1])
    w = np.array([0.5, 2.0, 1.0, 1.5])
    _gradcheck(lambda: SoftmaxCrossEntropy(class_weights=w, label_smoothing=0.15), z, y)
    _gradcheck(lambda: SoftmaxCrossEntropy(), z, rng.dirichlet(np.ones(4), 3))
    p = ops.softmax(z)
    _gradcheck(lambda: SoftmaxCrossEntropy(from_logits=False, class_weights=w, label_smoothing=0.1), p, y, eps=1e-7)
    zp = rng.standard_normal((2, 3, 2, 3))
    yp = rng.integers(0, 3, (2, 2, 3))
    yp[0, 0, 0] = yp[1, 1, 2] = 255
    _gradcheck(lambda: PixelCrossEntropy(class_weights=[1.0, 0.3, 2.0]), zp, yp)
    x = rng.standard_normal((3, 4)) * 3
    t = rng.random((3, 4))
    _gradcheck(lambda: BinaryCrossEntropy(pos_weight=[1.0, 2.0, 0.5, 3.0]), x, t)
    pr = rng.uniform(0.05, 0.95, (3, 4))
    _gradcheck(lambda: BinaryCrossEntropy(from_logits=False, pos_weight=2.0), pr, t, eps=1e-7)
    _gradcheck(lambda: MeanSquaredError(), x, t)
    d = rng.standard_normal((3, 4))
    d[np.abs(d - t) < 0.02] += 0.1  # keep away from the kinks at |d| = beta
    _gradcheck(lambda: SmoothL1(beta=0.5), d, t)


# ------------------------------------------------------------------------------------------ devices


def test_device_arrays_in_device_gradient_out():
    """CUDA device arrays (the simulator here): the loss is computed on the host, the gradient goes back."""
    from visionkit.device import is_device_array

    _, z, y = logits_labels(2)
    host = SoftmaxCrossEntropy()
    v = host(z, y)
    dev = SoftmaxCrossEntropy()
    assert dev(ops.to_device(z, "cuda"), y) == v
    g = dev.backward()
    assert is_device_array(g)
    np.testing.assert_array_equal(ops.to_numpy(g), host.backward())


# ------------------------------------------------------------------------------------------ accuracy, L2


def test_accuracy():
    z = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 1.0]], np.float32)
    assert accuracy(z, np.array([1, 0, 1, 1])) == 0.75
    assert accuracy(z, np.eye(2)[[1, 0, 1, 1]]) == 0.75
    zp = np.zeros((1, 3, 2, 2), np.float32)
    zp[0, 2] = 1.0
    yp = np.array([[[2, 2], [0, 255]]])
    assert accuracy(zp, yp, ignore_index=255) == pytest.approx(2 / 3)
    assert accuracy(zp, yp) == 0.5
    assert accuracy(zp, np.full_like(yp, 255), ignore_index=255) == 0.0


def test_l2_penalty_value_and_gradient():
    rng = rng_for(0)
    a = Parameter("kernel", rng.standard_normal((3, 4)).astype(np.float32))
    b = Parameter("bias", rng.standard_normal(4).astype(np.float32))
    frozen = Parameter("frozen", np.ones(2, np.float32), trainable=False)
    g0 = rng.standard_normal((3, 4)).astype(np.float32)
    a.grad = g0.copy()
    v = l2_penalty([a, b, frozen], 0.01)
    ref = 0.5 * 0.01 * (np.sum(a.value.astype(np.float64) ** 2) + np.sum(b.value.astype(np.float64) ** 2))
    np.testing.assert_allclose(v, ref, rtol=1e-12)
    np.testing.assert_allclose(a.grad, g0 + np.float32(0.01) * a.value, rtol=1e-6)
    np.testing.assert_allclose(b.grad, np.float32(0.01) * b.value, rtol=1e-6)
    assert frozen.grad is None and a.grad.dtype == np.float32
