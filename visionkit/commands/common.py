"""What every visionkit command shares: exit codes, the one-line error, the C,H,W option parser."""

import sys

import click

EXIT_FAILURE = 1      # something failed (a bad input, a model that would not load)
EXIT_USAGE = 2        # the command line itself is wrong (unknown name, bad option), as click's own errors
EXIT_INTERRUPTED = 130


def fail(message, code=EXIT_FAILURE):
    """One line on stderr (``Error: ...``), then exit with ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def parse_chw(ctx, param, value):
    """Click callback: --input C,H,W (or CxHxW) -> a tuple of three positive ints."""
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
