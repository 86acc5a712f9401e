"""`nachos-tf` command line: thin click commands over the library; they parse, call, and print.

Every expected failure (bad arguments, bad files, no admissible solution) prints one line to stderr and
exits non-zero; no traceback.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys

import click  # noqa: E402

from .errors import NachosError  # noqa: E402


def _one_line(text: object) -> str:
    """Any message as one line (click's and Keras' messages may span several)."""
    return " ".join(str(text).split())


def _from_echo(exc: BaseException) -> bool:
    """True when the error came out of click.echo, i.e. from writing to standard output."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in ("echo", "secho") and "click" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _stdout_broken(exc: BaseException = None) -> bool:
    """True when standard output cannot take what was written to it (full disk, closed pipe); it is then
    pointed at /dev/null so that Python's last flush at exit does not print a second error."""
    broken = exc is not None and _from_echo(exc)
    if not broken:
        try:
            sys.stdout.flush()
            return False
        except (OSError, ValueError):
            pass
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
    return True


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError that reached the command line: the file it concerns and the reason."""
    reason = exc.strerror or str(exc)
    if _stdout_broken(exc):
        return f"cannot write to standard output ({reason})"
    return f"{exc.filename}: {reason}" if exc.filename else _one_line(reason)


def _friendly(fn):
    """Turn the library's typed errors, OSErrors (and Ctrl-C) into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NachosError as exc:
            _stdout_broken()
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except OSError as exc:        # a write to a full stdout, a file the library did not name yet
            click.echo(f"error: {_os_error_line(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class _OneLineGroup(click.Group):
    """The `nachos-tf` group: click's multi-line Usage/Try/Error block becomes one line,
    ``error: <what is wrong> (see 'nachos-tf CMD --help')``, exit status 2; ``--help`` works as usual."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:                    # Ctrl-C (or EOF) while click parses or prompts
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
            click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"error: {_os_error_line(exc)}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class _Number(click.ParamType):
    """A finite number, optionally bounded (NaN, inf and out-of-range values are refused while parsing)."""

    name = "number"

    def __init__(self, lo=None, hi=None, lo_open=False):
        self.lo, self.hi, self.lo_open = lo, hi, lo_open

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            self.fail(f"{value!r} must be {'>' if self.lo_open else '>='} {self.lo:g}", param, ctx)
        if self.hi is not None and v > self.hi:
            self.fail(f"{value!r} must be <= {self.hi:g}", param, ctx)
        return v


ACCURACY = _Number(0.0, 1.0)
SEED = click.IntRange(0, 2 ** 32 - 1)     # numpy's and Keras' seeds: 0 .. 2^32 - 1


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
        if not math.isfinite(v) or v <= 0:
            self.fail(f"{value!r} must be a positive, finite size", param, ctx)
        return v


SIZE = _Size()


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the sampled genome.")
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
_BOARDS = ["stm32f746", "stm32l4r5", "nrf52840", "rp2350", "stm32l432"]     # nachos_tf.boards.BOARDS
_FIRMWARE_TARGETS = ["host", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]   # tflite_export.tflm_tree


@main.command()
@click.option("--dataset", type=click.Choice(_DATASETS), default="fashion_mnist", show_default=True)
@click.option("--data-path", default=None, help="Folder or file of the dataset (default: the installed one).")
@click.option("--min-accuracy", type=ACCURACY, help="Accuracy floor on validation, e.g. 0.85.")
@click.option("--max-macs", type=SIZE, help="Expected-MAC budget per inference, e.g. 1.0M.")
@click.option("--max-flash", type=SIZE, default=None, help="Model bytes of the int8 export, e.g. 256KiB.")
@click.option("--max-ram", type=SIZE, default=None, help="Peak TFLM arena bytes, e.g. 64KiB.")
@click.option("--target", "board_name", type=click.Choice(_BOARDS, case_sensitive=False), default=None,
              help="A board: sets --max-flash / --max-ram to its flash and RAM minus the measured TFLM runtime.")
@click.option("--budget", type=click.Choice(["quick", "standard", "thorough"]), default="quick", show_default=True)
@click.option("--generations", type=click.IntRange(min=1), default=None, help="Override the budget's generations.")
@click.option("--population", type=click.IntRange(min=2), default=None, help="Override the budget's population.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--algorithm", type=click.Choice(["nsga2", "random"]), default="nsga2", show_default=True,
              help="NSGA-II, or random search (a baseline).")
@click.option("--max-time", type=_Number(0.0, lo_open=True), default=None,
              help="Stop the search after this many seconds (at the end of a generation); final re-training follows.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes judging candidates, then re-training the finalists in parallel (same results).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="TensorFlow threads per process (default: all cores); e.g. --workers 2 --threads 1 on 2 cores.")
@click.option("--dask-scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:port).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the interrupted run in this folder (its settings come from its config.json).")
@click.option("--evaluator", default="supernet", show_default=True, callback=lambda ctx, p, v: _evaluator_name(v),
              help="How candidates are judged: supernet (weights inherited from a trained weight-sharing supernet: "
                   "the shipped Fashion-MNIST one, a cached one, or one trained once for the run), proxy (a brief "
                   "training each), or a registered plug-in.")
@click.option("--final-macs", type=click.Choice(["search", "budget"]), default=None,
              help="Where the final stage re-calibrates each re-trained member: at no more than its search-time "
                   "expected MACs (search, the default; keeps the front spread) or the most accurate within "
                   "--max-macs (budget).")
@click.option("--final-schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="Learning-rate schedule of the final stage's re-training: constant (the default) or cosine "
                   "(decays to zero over each phase).")
@click.option("--accuracy-tolerance", type=_Number(0.0, 0.5), default=None,
              help="Place each candidate at the cheapest point of its accuracy / expected-MAC curve that is at most "
                   "this much (a fraction, e.g. 0.0025) less accurate on validation than its most accurate point "
                   "(default 0: the most accurate point within --max-macs).")
@click.option("--rescore", type=click.IntRange(min=0), default=None,
              help="Before the final stage, judge this many leading candidates again on the whole validation split "
                   "and choose the finalists on those figures (budgets that rank on a subset; default 0: off).")
@click.option("--finalists", type=click.Choice(["spread", "hypervolume"]), default=None,
              help="How the final stage picks the front members to re-train: spread evenly by MACs (default) or "
                   "those that together cover most of the constraint box.")
@click.option("--screen", type=click.IntRange(min=0), default=None,
              help="Before choosing the finalists, fine-tune this many leading candidates briefly (one epoch on "
                   "--screen-train images each) and choose on those figures (default 0: off).")
@click.option("--screen-train", type=click.IntRange(min=10), default=None,
              help="Training images of each screening fine-tune (default 6000).")
@click.option("--confirm/--no-confirm", default=None,
              help="Judge every candidate that enters the admissible front during the search again on the whole "
                   "validation split before NSGA-II ranks it (budgets that rank on a subset; default: off).")
@click.option("--crossfit", type=click.IntRange(min=0), default=None,
              help="Rank candidates on K-fold cross-fitted validation figures: each fold scored with exit "
                   "thresholds calibrated on the others (K >= 2; default 0: in-sample figures).")
@click.option("--mutation", type=click.Choice(["pm", "reset"]), default=None,
              help="NSGA-II's mutation: pm (polynomial, rounded; the default) or reset (a mutated gene is drawn "
                   "anew from all its values).")
@click.option("--mutation-rate", type=_Number(0.0, 1.0, lo_open=True), default=None,
              help="NSGA-II's per-gene mutation probability (default: 1 / number of genes, about one gene).")
@_friendly
def search(dataset, data_path, min_accuracy, max_macs, max_flash, max_ram, board_name, budget, generations, population,
           seed, algorithm, max_time, workers, threads, dask_scheduler, out_dir, resume_dir, evaluator, final_macs,
           final_schedule, accuracy_tolerance, rescore, finalists, screen, screen_train, confirm, crossfit, mutation,
           mutation_rate):
    """Joint backbone + exit NAS under accuracy / expected-MAC constraints; prints the admissible set."""
    from .fsio import ensure_writable
    from .nas import Constraints, DataRef, resume_search, search as run_search
    from .space import SearchSpace

    if resume_dir:
        if any(v is not None for v in (threads, final_macs, final_schedule, accuracy_tolerance, rescore, finalists,
                                       screen, screen_train, confirm, crossfit, mutation, mutation_rate)):
            raise click.UsageError("--threads, --final-macs, --final-schedule, --accuracy-tolerance, --rescore, "
                                   "--finalists, --screen, --screen-train, --confirm, --crossfit, --mutation and "
                                   "--mutation-rate come from the run's config.json when resuming (`nachos-tf finalize` "
                                   "re-runs the final stage)")
        if board_name:
            raise click.UsageError("--target comes from the run's config.json (its max_flash / max_ram) when resuming")
        ensure_writable(resume_dir, folder=True)      # a read-only run folder: one line now, not after training
        result = resume_search(resume_dir, workers=workers, dask_scheduler=dask_scheduler, progress=click.echo)
    else:
        if min_accuracy is None or max_macs is None or not out_dir:
            raise click.UsageError("--min-accuracy, --max-macs and --out are required (or --resume DIR)")
        if board_name:
            from .boards import board_constraints

            max_flash, max_ram, line = board_constraints(board_name, max_flash, max_ram)
            click.echo(line)
        constraints = Constraints(min_accuracy, max_macs, max_flash, max_ram)
        ensure_writable(out_dir, folder=True)         # a file in the way, a read-only place: before any work
        ref = DataRef(dataset, data_path, 0.1, 0)
        data = ref.load()
        click.echo(data.summary())
        space = SearchSpace.mcu(data.input_shape, data.num_classes)
        changes = {k: v for k, v in (("final_macs", final_macs), ("final_schedule", final_schedule),
                                     ("accuracy_tolerance", accuracy_tolerance),
                                     ("rescore", rescore), ("finalists", finalists), ("screen", screen),
                                     ("screen_train", screen_train), ("confirm", confirm), ("crossfit", crossfit),
                                     ("mutation", mutation), ("mutation_rate", mutation_rate)) if v is not None}
        if changes:
            from .nas import Budget

            budget = Budget.resolve(budget, evaluator=evaluator).with_(**changes)
        result = run_search(space, ref, constraints, budget=budget, seed=seed, out_dir=out_dir, workers=workers,
                            dask_scheduler=dask_scheduler, generations=generations, population=population,
                            progress=click.echo, algorithm=algorithm, max_seconds=max_time, threads=threads,
                            evaluator=evaluator)
    _print_result(result)


def _print_result(result) -> None:
    click.echo(f"\nadmissible Pareto set ({len(result.admissible)} solutions, {len(result.archive)} candidates "
               f"evaluated, hypervolume {result.hypervolume:.4f}):")
    click.echo(result.table())
    click.echo(f"\nrun folder: {result.out_dir}  (report: {result.out_dir / 'report.md'})")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New run folder (the search's own is only read).")
@click.option("--max-final", type=click.IntRange(min=1), default=None, help="Front members to re-train.")
@click.option("--final-epochs", type=click.IntRange(min=0), default=None,
              help="Epochs of the backbone phase of the re-training.")
@click.option("--final-head-epochs", type=click.IntRange(min=0), default=None,
              help="Epochs of the exit phase (NACHOS loss) of the re-training.")
@click.option("--final-train", type=click.IntRange(min=10), default=None,
              help="Training images of the re-training (default: the run's).")
@click.option("--final-schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="Learning-rate schedule of the re-training (see `search --final-schedule`).")
@click.option("--final-macs", type=click.Choice(["search", "budget"]), default=None,
              help="Where a re-trained member is re-calibrated (see `search --final-macs`).")
@click.option("--rescore", type=click.IntRange(min=0), default=None,
              help="Leading candidates judged again on the whole validation split before choosing (0: off).")
@click.option("--finalists", type=click.Choice(["spread", "hypervolume"]), default=None,
              help="How the front members to re-train are picked (see `search --finalists`).")
@click.option("--screen", type=click.IntRange(min=0), default=None,
              help="Leading candidates fine-tuned briefly before choosing (see `search --screen`; 0: off).")
@click.option("--screen-train", type=click.IntRange(min=10), default=None,
              help="Training images of each screening fine-tune.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes re-training the finalists in parallel (same results).")
@_friendly
def finalize(run_dir, out_dir, max_final, final_epochs, final_head_epochs, final_train, final_schedule, final_macs,
             rescore, finalists, screen, screen_train, workers):
    """Run the final stage of a finished search again into a new folder (more finalists, a longer
    re-training); nothing is searched again. Prints the admissible set."""
    from .fsio import ensure_writable
    from .nas import refinalize

    changes = {k: v for k, v in (("max_final", max_final), ("final_epochs", final_epochs),
                                 ("final_head_epochs", final_head_epochs), ("final_train", final_train),
                                 ("final_schedule", final_schedule), ("final_macs", final_macs), ("rescore", rescore),
                                 ("finalists", finalists), ("screen", screen), ("screen_train", screen_train))
               if v is not None}
    ensure_writable(out_dir, folder=True)
    _print_result(refinalize(run_dir, out_dir, progress=click.echo, workers=workers, **changes))


def _evaluator_name(value: str) -> str:
    from .nas import evaluator_names

    names = evaluator_names()
    if value not in names:
        raise click.BadParameter(f"{value!r} is not a registered evaluator; choose one of {', '.join(names)}",
                                 param_hint="--evaluator")
    return value


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_friendly
def report(run_dir):
    """Re-draw report.md and the plots of a run folder; print the admissible set."""
    from .results import load_run
    from .report import report as draw

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
@click.option("--target", "board_name", type=click.Choice(_BOARDS, case_sensitive=False), default=None,
              help="A board: check that the export's stage bytes and arena fit it beside the TFLM runtime.")
@click.option("--all-stages", is_flag=True, default=False,
              help="Also export the stages after an exit whose threshold is -inf (at these thresholds no image "
                   "reaches them; keep them to try other thresholds on the device).")
@_friendly
def export(run_dir, solution, out_dir, qat_epochs, data_path, board_name, all_stages):
    """Staged int8 .tflite files, C arrays and a TFLM staged runner for one admissible solution."""
    from tflite_export.convert import export_solution, manifest_summary

    manifest = export_solution(run_dir, solution, out_dir, qat_epochs=qat_epochs, data_path=data_path,
                               drop_unreachable=not all_stages)
    click.echo(manifest_summary(manifest))
    click.echo(f"\nwrote {out_dir}: {', '.join(manifest['c_sources'])}, manifest.json")
    if board_name:
        from .boards import check_manifest_fit

        fits, line = check_manifest_fit(board_name, manifest)
        click.echo(line)
        if not fits:
            raise click.ClickException(f"the export does not fit {board_name}: {line}")


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
    from tflite_export.convert import evaluate_export

    from .fsio import atomic_write_json, ensure_writable

    if json_path:
        ensure_writable(json_path)            # before the evaluation, not after it
    res = evaluate_export(export_dir, dataset, data_path, split, limit)
    click.echo(f"{res['n']} {split} samples on TFLM: accuracy {res['accuracy']:.4f}, exit rates "
               f"{[round(r, 4) for r in res['exit_rates']]}, expected MACs {res['expected_macs']:,.0f}, "
               f"arena bytes {res['arena_bytes']}, {res['ms_per_image']:.2f} ms/image")
    if json_path:
        atomic_write_json(json_path, res, sort_keys=False)
        click.echo(f"wrote {json_path}")


@main.command()
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--target", type=click.Choice(_FIRMWARE_TARGETS), default="host", show_default=True,
              help="host (x86-64), or a Cortex-M run under qemu-system-arm: cortex-m4 (M4F, mps2-an386), "
                   "cortex-m7 (M7F, mps2-an500), cortex-m33 (mps2-an505), cortex-m55 (mps3-an547).")
@click.option("--kernels", type=click.Choice(["reference", "cmsis-nn"]), default="reference", show_default=True,
              help="TFLM's reference kernels or the CMSIS-NN optimised ones.")
@click.option("--run", "run_n", type=click.IntRange(min=0), default=0, show_default=True,
              help="Classify the first N images of the split and check class and exit of each against the "
                   "Python TFLM evaluation (0: build and measure only).")
@click.option("--dataset", type=click.Choice(_DATASETS), default="fashion_mnist", show_default=True)
@click.option("--data-path", default=None)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--arena-bytes", type=SIZE, default=None,
              help="Override the exported tensor arena (kernels such as CMSIS-NN on Helium need more scratch).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Parallel compile jobs.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the report here.")
@_friendly
def firmware(export_dir, target, kernels, run_n, dataset, data_path, split, arena_bytes, jobs, json_path):
    """Build an export with real TFLM (TFLM_ROOT) for the host or a Cortex-M; sizes; run N images under QEMU."""
    from tflite_export.convert import build_firmware, firmware_summary

    from .fsio import atomic_write_json, ensure_writable

    if json_path:
        ensure_writable(json_path)
    rep = build_firmware(export_dir, target, kernels, run=run_n, dataset=dataset, data_path=data_path, split=split,
                         arena_bytes=int(arena_bytes) if arena_bytes else None, jobs=jobs,
                         log=lambda line: click.echo(line, err=True))
    click.echo(firmware_summary(rep))
    if json_path:
        atomic_write_json(json_path, rep, sort_keys=False)
        click.echo(f"wrote {json_path}")
    if rep.get("run") and not rep["run"]["all_agree"]:
        raise click.ClickException(f"the firmware disagrees with the Python TFLM evaluation on "
                                   f"{rep['run']['n'] - rep['run']['agree']} of {rep['run']['n']} images")


if __name__ == "__main__":
    main()
