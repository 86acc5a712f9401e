"""`nachos-tf` command line: thin click commands over the library; they parse, call, and print.

Every expected failure (bad arguments, bad files, no admissible solution) prints one line to stderr and
exits non-zero; no traceback.
"""
from __future__ import annotations

import functools
import json
import os
import sys

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
    import logging

    if not os.environ.get("NACHOS_TF_VERBOSE"):   # e.g. Keras' retracing notices when many models predict
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


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


_DATASETS = ["fashion_mnist", "mnist", "cifar10", "npz", "folder"]


@main.command()
@click.option("--dataset", type=click.Choice(_DATASETS), default="fashion_mnist", show_default=True)
@click.option("--data-path", default=None, help="Folder or file of the dataset (default: the installed one).")
@click.option("--min-accuracy", type=float, help="Accuracy floor on validation, e.g. 0.85.")
@click.option("--max-macs", type=SIZE, help="Expected-MAC budget per inference, e.g. 1.0M.")
@click.option("--max-flash", type=SIZE, default=None, help="Model bytes of the int8 export, e.g. 256KiB.")
@click.option("--max-ram", type=SIZE, default=None, help="Peak TFLM arena bytes, e.g. 64KiB.")
@click.option("--budget", type=click.Choice(["quick", "standard", "thorough"]), default="quick", show_default=True)
@click.option("--generations", type=click.IntRange(min=1), default=None, help="Override the budget's generations.")
@click.option("--population", type=click.IntRange(min=2), default=None, help="Override the budget's population.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--algorithm", type=click.Choice(["nsga2", "random"]), default="nsga2", show_default=True,
              help="NSGA-II, or random search (a baseline).")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop the search after this many seconds (at the end of a generation); final re-training follows.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="TensorFlow threads per process (default: all cores); e.g. --workers 2 --threads 1 on 2 cores.")
@click.option("--dask-scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:port).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the interrupted run in this folder (its settings come from its config.json).")
@_friendly
def search(dataset, data_path, min_accuracy, max_macs, max_flash, max_ram, budget, generations, population, seed,
           algorithm, max_time, workers, threads, dask_scheduler, out_dir, resume_dir):
    """Joint backbone + exit NAS under accuracy / expected-MAC constraints; prints the admissible set."""
    from .search import Constraints, DataRef, resume_search, search as run_search
    from .space import SearchSpace

    if resume_dir:
        if threads is not None:
            raise click.UsageError("--threads comes from the run's config.json when resuming (results depend on it)")
        result = resume_search(resume_dir, workers=workers, dask_scheduler=dask_scheduler, progress=click.echo)
    else:
        if min_accuracy is None or max_macs is None or not out_dir:
            raise click.UsageError("--min-accuracy, --max-macs and --out are required (or --resume DIR)")
        constraints = Constraints(min_accuracy, max_macs, max_flash, max_ram)
        ref = DataRef(dataset, data_path, 0.1, 0)
        data = ref.load()
        click.echo(data.summary())
        space = SearchSpace.mcu(data.input_shape, data.num_classes)
        result = run_search(space, ref, constraints, budget=budget, seed=seed, out_dir=out_dir, workers=workers,
                            dask_scheduler=dask_scheduler, generations=generations, population=population,
                            progress=click.echo, algorithm=algorithm, max_seconds=max_time, threads=threads)
    click.echo(f"\nadmissible Pareto set ({len(result.admissible)} solutions, {len(result.archive)} candidates "
               f"evaluated, hypervolume {result.hypervolume:.4f}):")
    click.echo(result.table())
    click.echo(f"\nrun folder: {result.out_dir}  (report: {result.out_dir / 'report.md'})")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_friendly
def report(run_dir):
    """Re-draw report.md and the plots of a run folder; print the admissible set."""
    from .results import load_run, report as draw

    path = draw(run_dir)
    click.echo(load_run(run_dir).table())
    click.echo(f"\nreport: {path}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--solution", default="0", show_default=True, help="Position in the admissible set, or its id.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Deployment folder.")
@click.option("--qat-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Quantisation-aware fine-tuning epochs before conversion (0: post-training quantisation).")
@click.option("--data-path", default=None, help="Dataset location, if it moved since the search.")
@_friendly
def export(run_dir, solution, out_dir, qat_epochs, data_path):
    """Staged int8 .tflite files, C arrays and a TFLM staged runner for one admissible solution."""
    from tflite_export.from_run import export_solution, manifest_summary

    manifest = export_solution(run_dir, solution, out_dir, qat_epochs=qat_epochs, data_path=data_path)
    click.echo(manifest_summary(manifest))
    click.echo(f"\nwrote {out_dir}: {', '.join(manifest['c_sources'])}, manifest.json")


@main.command()
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--dataset", type=click.Choice(_DATASETS), default="fashion_mnist", show_default=True)
@click.option("--data-path", default=None)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples of the split.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the figures here.")
@_friendly
def evaluate(export_dir, dataset, data_path, split, limit, json_path):
    """Accuracy, exit rates and expected MACs of an export, measured stage by stage on TFLM."""
    from tflite_export.from_run import evaluate_export

    res = evaluate_export(export_dir, dataset, data_path, split, limit)
    click.echo(f"{res['n']} {split} samples on TFLM: accuracy {res['accuracy']:.4f}, exit rates "
               f"{[round(r, 4) for r in res['exit_rates']]}, expected MACs {res['expected_macs']:,.0f}, "
               f"arena bytes {res['arena_bytes']}, {res['ms_per_image']:.2f} ms/image")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=2)
        click.echo(f"wrote {json_path}")


if __name__ == "__main__":
    main()
