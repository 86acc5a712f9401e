"""The report of a run folder: ``report.md``, ``pareto.png`` and ``exit_rates.png``, drawn from its JSON files.

`report(run_dir)` can be called at any time (also on a partial or interrupted run); it reads the files that
`nachos_tf.results` defines and never changes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .errors import RunDirError
from .fsio import atomic_write_text, ensure_writable, save_figure
from .results import (ARCHIVE, CONFIG, EXITS_PNG, PARETO, PARETO_PNG, REPORT, Archive, PathLike, Solution,
                      admissible_front, hypervolume, read_json, read_pareto, run_dir, solutions_table,
                      split_records)
from .units import human as _fmt_macs

__all__ = ["report", "solutions_table"]


def _plot_pareto(path: Path, records: Sequence[Mapping[str, Any]], solutions: Sequence[Solution],
                 constraints: Mapping[str, Any], search_c: Optional[Mapping[str, Any]] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from .units import human

    fig, ax = plt.subplots(figsize=(7, 4.8))
    measured = [r for r in records if r["metrics"].get("accuracy") is not None]   # not pruned / failed
    feas = [r for r in measured if r.get("feasible")]
    infeas = [r for r in measured if not r.get("feasible")]
    for group, style, label in ((infeas, dict(c="0.7", marker="x"), "infeasible candidate"),
                                (feas, dict(c="tab:blue", marker="o", alpha=0.6), "feasible candidate")):
        if group:
            ax.scatter([r["metrics"]["expected_macs"] for r in group], [r["metrics"]["accuracy"] for r in group],
                       s=18, label=label, **style)
    front = admissible_front(records)
    if front:
        ax.step([r["metrics"]["expected_macs"] for r in front], [r["metrics"]["accuracy"] for r in front],
                where="post", c="tab:orange", lw=1.5, marker="o", ms=5, label="admissible front (search)")
    if solutions:
        ax.scatter([s.val["expected_macs"] for s in solutions], [s.val["accuracy"] for s in solutions],
                   marker="*", s=140, c="tab:red", zorder=5, label="re-trained (val)")
        ax.scatter([s.test["expected_macs"] for s in solutions], [s.test["accuracy"] for s in solutions],
                   marker="D", s=40, facecolors="none", edgecolors="tab:red", zorder=5, label="re-trained (test)")
        for s in solutions:
            ax.annotate(s.id, (s.val["expected_macs"], s.val["accuracy"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.axhline(constraints["min_accuracy"], c="k", ls="--", lw=1, label="min accuracy")
    if search_c and search_c["min_accuracy"] != constraints["min_accuracy"]:
        ax.axhline(search_c["min_accuracy"], c="0.5", ls="--", lw=0.8, label="search floor (proxy slack)")
    ax.axvline(constraints["max_macs"], c="k", ls=":", lw=1, label="max expected MACs")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human(v)))
    ax.set_xlabel("expected MACs per image")
    ax.set_ylabel("validation accuracy (thresholded EENN)")
    ax.set_title("Candidates and admissible Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def _plot_exit_rates(path: Path, solutions: Sequence[Solution]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    if not solutions:
        ax.text(0.5, 0.5, "no admissible solution", ha="center", va="center", transform=ax.transAxes)
    else:
        n_exits = max(len(s.test["exit_rates"]) for s in solutions)
        labels = [s.id for s in solutions]
        x = np.arange(len(solutions))
        bottom = np.zeros(len(solutions))
        cmap = plt.get_cmap("viridis")
        for k in range(n_exits):
            rates = np.array([s.test["exit_rates"][k] if k < len(s.test["exit_rates"]) - 1 else
                              (s.test["exit_rates"][-1] if k == n_exits - 1 else 0.0) for s in solutions])
            name = "final" if k == n_exits - 1 else f"exit {k}"
            ax.bar(x, rates, bottom=bottom, color=cmap(k / max(n_exits - 1, 1)), label=name, width=0.6)
            bottom += rates
        ax.set_xticks(x, labels, rotation=30, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, ncol=min(n_exits, 5), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.set_ylabel("share of test images")
    ax.set_title("Where test images leave the network")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def _report_markdown(d: Path, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                     final: Sequence[Mapping[str, Any]], solutions: Sequence[Solution],
                     constraints: Mapping[str, Any], hv: float) -> str:
    c = constraints
    lines = ["# nachos-tf search report", ""]
    data = config.get("data", {})
    sc = config.get("search_constraints") or c
    slack = "" if sc["min_accuracy"] == c["min_accuracy"] else (
        f"- during the search (proxy training) the accuracy floor was {sc['min_accuracy']:.4g}; "
        "re-trained solutions are checked against the true floor")
    lines += [f"- dataset: {data.get('name', '?')} (train {data.get('n_train', '?')}, val {data.get('n_val', '?')}, "
              f"test {data.get('n_test', '?')})",
              f"- budget: {config.get('budget', {}).get('name', '?')}, seed {config.get('seed', '?')}",
              f"- constraints: accuracy >= {c['min_accuracy']}, expected MACs <= {_fmt_macs(c['max_macs'])}"
              + (f", flash <= {c['max_flash']} B" if c.get("max_flash") else "")
              + (f", RAM <= {c['max_ram']} B" if c.get("max_ram") else ""),
              f"- candidates evaluated: {len(records)} ({sum(1 for r in records if r.get('pruned'))} not trained: "
              "first exit over the MAC budget), "
              f"feasible: {sum(1 for r in records if r.get('feasible'))}, "
              f"admissible front: {len(admissible_front(records))}, hypervolume {hv:.4f} "
              "(share of the admissible error x MACs box dominated by the front)"] + ([slack] if slack else []) + [""]
    lines += ["## Admissible solutions", "", "Thresholds calibrated on validation; test figures use those "
              "thresholds. Expected MACs are staged costs weighted by exit rates.", "", "```",
              solutions_table(solutions), "```", ""]
    dropped = [r for r in final if r.get("dropped")]
    if dropped:
        lines += ["Dropped after re-training:", ""]
        lines += [f"- {r['id']}: {r['dropped']}" for r in dropped]
        lines.append("")
    lines += [f"![Pareto front]({PARETO_PNG})", "", f"![Exit rates]({EXITS_PNG})", ""]
    return "\n".join(lines)


def report(out_dir: PathLike) -> Path:
    """Re-draw ``report.md``, ``pareto.png`` and ``exit_rates.png`` from the run's JSON files.

    Args:
        out_dir: The run folder.

    Returns:
        The path of ``report.md``.

    Raises:
        RunDirError: The folder, its settings or its archive is missing or malformed, or the constraints are
            missing.
        WriteError: The run folder or a report file cannot be written.
    """
    d = run_dir(out_dir)
    config = read_json(d / CONFIG, "the run settings")
    if not (d / ARCHIVE).exists():
        raise RunDirError(f"{d / ARCHIVE} is missing: {d} holds no search")
    search, final = split_records(Archive(d / ARCHIVE).records())
    if (d / PARETO).exists():
        constraints, solutions = read_pareto(d)
    else:
        constraints, solutions = dict(config.get("constraints") or {}), []
        if "min_accuracy" not in constraints or "max_macs" not in constraints:
            raise RunDirError(f"{d / CONFIG} lacks the constraints")
    search_c = config.get("search_constraints") or constraints
    ensure_writable(d, folder=True)          # a read-only run folder: one line before any drawing
    hv = hypervolume(search, search_c)
    _plot_pareto(d / PARETO_PNG, search, solutions, constraints, search_c)
    _plot_exit_rates(d / EXITS_PNG, solutions)
    path = d / REPORT
    atomic_write_text(path, _report_markdown(d, config, search, final, solutions, constraints, hv))
    return path
