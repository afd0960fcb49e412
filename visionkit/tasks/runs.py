"""Where results are saved: runs/<task>/<name>, runs/<task>/<name>2, ... (the first free one), as detection
CLIs users know number their run folders."""

import os


def next_run_dir(task, name="predict", root="runs", create=True):
    """The first free runs/<task>/<name>N folder (N omitted for the first), created unless create=False."""
    base = os.path.join(root, task)
    path = os.path.join(base, name)
    n = 2
    while os.path.exists(path):
        path = os.path.join(base, f"{name}{n}")
        n += 1
    if create:
        os.makedirs(path, exist_ok=False)
    return path
