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

Three such chains in a row, a 1x1 conv -> a depthwise conv (dilation 1) -> a 1x1 conv, each the only consumer of
the one before (MobileNetV2's inverted residual block), run as one ``ops.expand_depthwise_project`` call (a
``Block``): on the CPU one kernel whose intermediates stay channels-last in cache. The first conv may be any
ungrouped conv (MobileNetV2's 3x3/2 stem then runs with its first block, which does not expand). When the last
chain's only consumer is a two-input Add of it and the block's own input (the residual connection), the Add joins
the block.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers.activation import Activation
from .layers.conv import Conv2D, DepthwiseConv2D
from .layers.merge import Add
from .layers.norm import BatchNorm
from .ops import add_act, conv2d_bn_act, expand_depthwise_project
from .ops.conv import FUSABLE_ACTIVATIONS


@dataclass(frozen=True)
class Chain:
    head: int  # the convolution's (or Add's) node index
    tail: int  # the node whose value the fused call produces
    absorbed: tuple  # node indices the fused call stands in for (not run)
    conv: object  # the Conv2D / DepthwiseConv2D, or the Add
    bn: object  # BatchNorm layer or None
    activation: str | None


@dataclass(frozen=True)
class Block:
    head: int  # the first conv's node index
    tail: int  # the node whose value the fused call produces (the projection chain's tail)
    absorbed: tuple  # node indices the fused call stands in for (not run)
    stages: tuple  # the expansion, depthwise and projection Chains
    residual: bool  # the block's input is added to its output (an absorbed Add)


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
    """{head node index: Chain or Block} for the graph (order, inbound) with outputs output_idx."""
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
        chains[k] = Chain(k, tail, tuple(absorbed), conv, bn, act)
    _blocks(chains, order, inbound, consumers_of, outputs)
    return {k: c for k, c in chains.items() if type(c) is Block or c.absorbed}


def _pointwise(conv):
    return (conv.groups == 1 and tuple(conv.kernel_size) == (1, 1) and tuple(conv.strides) == (1, 1)
            and _unpadded(conv.padding))


def _unpadded(padding):
    """A 1x1 stride-1 conv's padding ("valid", "same" or (ph, pw)) that adds nothing."""
    return isinstance(padding, str) or tuple(padding) == (0, 0)


def _depthwise(conv):
    w = conv._weight().value.shape
    return conv.groups == w[0] and w[1] == 1 and tuple(conv.dilation_rate) == (1, 1)


def _next_chain(chain, chains, inbound, consumers_of, outputs):
    """The conv chain that is the only consumer of chain's tail, taking nothing else, or None."""
    c = _only_consumer(chain.tail, consumers_of, outputs)
    if c is None or inbound[c] != [chain.tail]:
        return None
    nxt = chains.get(c)
    return nxt if type(nxt) is Chain and type(nxt.conv) is not Add else None


def _blocks(chains, order, inbound, consumers_of, outputs):
    """Replace each 1x1 -> depthwise -> 1x1 run of conv chains (and its residual Add) by one Block, in place."""
    for k in sorted(chains):
        first = chains.get(k)
        if type(first) is not Chain or type(first.conv) is not Conv2D or first.conv.groups != 1:
            continue
        dw = _next_chain(first, chains, inbound, consumers_of, outputs)
        if dw is None or not _depthwise(dw.conv):
            continue
        last = _next_chain(dw, chains, inbound, consumers_of, outputs)
        if last is None or not _pointwise(last.conv):
            continue
        absorbed = first.absorbed + (dw.head,) + dw.absorbed + (last.head,) + last.absorbed
        tail, residual = last.tail, False
        a = _only_consumer(last.tail, consumers_of, outputs)
        if a is not None and a not in chains and type(order[a].layer) is Add and \
                sorted(inbound[a]) == sorted([last.tail] + inbound[k]):
            tail, residual, absorbed = a, True, absorbed + (a,)
        del chains[dw.head], chains[last.head]
        chains[k] = Block(k, tail, absorbed, (first, dw, last), residual)


def describe(chain):
    """"Conv2D+BatchNorm+relu6": what the fused call stands for (a Block's stages joined by " > ")."""
    if type(chain) is Block:
        return " > ".join([describe(c) for c in chain.stages] + (["Add"] if chain.residual else []))
    parts = [type(chain.conv).__name__] + (["BatchNorm"] if chain.bn is not None else [])
    return "+".join(parts + ([chain.activation] if chain.activation else []))


def _stage(chain):
    """A chain's (weight, bias, bn, activation) as the fused ops take them."""
    conv, bn = chain.conv, chain.bn
    stats = None
    if bn is not None:
        stats = (bn.running_mean.value, bn.running_var.value, bn.gamma.value if bn.gamma is not None else None,
                 bn.beta.value if bn.beta is not None else None, bn.eps)
    return conv._weight().value, conv.bias.value if conv.bias is not None else None, stats, chain.activation


def run(chain, ins):
    """The chain's output for its head's inputs ins (a list), in one fused call."""
    if type(chain) is Block:
        first, dw = chain.stages[0].conv, chain.stages[1].conv
        return expand_depthwise_project(ins[0], *(_stage(c) for c in chain.stages), stride=dw.strides,
                                        padding=dw.padding, residual=chain.residual, expand_stride=first.strides,
                                        expand_padding=first.padding, expand_dilation=first.dilation_rate)
    if type(chain.conv) is Add:
        return add_act(ins[0], ins[1], chain.activation)
    w, b, bn, act = _stage(chain)
    return conv2d_bn_act(ins[0], w, b, **chain.conv._conv_kwargs(), bn=bn, activation=act)
