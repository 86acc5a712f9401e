"""`nachos-tf` command line: thin click commands over the library; they parse, call, and print.

Every expected failure (bad arguments, bad files, no admissible solution) prints one line to stderr and
exits non-zero; no traceback.
"""
from __future__ import annotations

import functools
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from .errors import NachosError  # noqa: E402


def _friendly(fn):
    """Turn the library's typed errors (and Ctrl-C) into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NachosError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class _Size(click.ParamType):
    """A size with an optional suffix: 1.5M, 64k, 256KiB."""

    name = "size"

    def convert(self, value, param, ctx):
        from .units import parse_size

        if isinstance(value, (int, float)):
            return float(value)
        try:
            v = parse_size(value)
        except NachosError as exc:
            self.fail(str(exc), param, ctx)
        if v <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return v


SIZE = _Size()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nachos-tf")
def main():
    """nachos-tf: design early-exit neural networks for microcontrollers (search, profile, export)."""


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_friendly
def profile(model_path, as_json):
    """Per-layer and per-exit (staged) MACs of a Keras model file."""
    from .macs import load_and_profile

    report = load_and_profile(model_path)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


@main.command()
@click.option("--seed", default=0, show_default=True, help="Seed of the sampled genome.")
@_friendly
def sample(seed):
    """Sample an EENN from the default space for Fashion-MNIST and print its per-exit MAC table."""
    from .builder import build_eenn
    from .macs import profile_macs
    from .space import SearchSpace

    space = SearchSpace.mcu((28, 28, 1), 10)
    genome = space.sample(seed)
    click.echo(f"{space}\ngenome (seed {seed}): {json.dumps(genome.to_dict())}\n")
    click.echo(profile_macs(build_eenn(space, genome)).table())


if __name__ == "__main__":
    main()
