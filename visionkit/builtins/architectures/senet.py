"""SE-ResNet-50 (Hu et al., 2018): ResNet-50 with a squeeze-and-excitation block in every bottleneck.

The SE block sits after the bottleneck's last BatchNorm, before the residual addition, and rescales the C
channels of the branch by weights it computes from them:

    global average pool (N, C, 1, 1) -> 1x1 conv C -> C/16 (bias), ReLU -> 1x1 conv C/16 -> C (bias), sigmoid
    -> multiply the branch by them, channel by channel

(the two 1x1 convs on a 1x1 map are the paper's two fully connected layers, laid out as SENet's reference
implementations store them). The rest is this package's ResNet-50 (torchvision's v1.5 bottleneck: the stride in
the 3x3 conv; the paper's Caffe SE-ResNet-50 strides the first 1x1, which changes no parameter count).
Parameters: ResNet-50's 25,557,032 plus 2,530,992 in the SE blocks = 28,088,024.

Layer names are ResNet's (``resnet``) plus "<block>.se.pool", "<block>.se.fc1", "<block>.se.fc2", "<block>.se.scale".
"""

from __future__ import annotations

from visionkit import layers as L

from ._registry import architecture
from .resnet import build_resnet

SE_REDUCTION = 16


def squeeze_excitation(x, prefix, reduction=SE_REDUCTION):
    """``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``, per channel; layers "<prefix>.se.*"."""
    channels = x.shape[1]
    s = L.GlobalAvgPool2D(keepdims=True, name=f"{prefix}.se.pool")(x)
    s = L.Conv2D(channels // reduction, 1, activation="relu", kernel_initializer="he_uniform", name=f"{prefix}.se.fc1")(
        s
    )
    s = L.Conv2D(channels, 1, activation="sigmoid", name=f"{prefix}.se.fc2")(s)
    return L.Multiply(name=f"{prefix}.se.scale")([x, s])


@architecture(
    "se_resnet50",
    task="classify",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="SE-ResNet-50: ResNet-50 (v1.5 bottlenecks) with squeeze-and-excitation blocks, reduction 16; "
    "28,088,024 parameters",
    reference="Hu et al., Squeeze-and-Excitation Networks, CVPR 2018 (arXiv:1709.01507)",
)
def se_resnet50(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return build_resnet(
        "se_resnet50",
        "bottleneck",
        (3, 4, 6, 3),
        num_classes,
        in_channels,
        input_size,
        seed,
        branch_hook=squeeze_excitation,
    )
