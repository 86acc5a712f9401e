"""Command line of `benchmarks/compare.py` (its arguments and their checks)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import ROOT, RESULTS, add_out, add_resume, add_threads, positive_float, positive_int  # noqa: E402
from compare_report import METHODS  # noqa: E402

from nachos_tf.nas.settings import MUTATIONS  # noqa: E402


def _seed_dir(s: str):
    """argparse type of --supernet-from: SEED=DIR."""
    seed, sep, folder = s.partition("=")
    if not sep or not seed.strip().isdigit() or not folder:
        raise argparse.ArgumentTypeError(f"expected SEED=DIR, got {s!r}")
    if not (Path(folder) / "supernet.json").is_file():
        raise argparse.ArgumentTypeError(f"{folder} holds no trained supernet (supernet.json)")
    return int(seed), folder


def parse_args(argv=None, description: str = "") -> argparse.Namespace:
    """The arguments of compare.py (`description`: its --help text)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=positive_float, default=1200.0,
                   help="search seconds per supernet method and seed; the proxy methods get this plus the seed's "
                        "supernet cost (default 1200)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--supernet-epochs", type=positive_int, default=12, help="epochs of each seed's supernet (12)")
    p.add_argument("--supernet-warmup-epochs", type=int, default=2, help="of which largest-subnet warm-up (2)")
    p.add_argument("--supernet-train-limit", type=positive_int, default=30000,
                   help="train each supernet on a seeded subset of this many images (30000)")
    p.add_argument("--supernet-n-random", type=int, default=1, help="random subnets per sandwich step (1)")
    p.add_argument("--supernet-batch-size", type=positive_int, default=128, help="supernet batch size (128)")
    p.add_argument("--supernet-from", type=_seed_dir, nargs="+", default=None, metavar="SEED=DIR",
                   help="use a supernet trained elsewhere for a seed (its cost: the epochs' seconds in its manifest), "
                        "e.g. 0=nachos_tf/supernet/presets/fashion_mnist when the preset was trained with seed 0 and "
                        "the same --supernet-epochs / --supernet-train-limit (checked)")
    p.add_argument("--any-supernet", action="store_true",
                   help="accept --supernet-from folders trained with other settings (smoke runs)")
    p.add_argument("--proxy-extra-s", type=float, default=None,
                   help="extra search seconds of the proxy methods (default: the seed's supernet cost; smoke runs)")
    p.add_argument("--min-accuracy", type=float, default=0.80)
    p.add_argument("--max-macs", default="1.0M")
    p.add_argument("--population", type=positive_int, default=8)
    p.add_argument("--mutation", choices=MUTATIONS, default="pm",
                   help="Budget.mutation of the NSGA-II runs: pm (polynomial, the default) or reset (random resetting)")
    p.add_argument("--mutation-rate", type=float, default=None,
                   help="Budget.mutation_rate of the NSGA-II runs: per-gene mutation probability (default 1 / n_var)")
    p.add_argument("--proxy-train", type=positive_int, default=3000, help="proxy training images per candidate")
    p.add_argument("--proxy-val", type=positive_int, default=1000, help="validation images per candidate (both)")
    p.add_argument("--head-epochs", type=positive_int, default=2, help="proxy training epochs per candidate")
    p.add_argument("--final-train", type=positive_int, default=None, help="final training subset (default: all)")
    p.add_argument("--final-epochs", type=positive_int, default=2, help="final training (fine-tuning) epochs")
    p.add_argument("--final-schedule", choices=("constant", "cosine"), default="constant",
                   help="Budget.final_schedule of every run: learning-rate schedule of the fine-tune "
                        "(default constant)")
    p.add_argument("--max-final", type=positive_int, default=2, help="front members finalized per run")
    p.add_argument("--final-macs", choices=("budget", "search"), default="budget",
                   help="Budget.final_macs of every run (default budget: what seed 0 was measured with, before "
                        "the search default existed; change it only with another --out)")
    p.add_argument("--accuracy-tolerance", type=float, default=0.0,
                   help="Budget.accuracy_tolerance of every run: each candidate at the cheapest point of its curve at "
                        "most this much less accurate than its best (default 0: the most accurate point)")
    p.add_argument("--confirm", action="store_true",
                   help="Budget.confirm of every run: each candidate entering the admissible front during the search "
                        "is judged again on the whole validation split before the algorithm ranks it")
    p.add_argument("--rescore", type=int, default=0,
                   help="Budget.rescore of every run: leading candidates judged again on the whole validation split "
                        "before the finalists are chosen (default 0: off, as the runs before it existed)")
    p.add_argument("--finalists", choices=("spread", "hypervolume"), default="spread",
                   help="Budget.finalists of every run: how the final stage picks its --max-final members (default "
                        "spread, as the runs before it existed)")
    p.add_argument("--screen", type=int, default=0,
                   help="Budget.screen of every run: leading candidates fine-tuned briefly before the finalists are "
                        "chosen on those figures (default 0: off)")
    p.add_argument("--screen-train", type=positive_int, default=6000,
                   help="Budget.screen_train: training images of each screening fine-tune (6000)")
    p.add_argument("--crossfit", type=int, default=0,
                   help="Budget.crossfit of every run: candidates ranked on k-fold cross-fitted validation figures "
                        "(default 0: off, in-sample, as the runs before it existed)")
    p.add_argument("--refinalize-from", nargs="+", type=Path, metavar="PART", default=None,
                   help="do not search: run the final stage of these result files' runs again (nachos_tf.refinalize) "
                        "with this command's final budget (--max-final, --final-epochs, --rescore, ...) into "
                        "--runs-dir; handmade rows are copied")
    add_threads(p)
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "compare")
    add_out(p, RESULTS / "compare.json")
    add_resume(p)
    p.add_argument("--merge", nargs="+", type=Path, metavar="PART", default=None,
                   help="join result files of parallel runs (one --seeds per process) into --out")
    p.add_argument("--static-from", nargs="+", type=Path, metavar="PART", default=None,
                   help="with --merge: also take the static rows of these files, which may differ from the parts "
                        "in --accuracy-tolerance only (a network without early exits has one operating point)")
    p.add_argument("--nachos-from", nargs="+", type=Path, metavar="PART", default=None,
                   help="with --merge: also take the nachos rows of these files, which may differ from the parts in "
                        "--population, --mutation and --mutation-rate only (NSGA-II's own settings; they agree "
                        "among themselves)")
    p.add_argument("--replace", nargs="+", type=Path, metavar="PART", default=None,
                   help="with --merge: these parts' rows take the place of the joined rows of the same (method, seed), "
                        "e.g. a seed's nachos / random / static runs made again with a supernet trained for that seed "
                        "(all of that seed's supernet rows then; the proxy rows are kept, noted under 'replaced')")
    return p.parse_args(argv)
