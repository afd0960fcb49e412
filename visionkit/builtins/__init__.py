"""visionkit's built-in plugins: registered through the same pluggy hooks (``visionkit.hookspecs``) a third-party
plugin implements, so the core knows no architecture or task by name.

    visionkit.builtins.architectures   the model zoo: ``register_architectures`` (one family per module)
    visionkit.builtins.tasks           the tasks ``visionkit run`` knows: ``register_tasks`` (classify, detect, segment)
"""

BUILTIN_PLUGINS = ("visionkit.builtins.architectures", "visionkit.builtins.tasks")

__all__ = ["BUILTIN_PLUGINS"]
