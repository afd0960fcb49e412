"""ResNet (He et al., 2015) as torchvision builds it: resnet18/34 (basic blocks) and resnet50/101/152 (bottlenecks).

torchvision's "v1.5" bottleneck puts the stride in the 3x3 convolution (the paper's v1 put it in the first 1x1).
Every convolution is bias-free and followed by BatchNorm (PyTorch's eps=1e-5, momentum=0.1); a projection shortcut
(1x1 conv with the block's stride + BatchNorm) appears where a block changes the shape. Stem: 7x7/2 conv, BN,
ReLU, 3x3/2 max-pool; head: global average pool and one fully connected layer.

Layer names follow torchvision's module names ("layer1.0.conv1", "layer1.0.downsample.0", "fc"), so a parameter
"layer1.0.conv1/kernel" is torchvision's "layer1.0.conv1.weight" (BatchNorm: gamma/beta/running_mean/running_var
are weight/bias/running_mean/running_var), and converted weights need no renaming table.
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import architecture, build_model, check_counts, classify_metadata, resolve_input_size

_REFERENCE = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv:1512.03385); torchvision"
_CONV_INIT = "he_uniform"  # ReLU networks: He's scaling (uniform: as principled as the normal, twice as fast to draw)


# ------------------------------------------------------------------------------------------------------------------
# blocks


def conv_bn(x, filters, kernel_size, name, bn_name, strides=1, padding=0):
    """Bias-free convolution followed by BatchNorm (PyTorch's defaults)."""
    x = L.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name=name,
    )(x)
    return L.BatchNorm(name=bn_name)(x)


def _shortcut(x, filters, strides, prefix):
    if strides == 1 and x.shape[1] == filters:
        return x
    return conv_bn(x, filters, 1, f"{prefix}.downsample.0", f"{prefix}.downsample.1", strides=strides)


def basic_block(x, planes, strides, prefix):
    """Two 3x3 conv-BN pairs (stride in the first) plus the shortcut, then ReLU. Expansion 1."""
    shortcut = _shortcut(x, planes, strides, prefix)
    y = conv_bn(x, planes, 3, f"{prefix}.conv1", f"{prefix}.bn1", strides=strides, padding=1)
    y = L.Activation("relu", name=f"{prefix}.relu1")(y)
    y = conv_bn(y, planes, 3, f"{prefix}.conv2", f"{prefix}.bn2", padding=1)
    y = L.Add(name=f"{prefix}.add")([y, shortcut])
    return L.Activation("relu", name=f"{prefix}.relu")(y)


def bottleneck_branch(x, planes, strides, prefix):
    """The residual branch of a v1.5 bottleneck: 1x1 (planes), 3x3 with the stride, 1x1 (4 * planes); the last
    BatchNorm's output, before the addition (where an SE block goes)."""
    y = conv_bn(x, planes, 1, f"{prefix}.conv1", f"{prefix}.bn1")
    y = L.Activation("relu", name=f"{prefix}.relu1")(y)
    y = conv_bn(y, planes, 3, f"{prefix}.conv2", f"{prefix}.bn2", strides=strides, padding=1)
    y = L.Activation("relu", name=f"{prefix}.relu2")(y)
    return conv_bn(y, planes * 4, 1, f"{prefix}.conv3", f"{prefix}.bn3")


def bottleneck_block(x, planes, strides, prefix, branch_hook=None):
    """v1.5 bottleneck (expansion 4). ``branch_hook(y, prefix)`` may transform the branch before the addition."""
    shortcut = _shortcut(x, planes * 4, strides, prefix)
    y = bottleneck_branch(x, planes, strides, prefix)
    if branch_hook is not None:
        y = branch_hook(y, prefix)
    y = L.Add(name=f"{prefix}.add")([y, shortcut])
    return L.Activation("relu", name=f"{prefix}.relu")(y)


def resnet_graph(inp, block, depths, num_classes, branch_hook=None):
    """Stem, four stages (64, 128, 256, 512 planes; stride 2 from the second), global average pool, fc."""
    x = conv_bn(inp, 64, 7, "conv1", "bn1", strides=2, padding=3)
    x = L.Activation("relu", name="relu")(x)
    x = L.MaxPool2D(3, strides=2, padding=1, name="maxpool")(x)
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        for i in range(n):
            strides = 2 if stage > 1 and i == 0 else 1
            prefix = f"layer{stage}.{i}"
            if block == "basic":
                x = basic_block(x, planes, strides, prefix)
            else:
                x = bottleneck_block(x, planes, strides, prefix, branch_hook)
    x = L.GlobalAvgPool2D(name="avgpool")(x)
    return L.Dense(int(num_classes), name="fc")(x)


def build_resnet(name, block, depths, num_classes, in_channels, input_size, seed, branch_hook=None):
    """A ResNet classifier ("basic" or "bottleneck" blocks, per-stage depths); ``branch_hook(y, prefix)`` may
    transform each bottleneck's branch before the addition (SE-ResNet does)."""
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (224, 224))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        return inp, resnet_graph(inp, block, depths, num_classes, branch_hook)

    return build_model(graph, name, seed=seed, metadata=classify_metadata(name, in_channels, hw, num_classes))


# ------------------------------------------------------------------------------------------------------------------
# the registered builders


def _register(name, params, what):
    return architecture(
        name,
        task="classify",
        input_shape=(3, 224, 224),
        num_classes=1000,
        description=f"{what}; {params:,} parameters (torchvision's count)",
        reference=_REFERENCE,
    )


@_register("resnet18", 11_689_512, "ResNet-18: basic blocks [2, 2, 2, 2]")
def resnet18(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet("resnet18", "basic", (2, 2, 2, 2), num_classes, in_channels, input_size, seed)


@_register("resnet34", 21_797_672, "ResNet-34: basic blocks [3, 4, 6, 3]")
def resnet34(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet("resnet34", "basic", (3, 4, 6, 3), num_classes, in_channels, input_size, seed)


@_register("resnet50", 25_557_032, "ResNet-50: v1.5 bottlenecks [3, 4, 6, 3]")
def resnet50(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet("resnet50", "bottleneck", (3, 4, 6, 3), num_classes, in_channels, input_size, seed)


@_register("resnet101", 44_549_160, "ResNet-101: v1.5 bottlenecks [3, 4, 23, 3]")
def resnet101(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet("resnet101", "bottleneck", (3, 4, 23, 3), num_classes, in_channels, input_size, seed)


@_register("resnet152", 60_192_808, "ResNet-152: v1.5 bottlenecks [3, 8, 36, 3]")
def resnet152(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet("resnet152", "bottleneck", (3, 8, 36, 3), num_classes, in_channels, input_size, seed)
