"""ONNX interchange: ``export_onnx`` writes a visionkit model as an ONNX file (``onnx`` is an optional dependency,
imported only when exporting); ``torch_ref`` rebuilds a visionkit graph as a ``torch.nn.Module`` for reference runs.

    from visionkit.onnx import export_onnx
    export_onnx(model, "model.onnx")          # dynamic batch, opset 17
"""

from .export import (
    DEFAULT_OPSET,
    MIN_OPSET,
    Unsupported,
    build_onnx,
    export_onnx,
    register_converter,
    supported_layers,
)

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "Unsupported",
    "build_onnx",
    "export_onnx",
    "register_converter",
    "supported_layers",
]
