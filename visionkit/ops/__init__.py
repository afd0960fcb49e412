"""visionkit.ops: the functional API (stateless), with the semantics of the PyTorch functional op of each name.

Every differentiable op ``f`` has ``f_backward``. Arrays may be numpy (CPU backend) or Numba CUDA device arrays
(CUDA backend); each op runs where its input lives. float32 and float64 are preserved; other dtypes and
non-contiguous arrays are converted to contiguous float32. The contract is written out in docs/ops-api.md; the
kernels behind it in visionkit/backends/. One module per op family, mirroring the backends.
"""

from ._args import conv_output_size, pool_output_size, same_padding, to_device, to_numpy
from .act import (activation, activation_backward, dropout, dropout_backward, elu, elu_backward, hardsigmoid,
                  hardsigmoid_backward, hardswish, hardswish_backward, leaky_relu, leaky_relu_backward, log_softmax,
                  log_softmax_backward, relu, relu6, relu6_backward, relu_backward, selu, selu_backward, sigmoid,
                  sigmoid_backward, softmax, softmax_backward, tanh, tanh_backward)
from .conv import (conv2d, conv2d_backward, conv2d_bn_act, conv2d_relu, conv_transpose2d, conv_transpose2d_backward,
                   expand_depthwise_project)
from .dense import linear, linear_backward
from .norm import batch_norm, batch_norm_backward, local_response_norm, local_response_norm_backward
from .prelu import prelu, prelu_backward
from .pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d, avg_pool2d,
                   avg_pool2d_backward, channel_max_pool, channel_max_pool_backward, global_avg_pool2d,
                   global_avg_pool2d_backward, global_max_pool2d, global_max_pool2d_backward, max_pool2d,
                   max_pool2d_backward)
from .resize import interpolate, interpolate_backward
from .tensor import add, add_act, concat, concat_backward, pad, pad_backward, scale_channels, scale_channels_backward

__all__ = [
    "conv2d", "conv2d_backward", "conv2d_bn_act", "conv2d_relu", "conv_transpose2d", "conv_transpose2d_backward",
    "expand_depthwise_project",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
    "global_avg_pool2d", "global_avg_pool2d_backward", "global_max_pool2d", "global_max_pool2d_backward",
    "channel_max_pool", "channel_max_pool_backward",
    "local_response_norm", "local_response_norm_backward", "batch_norm", "batch_norm_backward",
    "linear", "linear_backward",
    "relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "hardsigmoid", "hardswish",
    "relu_backward", "relu6_backward", "leaky_relu_backward", "elu_backward", "selu_backward", "tanh_backward",
    "sigmoid_backward", "hardsigmoid_backward", "hardswish_backward", "activation", "activation_backward",
    "prelu", "prelu_backward", "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "dropout", "dropout_backward", "interpolate", "interpolate_backward", "pad", "pad_backward",
    "add", "add_act", "concat", "concat_backward", "scale_channels", "scale_channels_backward",
    "same_padding", "conv_output_size", "pool_output_size", "to_device", "to_numpy",
]
