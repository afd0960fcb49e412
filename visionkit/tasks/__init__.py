"""The task pipelines' shared parts: non-max suppression, image pyramids (and, with the CLI, results and rendering).

The tasks themselves (classify, detect, segment) arrive through plugins; what several of them need lives here.
"""
