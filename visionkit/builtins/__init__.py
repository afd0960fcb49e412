"""visionkit's built-in plugins: registered through the same pluggy hooks (``visionkit.hookspecs``) and the same
``visionkit`` entry-point group (see pyproject.toml) a third-party plugin uses, so the core knows no architecture,
task or model by name.

    visionkit.builtins.architectures   the model zoo: ``register_architectures`` (one family per module)
    visionkit.builtins.tasks           the tasks ``visionkit run`` knows: ``register_tasks`` (classify, detect, segment)
    visionkit.builtins.pretrained      the shipped model files (models/): ``register_models`` (mtcnn, digits, fashion)
    visionkit.builtins.datasets        the dataset readers ``--data NAME:PATH`` names: ``register_datasets``
"""
