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

EXIT_FAILURE = 1
EXIT_USAGE = 2


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


def _fail(message, code=EXIT_FAILURE):
    """One line on stderr, then exit with ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


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
        rows.append({"name": m.name, "kind": "model", "task": m.task, "architecture": m.architecture,
                     "input_shape": list(arch.input_shape) if arch else None,
                     "num_classes": arch.num_classes if arch else None, "weights": m.weights_available,
                     "plugin": m.plugin, "description": m.description, "license": m.license, "source": m.source,
                     "_spec": m})
    return rows


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
              _count(r["params"]), _count(r["trainable_params"]), "yes" if r["weights"] else "no", r["plugin"])
             for r in rows]
    _table(("NAME", "KIND", "TASK", "INPUT", "CLASSES", "PARAMS", "TRAINABLE", "WEIGHTS", "PLUGIN"), table)


def _count(n):
    return "?" if n is None else f"{n:,}"


# ---- visionkit summary ---------------------------------------------------------------------------------------
def _parse_input(ctx, param, value):
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise click.BadParameter(f"expected C,H,W (three positive integers), got {value!r}")
    return dims


@cli.command()
@click.argument("name")
@click.option("--input", "input_shape", callback=_parse_input, metavar="C,H,W",
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


# ---- helpers -------------------------------------------------------------------------------------------------
def _table(headers, rows):
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def main(argv=None):
    """Console-script entry point (``visionkit``) and ``python -m visionkit``."""
    return cli.main(args=argv, prog_name="visionkit")
