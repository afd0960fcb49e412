"""Learning-rate schedules with torch.optim.lr_scheduler's semantics, stepped once per epoch.

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = CosineAnnealingLR(opt, T_max=30)
    for epoch in range(30):
        train_one_epoch(...)
        sched.step()                      # ReduceLROnPlateau: sched.step(val_loss)

A schedule changes ``optimizer.lr``. As in torch, constructing one counts as the first step (``last_epoch`` becomes
0 and the lr is left as it is), the lr follows torch's recursive ("chainable") formulas, so the sequence equals
torch's to the last bit, and ``state_dict()`` / ``load_state_dict()`` hold plain JSON-able numbers. To resume:
restore the optimizer's state (it carries the current lr), build the schedule, then load its state.
"""

from __future__ import annotations

import math

__all__ = ["CosineAnnealingLR", "LRScheduler", "ReduceLROnPlateau", "StepLR"]


class LRScheduler:
    """Base class of the epoch schedules: ``step()`` advances ``last_epoch`` and sets ``optimizer.lr`` to
    ``get_lr()``."""

    _config: tuple = ()

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = -1
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        self.optimizer.lr = float(self.get_lr())
        self._last_lr = self.optimizer.lr

    def get_last_lr(self):
        """The lr set by the last ``step()``."""
        return self._last_lr

    def state_dict(self):
        d = {k: getattr(self, k) for k in self._config}
        d.update(base_lr=self.base_lr, last_epoch=self.last_epoch, step_count=self._step_count,
                 last_lr=self._last_lr)
        return d

    def load_state_dict(self, d):
        for k in self._config:
            if k in d:
                setattr(self, k, d[k])
        self.base_lr = float(d["base_lr"])
        self.last_epoch = int(d["last_epoch"])
        self._step_count = int(d.get("step_count", self._step_count))
        self._last_lr = float(d.get("last_lr", self.optimizer.lr))

    def __repr__(self):
        cfg = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._config)
        return f"{type(self).__name__}({cfg}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs (torch.optim.lr_scheduler.StepLR)."""

    _config = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = int(step_size)
        if self.step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def get_lr(self):
        lr = self.optimizer.lr
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial lr down to ``eta_min`` over ``T_max`` epochs, then back up (the cosine
    continues; torch.optim.lr_scheduler.CosineAnnealingLR, its recursive form):

        lr_t = eta_min + (lr_0 - eta_min) (1 + cos(pi t / T_max)) / 2
    """

    _config = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = int(T_max)
        if self.T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def get_lr(self):
        lr, t, T, lo = self.optimizer.lr, self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - lo) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - lo) + lo


class ReduceLROnPlateau:
    """Cut the lr by ``factor`` when a metric has stopped improving (torch.optim.lr_scheduler.ReduceLROnPlateau).

    ``step(metric)`` once per epoch. The metric improves when it beats the best so far by ``threshold``
    (relative: best * (1 -+ threshold); ``threshold_mode="abs"``: best -+ threshold); after more than ``patience``
    epochs without improvement the lr becomes max(lr * factor, min_lr) (changes smaller than ``eps`` are skipped),
    then ``cooldown`` epochs pass before bad epochs count again.
    """

    _config = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8):
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau: factor must be < 1.0")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = int(cooldown), float(min_lr), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = float(optimizer.lr)

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def step(self, metric):
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = float(self.optimizer.lr)

    def get_last_lr(self):
        return self._last_lr

    def state_dict(self):
        d = {k: getattr(self, k) for k in self._config}
        d.update(best=self.best, num_bad_epochs=self.num_bad_epochs, cooldown_counter=self.cooldown_counter,
                 last_epoch=self.last_epoch, last_lr=self._last_lr)
        return d

    def load_state_dict(self, d):
        for k in self._config + ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            if k in d:
                setattr(self, k, d[k])
        self._last_lr = float(d.get("last_lr", self.optimizer.lr))

    def __repr__(self):
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, patience={self.patience}, "
                f"best={self.best}, num_bad_epochs={self.num_bad_epochs})")
