"""The ``visionkit`` command line. Thin: parse, call the library, print.

Heavy modules (numpy, numba, the layers) are imported inside the commands that need them, so ``visionkit --help``
stays fast. Plugins add commands through the ``register_commands(cli)`` hook; they are looked up when click asks for
the list of commands or for a name that is not built in.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import sys

import click

from .commands.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, parse_chw
from .commands.common import fail as _fail


class VisionkitGroup(click.Group):
    """A click group that also offers the commands of the current plugin set."""

    def _plugin_commands(self):
        from .plugins import plugin_commands

        return plugin_commands(reserved=tuple(self.commands))

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(self._plugin_commands()))

    def get_command(self, ctx, name):
        cmd = self.commands.get(name)
        if cmd is None:
            cmd = self._plugin_commands().get(name)
        return cmd


@click.group(cls=VisionkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=None, package_name="visionkit", prog_name="visionkit", message="%(prog)s %(version)s")
def cli():
    """visionkit: CNNs whose kernels are Numba. Classify, detect and segment images; list and inspect models.

    Architectures, tasks, pretrained models and commands come from plugins (see `visionkit plugins`).
    """


# ---- visionkit plugins ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def plugins(as_json):
    """List the plugins that loaded (name, version, hooks) and those that failed, with their errors."""
    from . import registry
    from .plugins import plugin_commands, plugin_set

    ps = plugin_set()
    conflicts = registry.conflicts()  # runs every registration hook, so their failures are known
    plugin_commands(reserved=tuple(cli.commands))
    if as_json:
        doc = ps.to_dict() | {"conflicts": [c.to_dict() for c in conflicts]}
        click.echo(json.dumps(doc, indent=2))
        return
    failed = ps.failed_names()
    if ps.plugins:
        rows = [(p.name, p.version or "-", p.dist or p.source, ", ".join(p.hooks) or "-",
                 "FAILED" if p.name in failed else "ok") for p in ps.plugins.values()]
        _table(("NAME", "VERSION", "FROM", "HOOKS", "STATUS"), rows)
    else:
        click.echo("No plugins loaded.")
    if ps.failures:
        click.echo("\nFailed:")
        for f in ps.failures:
            click.echo(f"  {f.describe()}")
    if conflicts:
        click.echo("\nConflicts:")
        for c in conflicts:
            click.echo(f"  {c.describe()}")
    if ps.skipped:
        click.echo("\nSkipped:")
        for name, reason in ps.skipped:
            click.echo(f"  {name}: {reason}")


# ---- visionkit models ----------------------------------------------------------------------------------------
def _model_rows():
    from . import registry

    archs, models = registry.architectures(), registry.models()
    rows = []
    for spec in archs.values():
        trained = any(m.architecture == spec.name and m.weights_available for m in models.values())
        rows.append({"name": spec.name, "kind": "architecture", "task": spec.task,
                     "input_shape": list(spec.input_shape), "num_classes": spec.num_classes,
                     "weights": trained, "plugin": spec.plugin, "description": spec.description,
                     "reference": spec.reference, "_spec": spec})
    for m in models.values():
        arch = archs.get(m.architecture)
        card = _card(m)
        pre, names = card.get("preprocessing") or {}, card.get("class_names")
        shape = [pre.get("channels"), *pre["input_size"]] if pre.get("input_size") and pre.get("channels") else (
            list(arch.input_shape) if arch else None)
        rows.append({"name": m.name, "kind": "model", "task": m.task, "architecture": m.architecture,
                     "input_shape": shape, "num_classes": len(names) if names else (arch.num_classes if arch else None),
                     "weights": m.weights_available, "plugin": m.plugin, "description": m.description,
                     "license": m.license, "source": m.source, "evaluation": card.get("evaluation"),
                     "training": {k: v for k, v in (card.get("training") or {}).items() if k != "history"} or None,
                     "_spec": m})
    return rows


def _card(spec):
    """A pretrained model's card ({} when its file is missing or unreadable: the table says so elsewhere)."""
    try:
        return spec.card() if spec.weights_available else {}
    except (OSError, ValueError):
        return {}


def _params(row):
    """(total, trainable) or (total, None); (None, None) when it cannot be counted (the error is kept)."""
    spec = row["_spec"]
    try:
        if row["kind"] == "architecture":
            return spec.count_params()
        if spec.weights_available:
            return spec.count_params(), None
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"
    return None, None


def _matches(name, pattern):
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(name.lower(), pattern.lower())
    return pattern.lower() in name.lower()


@cli.command()
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def models(pattern, as_json):
    """List architectures and pretrained models (PATTERN: a substring or a glob)."""
    from .registry import DuplicateNameError

    try:
        rows = _model_rows()
    except DuplicateNameError as e:
        _fail(e)
    if pattern:
        names = [r["name"] for r in rows]
        rows = [r for r in rows if _matches(r["name"], pattern)]
        if not rows:
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            _fail(f"no architecture or model matches {pattern!r}{hint}", EXIT_USAGE)
    for row in rows:
        row["params"], row["trainable_params"] = _params(row)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in r.items() if k != "_spec"} for r in rows], indent=2))
        return
    if not rows:
        click.echo("No architectures or models registered (see `visionkit plugins`).")
        return
    table = [(r["name"], r["kind"], r["task"], "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-",
              r["num_classes"] if r["num_classes"] is not None else "-",
              _count(r["params"]), _count(r["trainable_params"]), "yes" if r["weights"] else "no",
              _accuracy(r.get("evaluation")), r["plugin"]) for r in rows]
    _table(("NAME", "KIND", "TASK", "INPUT", "CLASSES", "PARAMS", "TRAINABLE", "WEIGHTS", "TEST ACC", "PLUGIN"), table)


def _accuracy(evaluation):
    acc = (evaluation or {}).get("accuracy")
    return f"{acc:.2%}" if isinstance(acc, (int, float)) else "-"


def _count(n):
    return "?" if n is None else f"{n:,}"


# ---- visionkit summary ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("name")
@click.option("--input", "input_shape", callback=parse_chw, metavar="C,H,W",
              help="Input channels and size (default: the architecture's).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size for memory.")
@click.option("--classes", "num_classes", type=click.IntRange(min=1), help="Number of output classes.")
def summary(name, input_shape, batch, num_classes):
    """Print the layer table of an architecture, a pretrained model or a model file."""
    import os

    from . import registry

    try:
        if name not in registry.architectures() and name not in registry.models() and os.path.isfile(name):
            model = _load_file(name)
        elif name in registry.models():
            model = _load_file(registry.get_model(name).path)
        else:
            spec = registry.get_architecture(name)
            kwargs = {"num_classes": num_classes, "seed": 0}
            if input_shape is not None:
                kwargs["in_channels"], kwargs["input_size"] = input_shape[0], input_shape[1:]
            try:
                model = _build_declared(spec, kwargs)
            except Exception as e:  # a plugin's builder failing must not take the command line down
                _fail(f"building {name!r} (plugin {spec.plugin!r}) failed: {type(e).__name__}: {e}")
    except registry.UnknownNameError as e:
        _fail(e, EXIT_USAGE)
    except (ValueError, TypeError, OSError) as e:
        _fail(e)
    model.summary(batch=batch, print_fn=click.echo)


def _load_file(path):
    from .weights import load_model

    return load_model(path)


def _build_declared(spec, kwargs):
    """Build with parameters declared only (a summary needs shapes, not values); fall back to a real build."""
    from .layers import initializers

    try:
        with initializers.deferred():
            return spec.build(**kwargs)
    except Exception:
        return spec.build(**kwargs)


# ---- visionkit run -------------------------------------------------------------------------------------------


def _resolve_model(model_arg, task_spec):
    """(model, label) for --model: a model file, or a registered pretrained model; an architecture without
    weights, an unknown name or a missing default is a usage error (exit 2)."""

    from . import registry

    if model_arg is None:
        default = getattr(task_spec.task, "default_model", None)
        if not default:
            _fail(f"task {task_spec.name!r} has no default model; pass --model FILE or a pretrained model name "
                  f"(see `visionkit models`)", EXIT_USAGE)
        if default not in registry.models():
            _fail(f"task {task_spec.name!r}: its default model {default!r} is not registered (is the plugin that "
                  f"ships it disabled? see `visionkit plugins`); pass --model FILE", EXIT_USAGE)
        model_arg = default
    try:
        ref = registry.locate_model(model_arg, kinds=("file", "pretrained"), what="--model")
    except registry.ModelNotFound as e:
        if model_arg in registry.architectures():
            _fail(f"{model_arg!r} is an architecture without trained weights; visionkit does not run random "
                  f"weights. Pass a model file (--model path/to/model.vk) or a pretrained model (see `visionkit "
                  f"models`)", EXIT_USAGE)
        _fail(str(e), EXIT_USAGE)
    path, label = ref.path, model_arg
    try:
        return _load_file(path), label
    except (ValueError, TypeError, OSError, KeyError) as e:
        _fail(f"cannot load model {model_arg!r}: {e}", EXIT_USAGE)


def _task_options(**given):
    """The task options the user set (None: the model card's default, else the task's). False is set, not unset:
    --no-agnostic-nms and --no-merge override a card's true."""
    return {k: v for k, v in given.items() if v is not None}


@cli.command(name="run")
@click.argument("task_name", metavar="TASK")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--model", "model_arg", metavar="NAME|FILE", help="A model file or a pretrained model name.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per predict call.")
@click.option("--topk", type=click.IntRange(min=1), default=None, help="classify: classes per image [5].")
@click.option("--conf", type=click.FloatRange(0, 1), default=None,
              help="detect: minimum box score [0.5; mtcnn 0.7]; segment: binary threshold [0.5].")
@click.option("--iou", type=click.FloatRange(0, 1), default=None, help="detect: NMS IoU threshold [0.45].")
@click.option("--agnostic-nms/--no-agnostic-nms", "agnostic", default=None,
              help="detect: suppress boxes across classes [the card's; else off].")
@click.option("--max-det", type=click.IntRange(min=1), default=None, help="detect: boxes per image [300].")
@click.option("--min-size", type=click.FloatRange(min=1), default=None,
              help="detect: smallest object in pixels [the window; mtcnn 20].")
@click.option("--max-size", type=click.FloatRange(min=1), default=None,
              help="detect: largest object in pixels [the image's shorter side].")
@click.option("--scale-factor", "factor", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="detect: image pyramid step [0.709].")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="detect: pixels between windows [the network's own].")
@click.option("--votes", type=click.IntRange(min=0), default=None,
              help="detect, sliding window: weigh each box's score by the confident windows agreeing on it (about "
                   "N of them keep 63% of it; 0: off) [the card's; else off].")
@click.option("--merge/--no-merge", default=None,
              help="detect, sliding window: move each kept box to the score-weighted mean of its windows [the "
                   "card's; else off].")
@click.option("--contain", type=click.FloatRange(0, 1), default=None,
              help="detect, sliding window: also drop a box overlapping a better one by more than this fraction "
                   "of the smaller box; 0: any overlap, 1: off [the card's; else off].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Save here instead of runs/<task>/<name>N.")
@click.option("--save/--no-save", default=None, help="Save annotated images [save; no-save with --json].")
@click.option("--save-txt", is_flag=True, help="Save YOLO-style labels/<image>.txt (segment: masks/<image>.png).")
@click.option("--save-conf", is_flag=True, help="With --save-txt: add each box's confidence.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (lines go to stderr).")
@click.option("--name", default="predict", show_default=True, help="Run folder name under runs/<task>/.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Videos: every Nth frame.")
@click.option("--max-pixels", type=click.IntRange(min=0), default=100_000_000, show_default=True,
              help="Refuse larger images (0: no limit).")
def run_command(task_name, sources, model_arg, device, batch, out_dir, save, save_txt, save_conf, as_json, name,
                every, max_pixels, **task_options):
    """Run TASK (classify, detect, segment, or a plugin's) over images, directories, globs and videos.

    One line per image, a closing Speed line, annotated images under runs/<task>/<name>N (or --out). A bad input
    is reported on one line (`error: <path>: <problem>`) and the others still run; the exit code is then 1.
    Ctrl-C stops at once with exit code 130 (saved files are written atomically, never half).

    detect without --model finds faces with MTCNN; with a classifier model file it slides the classifier over an
    image pyramid (one fully-convolutional pass per level), then keeps the boxes above --conf after non-max
    suppression. A model card may set its own defaults for the detect options (the shipped digits-detector: conf
    0.5, iou 0.3, agnostic, votes 3, merge, contain 0.4); an option given here overrides the card's. MTCNN ignores
    those it has no use for (--iou, --agnostic-nms, --max-size, --stride, --votes, --merge, --contain).
    """
    try:
        _run(task_name, sources, model_arg, device, batch, out_dir, save, save_txt, save_conf, as_json, name,
             every, max_pixels, _task_options(**task_options))
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _run(task_name, sources, model_arg, device, batch, out_dir, save, save_txt, save_conf, as_json, name, every,
         max_pixels, options):
    from . import registry

    try:
        task_spec = registry.get_task(task_name)
    except registry.UnknownNameError as e:
        _fail(e, EXIT_USAGE)
    except registry.DuplicateNameError as e:
        _fail(e)
    model, label = _resolve_model(model_arg, task_spec)
    from .device import resolve_device

    try:
        dev = resolve_device(device)
        if dev != getattr(model, "device", "cpu"):
            model.to(dev)
    except Exception as e:  # CUDA asked for but not there
        _fail(f"--device {device}: {e}", EXIT_USAGE)

    from .tasks.pipeline import run_pipeline
    from .tasks.runs import next_run_dir

    if save is None:
        save = not as_json
    show = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    save_dir = None
    if save or save_txt:  # the folder itself is made when the first file is written
        save_dir = out_dir or next_run_dir(task_spec.name, name, create=False)
    try:
        report = run_pipeline(task_spec, model, sources, model_name=label, batch=batch, every=every,
                              max_pixels=max_pixels or None, save_dir=save_dir, save_images=save, save_txt=save_txt,
                              save_conf=save_conf, task_options=options, log=show,
                              error=lambda e: click.echo(f"error: {e}", err=True))
    except Exception as e:  # the task or the model failing on these inputs: one line, not a traceback
        _fail(f"task {task_spec.name!r} with model {label!r} failed: {type(e).__name__}: {e}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        speed = report.speed_line()
        if speed:
            show(speed)
        if save_dir and (report.saved or save_txt) and report.results:
            show(f"Results saved to {save_dir}")
    if report.errors:
        sys.exit(EXIT_FAILURE)


# ---- helpers -------------------------------------------------------------------------------------------------
def _table(headers, rows):
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


# ---- commands that live in their own modules (visionkit/commands/) --------------------------------------------
def _add_commands():
    from .commands.bench import bench
    from .commands.eval import eval_command
    from .commands.export import export
    from .commands.show import show
    from .commands.train import train

    for command in (bench, eval_command, export, show, train):
        cli.add_command(command)


_add_commands()


def main(argv=None):
    """Console-script entry point (``visionkit``) and ``python -m visionkit``."""
    return cli.main(args=argv, prog_name="visionkit")
