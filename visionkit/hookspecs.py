"""The plugin contract: the one file a visionkit plugin author reads.

A plugin is a module (or any object) whose functions carry ``@hookimpl`` and are named after the hooks below. It is
found through the ``visionkit`` entry-point group::

    [project.entry-points.visionkit]
    myplugin = "myplugin_module"

Every ``register`` callable checks its arguments and raises ``TypeError``/``ValueError`` on bad ones; a hook that
raises is reported by ``visionkit plugins`` and its registrations are dropped (other plugins still load). Two plugins
registering the same name (of the same kind) is an error that names both.
"""

import pluggy

hookspec = pluggy.HookspecMarker("visionkit")
hookimpl = pluggy.HookimplMarker("visionkit")


@hookspec
def register_architectures(register):
    """Call ``register(name, builder, *, task="classify", input_shape=(C, H, W), num_classes=int, description="", reference=None)`` once per architecture; ``builder(num_classes=..., in_channels=..., input_size=(H, W) or None, seed=None)`` returns a built ``vk.Model`` (None: its defaults, those of ``input_shape``), and ``reference`` is a short note such as ``"torchvision: 11,689,512 trainable"``."""  # noqa: E501


@hookspec
def register_tasks(register):
    """Call ``register(name, task)`` once per task; ``task`` is a ``visionkit.registry.Task`` (or any object with ``name``, ``description`` and ``run(model, images, **options)``, where ``images`` is a list of HWC uint8 arrays)."""  # noqa: E501


@hookspec
def register_models(register):
    """Call ``register(name, path, *, architecture, task, description="", license="", source="")`` once per pretrained model; ``path`` is a visionkit model file shipped with the plugin (``architecture`` names a registered one, ``source`` says where the weights came from)."""  # noqa: E501


@hookspec
def register_datasets(register):
    """Call ``register(name, reader, description="")`` once per dataset; ``reader(**options)`` returns the data (see ``visionkit.data``)."""  # noqa: E501


@hookspec
def register_commands(cli):
    """Add Click commands to the ``visionkit`` group ``cli`` (``@cli.command()`` or ``cli.add_command(cmd)``)."""
