"""visionkit.train: what a training loop is made of.

Modules:
    losses     losses with PyTorch's definitions (``value = loss(pred, target)``, ``grad = loss.backward()``):
               SoftmaxCrossEntropy, BinaryCrossEntropy, MeanSquaredError, SmoothL1, PixelCrossEntropy; accuracy;
               l2_penalty
    optim      optimizers with torch.optim's update rules (SGD, Adam, AdamW, RMSprop), gradient clipping, and
               optimizer state as flat arrays + JSON scalars (flat_state / from_flat_state) for checkpoints
    schedules  per-epoch learning-rate schedules with torch's semantics: StepLR, CosineAnnealingLR,
               ReduceLROnPlateau

    from visionkit.train import Adam, SoftmaxCrossEntropy
    loss_fn, opt = SoftmaxCrossEntropy(), Adam(model.parameters(), lr=1e-3)
    loss = loss_fn(model(x, training=True), y)
    model.backward(loss_fn.backward())
    opt.step()
"""

from .losses import (
    BinaryCrossEntropy,
    Loss,
    MeanSquaredError,
    PixelCrossEntropy,
    SmoothL1,
    SoftmaxCrossEntropy,
    accuracy,
    l2_penalty,
)
from .optim import (
    SGD,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    clip_grad_norm,
    clip_grad_value,
    flat_state,
    from_flat_state,
)
from .schedules import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau, StepLR

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "BinaryCrossEntropy",
    "CosineAnnealingLR",
    "LRScheduler",
    "Loss",
    "MeanSquaredError",
    "Optimizer",
    "PixelCrossEntropy",
    "RMSprop",
    "ReduceLROnPlateau",
    "SmoothL1",
    "SoftmaxCrossEntropy",
    "StepLR",
    "accuracy",
    "clip_grad_norm",
    "clip_grad_value",
    "flat_state",
    "from_flat_state",
    "l2_penalty",
]
