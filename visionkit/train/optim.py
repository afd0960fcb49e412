"""Optimizers with torch.optim's update rules, gradient clipping, and optimizer state as plain arrays.

    opt = Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        loss = loss_fn(model(x, training=True), y)
        model.backward(loss_fn.backward())      # fills p.grad
        clip_grad_norm(model.parameters(), 5.0)  # optional
        opt.step()                               # updates p.value in place
    arrays, scalars = opt.flat_state()           # {"optimizer/<param name>/<slot>": array}, JSON-able dict

Every optimizer takes a list of ``Parameter`` (or anything with ``.parameters()``, e.g. a model) and, on ``step()``,
skips parameters whose ``trainable`` is False, whose ``grad`` is None or whose value is not allocated. The update
follows torch.optim's single-tensor code (``foreach=False``) operation by operation in the parameter's dtype
(float32), with torch's state slot names (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``,
``square_avg``, ``grad_avg``) and a per-parameter ``step`` count. The multiply-adds that torch's vectorised CPU
kernels fuse (``add(alpha=)``, ``addcmul``, ``lerp``) are fused here too (``_fma``), so SGD steps equal torch's
bit for bit; Adam and RMSprop differ by an ulp here and there because torch's vectorised float32 ``sqrt`` is not
correctly rounded (numpy's is).

Weight decay: ``SGD``, ``Adam`` and ``RMSprop`` take torch's coupled L2 (``grad += weight_decay * w`` before the
update, the same gradient as ``losses.l2_penalty``); ``AdamW`` decays decoupled (``w *= 1 - lr * weight_decay``
before the Adam update), as ``torch.optim.AdamW``.

CUDA: parameters on the GPU are updated through the host: the value and gradient are copied down, updated with
the same numpy code, and the value is copied back into its device array in place; the optimizer's state lives on
the host as numpy arrays. Correct and simple; it costs two transfers per parameter per step.

State: ``state_dict()`` is a plain dict keyed by parameter NAME (``"conv2d/kernel"``), holding numpy copies and
Python numbers; ``load_state_dict`` matches by name. ``flat_state`` / ``from_flat_state`` turn it into a flat
``{"optimizer/<name>/<slot>": array}`` dict (for a safetensors file) plus a JSON-able dict of scalars (type,
hyperparameters, step counts) and back.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..device import is_device_array

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "clip_grad_norm",
    "clip_grad_value",
    "flat_state",
    "from_flat_state",
]


def _param_list(params):
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    out, seen = [], set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _host(a):
    return ops.to_numpy(a) if is_device_array(a) else np.asarray(a)


def _fma(a, b, c):
    """a * b + c with one rounding, as the fused multiply-add of torch's vectorised CPU kernels (``add`` with
    ``alpha``, ``addcmul``, ``lerp``). float32 is emulated exactly through float64 (the product of two float32
    numbers is exact there); other dtypes use plain numpy arithmetic."""
    if np.result_type(a, b, c) == np.float32:
        return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)
    return a * b + c


def _lerp_(a, b, w):
    """torch's lerp_ (a += w (b - a)) in place, with its two branches: w < 0.5: fma(w, b - a, a), else
    fma(w - 1, b - a, b)."""
    f = a.dtype.type
    if abs(w) < 0.5:
        a[...] = _fma(f(w), b - a, a)
    else:
        a[...] = _fma(f(w) - f(1.0), b - a, b)


class Optimizer:
    """Base class. Subclasses set ``slots`` and implement ``_update(value, grad, state)`` (numpy, in place)."""

    slots: tuple = ()

    def __init__(self, params, lr, **hyper):
        self.params = _param_list(params)
        names = [p.name for p in self.params]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"{type(self).__name__}: parameter names must be unique (the state is keyed by "
                             f"name); repeated: {', '.join(dups)}")
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        self.lr = float(lr)
        self._hyper = ("lr",) + tuple(hyper)
        for k, v in hyper.items():
            setattr(self, k, v)
        self.state = [{} for _ in self.params]  # per parameter (by position): {"step": int, slot: array}

    # ---- stepping ---------------------------------------------------------------------------------------------
    def step(self):
        """One update of every trainable parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if not p.trainable or p.grad is None or p.value is None:
                continue
            dev = is_device_array(p.value)
            v = _host(p.value)
            if not dev and not (v.flags.writeable and v.flags.c_contiguous and isinstance(p.value, np.ndarray)):
                v = np.array(v, order="C")
                p.value = v
            if dev:
                v = np.ascontiguousarray(v)
            g = np.asarray(_host(p.grad), dtype=v.dtype)
            if g.shape != v.shape:
                raise ValueError(f"{type(self).__name__}: grad of {p.name!r} has shape {g.shape}, "
                                 f"the parameter {v.shape}")
            st = self.state[i]
            if "step" not in st:
                st["step"] = 0
                self._init_state(v, st)
            self._update(v, g, st)
            if dev:
                p.value.copy_to_device(v)

    def _init_state(self, v, st):
        pass

    def _update(self, v, g, st):  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self):
        """Set every parameter's grad to None (torch's default ``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    # ---- state ------------------------------------------------------------------------------------------------
    def hyperparameters(self):
        out = {}
        for k in self._hyper:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def state_dict(self):
        """{"type": class name, "hyper": {lr, ...}, "state": {param name: {"step": int, slot: numpy copy}}}."""
        state = {}
        for p, st in zip(self.params, self.state):
            if st:
                state[p.name] = {k: (int(v) if k == "step" else np.array(v, copy=True)) for k, v in st.items()}
        return {"type": type(self).__name__, "hyper": self.hyperparameters(), "state": state}

    def load_state_dict(self, d, strict=True):
        """Restore hyperparameters and per-parameter state, matched by parameter name.

        ``strict``: a state entry for a name this optimizer does not hold raises (else it is ignored). Parameters
        without an entry start fresh. Arrays are copied (in the parameter's dtype) and their shapes checked.
        """
        kind = d.get("type", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is of a {kind} optimizer")
        for k, v in d.get("hyper", {}).items():
            if k in self._hyper:
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
        index = {p.name: i for i, p in enumerate(self.params)}
        unknown = [n for n in d.get("state", {}) if n not in index]
        if unknown and strict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: no parameter named {', '.join(unknown)}")
        new = [{} for _ in self.params]
        for name, st in d.get("state", {}).items():
            if name not in index:
                continue
            p = self.params[index[name]]
            dtype = np.float32 if p.value is None else _host_dtype(p.value)
            for k, v in st.items():
                if k == "step":
                    new[index[name]]["step"] = int(v)
                    continue
                if k not in self.slots:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: unknown slot {k!r} for {name!r}")
                a = np.array(_host(v), dtype=dtype, order="C", copy=True)
                if a.shape != tuple(p.shape):
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {name}/{k} has shape {a.shape}, "
                                     f"the parameter {tuple(p.shape)}")
                new[index[name]][k] = a
            new[index[name]].setdefault("step", 0)
        self.state = new

    def flat_state(self, prefix="optimizer"):
        """(arrays, scalars): ``{"<prefix>/<param name>/<slot>": array}`` and a JSON-able dict; see
        ``flat_state``."""
        return flat_state(self.state_dict(), prefix)

    def load_flat_state(self, arrays, scalars, prefix="optimizer", strict=True):
        """Inverse of ``flat_state``: load from the two dicts (e.g. read back from a safetensors file)."""
        self.load_state_dict(from_flat_state(arrays, scalars, prefix), strict=strict)

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


def _host_dtype(a):
    return a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def flat_state(state_dict, prefix="optimizer"):
    """Split an optimizer ``state_dict`` into ``(arrays, scalars)``.

    arrays:  {"<prefix>/<param name>/<slot>": numpy array}: ready for a safetensors file.
    scalars: {"type": ..., "hyper": {...}, "steps": {param name: int}}: JSON-able (json.dumps) metadata.
    """
    arrays, steps = {}, {}
    for name, st in state_dict["state"].items():
        for k, v in st.items():
            if k == "step":
                steps[name] = int(v)
            else:
                arrays[f"{prefix}/{name}/{k}"] = np.ascontiguousarray(v)
    return arrays, {"type": state_dict["type"], "hyper": dict(state_dict["hyper"]), "steps": steps}


def from_flat_state(arrays, scalars, prefix="optimizer"):
    """Rebuild a ``state_dict`` from ``flat_state``'s two dicts; array keys outside ``<prefix>/`` are ignored
    (so the arrays of a whole checkpoint, weights included, may be passed)."""
    state = {name: {"step": int(s)} for name, s in scalars.get("steps", {}).items()}
    head = prefix + "/"
    for key, arr in arrays.items():
        if not key.startswith(head):
            continue
        name, _, slot = key[len(head):].rpartition("/")
        if not name:
            raise ValueError(f"from_flat_state: key {key!r} is not '{prefix}/<param name>/<slot>'")
        state.setdefault(name, {"step": 0})[slot] = np.asarray(arr)
    return {"type": scalars["type"], "hyper": dict(scalars.get("hyper", {})), "state": state}


# ---------------------------------------------------------------------------------------------------- optimizers


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``:

        g = grad + weight_decay * w                                   (coupled L2)
        buf = g (first step), else buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or g = buf
        w -= lr * g
    """

    slots = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        if momentum < 0 or weight_decay < 0:
            raise ValueError("SGD: momentum and weight_decay must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs a momentum > 0 and zero dampening")
        super().__init__(params, lr, momentum=float(momentum), nesterov=bool(nesterov),
                         weight_decay=float(weight_decay), dampening=float(dampening))

    def _update(self, v, g, st):
        f = v.dtype.type
        st["step"] += 1
        if self.weight_decay != 0:
            g = _fma(v, f(self.weight_decay), g)
        if self.momentum != 0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= f(self.momentum)
                buf[...] = _fma(g, f(1.0 - self.dampening), buf)
            g = _fma(buf, f(self.momentum), g) if self.nesterov else buf
        v[...] = _fma(g, f(-self.lr), v)


class Adam(Optimizer):
    """Adam (``amsgrad``: AMSGrad), as ``torch.optim.Adam``:

        g = grad + weight_decay * w                                   (coupled L2)
        m = lerp(m, g, 1 - beta1);  s = beta2 s + (1 - beta2) g^2;  smax = max(smax, s) (amsgrad)
        w -= lr / (1 - beta1^t) * m / (sqrt(s or smax) / sqrt(1 - beta2^t) + eps)
    """

    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0")
        super().__init__(params, lr, betas=(b1, b2), eps=float(eps), weight_decay=float(weight_decay),
                         amsgrad=bool(amsgrad))

    def _init_state(self, v, st):
        st["exp_avg"] = np.zeros_like(v)
        st["exp_avg_sq"] = np.zeros_like(v)
        if self.amsgrad:
            st["max_exp_avg_sq"] = np.zeros_like(v)

    def _update(self, v, g, st):
        f = v.dtype.type
        b1, b2 = self.betas
        st["step"] += 1
        t = st["step"]
        if self.weight_decay != 0:
            if self._decoupled:
                v *= f(1.0 - self.lr * self.weight_decay)
            else:
                g = _fma(v, f(self.weight_decay), g)
        m, s = st["exp_avg"], st["exp_avg_sq"]
        _lerp_(m, g, 1.0 - b1)
        s *= f(b2)
        s[...] = _fma(f(1.0 - b2) * g, g, s)
        step_size = self.lr / (1.0 - b1 ** t)
        bc2_sqrt = (1.0 - b2 ** t) ** 0.5
        if self.amsgrad:
            smax = st.get("max_exp_avg_sq")
            if smax is None:  # amsgrad switched on after the first steps: torch would fail; start from s
                smax = st["max_exp_avg_sq"] = np.zeros_like(v)
            np.maximum(smax, s, out=smax)
            denom = np.sqrt(smax) / f(bc2_sqrt)
        else:
            denom = np.sqrt(s) / f(bc2_sqrt)
        denom += f(self.eps)
        v += (f(-step_size) * m) / denom


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: ``w *= 1 - lr * weight_decay`` first, then the
    Adam update with the plain gradient. Default ``weight_decay=1e-2`` (torch's)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (eps added outside the square root):

        g = grad + weight_decay * w                                   (coupled L2)
        s = alpha s + (1 - alpha) g^2;  a = sqrt(s - gavg^2) with gavg = lerp(gavg, g, 1 - alpha) (centered)
                                        or sqrt(s);  a += eps
        momentum > 0: buf = momentum buf + g / a;  w -= lr * buf      else: w -= lr * g / a
    """

    slots = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0, centered=False):
        if alpha < 0 or eps < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("RMSprop: alpha, eps, momentum and weight_decay must be >= 0")
        super().__init__(params, lr, alpha=float(alpha), eps=float(eps), momentum=float(momentum),
                         weight_decay=float(weight_decay), centered=bool(centered))

    def _init_state(self, v, st):
        st["square_avg"] = np.zeros_like(v)
        if self.momentum > 0:
            st["momentum_buffer"] = np.zeros_like(v)
        if self.centered:
            st["grad_avg"] = np.zeros_like(v)

    def _update(self, v, g, st):
        f = v.dtype.type
        st["step"] += 1
        if self.weight_decay != 0:
            g = _fma(v, f(self.weight_decay), g)
        s = st["square_avg"]
        s *= f(self.alpha)
        s[...] = _fma(f(1.0 - self.alpha) * g, g, s)
        if self.centered:
            ga = st.setdefault("grad_avg", np.zeros_like(v))
            _lerp_(ga, g, 1.0 - self.alpha)
            avg = np.sqrt(_fma(-ga, ga, s))
        else:
            avg = np.sqrt(s)
        avg += f(self.eps)
        if self.momentum > 0:
            buf = st.setdefault("momentum_buffer", np.zeros_like(v))
            buf *= f(self.momentum)
            buf += g / avg
            v[...] = _fma(buf, f(-self.lr), v)
        else:
            v += (f(-self.lr) * g) / avg


# ---------------------------------------------------------------------------------------------------- clipping


def _with_grads(params):
    return [p for p in _param_list(params) if p.trainable and p.grad is not None]


def _set_grad(p, g):
    if is_device_array(p.grad):
        p.grad.copy_to_device(np.ascontiguousarray(g, dtype=p.grad.dtype))
    elif isinstance(p.grad, np.ndarray) and p.grad.flags.writeable and g is not p.grad:
        p.grad[...] = g
    else:
        p.grad = g


def clip_grad_norm(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients so that their joint norm is at most ``max_norm``, as torch.nn.utils.clip_grad_norm_.

    The total norm is the ``norm_type``-norm (``inf`` for max-abs) of the vector of every trainable parameter's
    gradient (grads that are None are left out); each grad is multiplied, in place, by
    min(1, max_norm / (total + 1e-6)). Returns the total norm before clipping (a float; 0.0 without grads).
    """
    ps = _with_grads(params)
    if not ps:
        return 0.0
    norm_type = float(norm_type)
    grads = [_host(p.grad) for p in ps]
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    else:
        per = np.array([np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in grads])
        total = float(np.sum(per) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm: the total norm of order {norm_type} of the gradients is {total}")
    f = np.float32
    coef = f(max_norm) / (f(total) + f(1e-6))
    coef = min(coef, f(1.0))
    for p, g in zip(ps, grads):
        _set_grad(p, g * g.dtype.type(coef))
    return total


def clip_grad_value(params, clip_value):
    """Clamp every trainable parameter's gradient to [-clip_value, clip_value], in place
    (torch.nn.utils.clip_grad_value_)."""
    c = float(clip_value)
    for p in _with_grads(params):
        g = _host(p.grad)
        _set_grad(p, np.clip(g, -c, c).astype(g.dtype, copy=False))
