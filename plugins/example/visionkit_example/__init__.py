"""visionkit-example: a third-party visionkit plugin, as small as one can be while doing real work.

It adds the architecture "example-tinynet", the task "example-brightness" and the command
`visionkit example-hello`. It is found through its entry point (see pyproject.toml)::

    [project.entry-points.visionkit]
    example = "visionkit_example"
"""

import click

from visionkit.hookspecs import hookimpl
from visionkit.registry import Task

__version__ = "0.1.0"


def tinynet(num_classes=10, in_channels=3, input_size=None, seed=None):
    """Two 3x3 convolutions, global average pooling and a softmax: 1,562 parameters at 3 channels, 10 classes."""
    import visionkit as vk
    from visionkit import layers as L

    h, w = input_size or (32, 32)
    return vk.Sequential([
        L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(in_channels, h, w)),
        L.MaxPool2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.GlobalAvgPool2D(),
        L.Dense(num_classes, activation="softmax"),
    ], name="example_tinynet", seed=seed)


class Brightness(Task):
    name = "example-brightness"
    description = "Mean brightness (0-255) of each image; the model is not used"

    def run(self, model, images, per_channel=False):
        import numpy as np

        out = []
        for img in images:
            a = np.asarray(img, dtype=np.float64)
            if per_channel and a.ndim == 3:
                out.append([float(v) for v in a.reshape(-1, a.shape[2]).mean(axis=0)])
            else:
                out.append(float(a.mean()))
        return {"task": self.name, "brightness": out}


@hookimpl
def register_architectures(register):
    register("example-tinynet", tinynet, task="classify", input_shape=(3, 32, 32), num_classes=10,
             description="A tiny two-convolution CNN (the example plugin)")


@hookimpl
def register_tasks(register):
    register("example-brightness", Brightness())


@hookimpl
def register_commands(cli):
    @cli.command(name="example-hello")
    @click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
    def example_hello(images):
        """Say hello; with IMAGES, print the mean brightness of each (the example-brightness task)."""
        click.echo("Hello from visionkit-example!")
        if images:
            import cv2

            from visionkit import registry

            arrays = [cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in images]
            for path, value in zip(images, registry.get_task("example-brightness").run(None, arrays)["brightness"]):
                click.echo(f"{path}: brightness {value:.1f}")
