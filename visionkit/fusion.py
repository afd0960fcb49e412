"""Inference-time fusion of convolution -> BatchNorm -> activation chains into one pass over the output.

A graph run without a tape and not in training mode (``predict``, ``model(x, keep_tape=False)``) runs each chain

    Conv2D or DepthwiseConv2D (no activation of its own)
      [-> BatchNorm]           (the convolution's only consumer, not a model output)
      [-> Activation relu/relu6] (the previous node's only consumer, not a model output)

as one ``ops.conv2d_bn_act`` call: the BatchNorm's affine step and the activation happen in the convolution's
epilogue while each tile is in cache, instead of two more passes over the activations (ResNet-18 and MobileNetV2
spend most of their non-convolution time there). BatchNorm's scale and shift come from its running statistics at
every call, so weights that change (training, loading) need no invalidation. The result equals the separate
layers' to float32 rounding. Runs that keep a tape, or train, never fuse: backward needs every intermediate.

A residual block's two-input Add followed by a relu/relu6 Activation (its only consumer, not a model output) runs
as one ``ops.add_act`` call likewise, bitwise equal to the two layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers.activation import Activation
from .layers.conv import Conv2D, DepthwiseConv2D
from .layers.merge import Add
from .layers.norm import BatchNorm
from .ops import add_act, conv2d_bn_act
from .ops.conv import FUSABLE_ACTIVATIONS


@dataclass(frozen=True)
class Chain:
    head: int  # the convolution's (or Add's) node index
    tail: int  # the node whose value the fused call produces
    absorbed: tuple  # node indices the fused call stands in for (not run)
    conv: object  # the Conv2D / DepthwiseConv2D, or the Add
    bn: object  # BatchNorm layer or None
    activation: str | None


def _only_consumer(k, consumers_of, outputs):
    users = consumers_of[k]
    return users[0] if len(users) == 1 and k not in outputs else None


def _fusable_activation(k, order, inbound, consumers_of, outputs):
    """The relu/relu6 Activation node that is node k's only consumer, not a model output, or None."""
    a = _only_consumer(k, consumers_of, outputs)
    if (a is not None and type(order[a].layer) is Activation and inbound[a] == [k]
            and order[a].layer.activation in FUSABLE_ACTIVATIONS and not order[a].layer.params):
        return a
    return None


def plan(order, inbound, output_idx):
    """{head node index: Chain} for the graph (order, inbound) with outputs output_idx."""
    consumers_of = [[] for _ in order]
    for k, ins in enumerate(inbound):
        for j in ins:
            consumers_of[j].append(k)
    outputs = set(output_idx)
    chains = {}
    for k, node in enumerate(order):
        conv = node.layer
        if type(conv) is Add and len(inbound[k]) == 2:
            a = _fusable_activation(k, order, inbound, consumers_of, outputs)
            if a is not None:
                chains[k] = Chain(k, a, (a,), conv, None, order[a].layer.activation)
            continue
        if type(conv) not in (Conv2D, DepthwiseConv2D) or conv.activation is not None:
            continue
        tail, bn, act, absorbed = k, None, None, []
        m = _only_consumer(tail, consumers_of, outputs)
        if m is not None and isinstance(order[m].layer, BatchNorm) and inbound[m] == [tail]:
            tail, bn = m, order[m].layer
            absorbed.append(m)
        a = _fusable_activation(tail, order, inbound, consumers_of, outputs)
        if a is not None:
            tail, act = a, order[a].layer.activation
            absorbed.append(a)
        if absorbed:
            chains[k] = Chain(k, tail, tuple(absorbed), conv, bn, act)
    return chains


def describe(chain):
    """"Conv2D+BatchNorm+relu6": what the fused call stands for."""
    parts = [type(chain.conv).__name__] + (["BatchNorm"] if chain.bn is not None else [])
    return "+".join(parts + ([chain.activation] if chain.activation else []))


def run(chain, ins):
    """The chain's output for its head's inputs ins (a list), in one fused call."""
    conv, bn = chain.conv, chain.bn
    if type(conv) is Add:
        return add_act(ins[0], ins[1], chain.activation)
    x = ins[0]
    stats = None
    if bn is not None:
        stats = (bn.running_mean.value, bn.running_var.value, bn.gamma.value if bn.gamma is not None else None,
                 bn.beta.value if bn.beta is not None else None, bn.eps)
    bias = conv.bias.value if conv.bias is not None else None
    return conv2d_bn_act(x, conv._weight().value, bias, **conv._conv_kwargs(), bn=stats,
                         activation=chain.activation)
