"""Deployment check of an export folder (issue 5, "done means"): C round trip and an independent TFLM run.

What it checks, on an existing `nachos-tf export` folder:

1. **C round trip.** `nachos_model_data.cc` is compiled with the system `g++` together with a small
   generated `main` that writes every stage array (`<symbol>`, `<symbol>_len`) back to a file; each file
   must equal the `stage<k>.tflite` named in `manifest.json` byte for byte (and match the manifest's
   size and SHA-256). This is what the firmware links, so it must be exactly what was measured.
2. **An independent staged run.** A second implementation, written here, that uses only the
   `tflite_micro` Python interpreter and `manifest.json`: it quantises the raw images with the manifest's
   input scale / zero point (the C helper's float32 formula), runs stage 0, decides the exit itself from
   the manifest's rule and integer / float32 thresholds, and runs stage k+1 only when exit k does not
   fire. It gives accuracy, exit rates and expected MACs. It does not call
   `tflite_export.tflm.evaluate_staged`, `StagedRunner` or `exit_decision`.
3. **Agreement with the library.** The library path (`tflite_export.tflm.evaluate_staged`, per sample,
   and `tflite_export.from_run.evaluate_export`, what `nachos-tf evaluate --json` prints) runs on the same
   first N samples; per-sample predictions, exits, stage invocations and every figure must be identical.

Exit status 0 when everything agrees, 1 with a message naming the first differences otherwise, 2 when the
export cannot be read. A JSON report is written either way.

Run (from the repository root; the demo export of `make demo`):

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/deploy_check.py runs/demo/deploy \
        --dataset fashion_mnist --limit 2000 --out benchmarks/results/deploy_check.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))         # benchmarks/_common (which puts the checkout on sys.path)

from _common import RESULTS, environment, open_interpreters, write_json  # noqa: E402

DEFAULT_OUT = RESULTS / "deploy_check.json"
FIGURE_KEYS = ("accuracy", "exit_rates", "exit_counts", "expected_macs", "stage_invocations", "n", "rule")
RULES = ("max_softmax", "margin", "entropy", "confidence")


class CheckError(Exception):
    """The export folder cannot be checked (missing file, no compiler, malformed manifest)."""


# --------------------------------------------------------------------------- reading the export

def read_manifest(export_dir: Path) -> Dict[str, Any]:
    """manifest.json of an export folder, with the few keys this script relies on checked."""
    path = Path(export_dir) / "manifest.json"
    try:
        man = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckError(f"{path}: cannot read the manifest ({e})") from None
    for key in ("input", "rule", "stages", "exit_macs"):
        if key not in man:
            raise CheckError(f"{path}: missing key {key!r}")
    if man["rule"] not in RULES:
        raise CheckError(f"{path}: unknown rule {man['rule']!r}")
    return man


def stage_files(export_dir: Path, manifest: Dict[str, Any]) -> List[bytes]:
    """Bytes of every stage<k>.tflite named in the manifest."""
    out = []
    for k, st in enumerate(manifest["stages"]):
        p = Path(export_dir) / st["tflite"]
        try:
            out.append(p.read_bytes())
        except OSError as e:
            raise CheckError(f"{p}: cannot read stage {k} ({e.strerror or e})") from None
    return out


# --------------------------------------------------------------------------- (i) C round trip

def dump_main_source(symbols: Sequence[str]) -> str:
    """A C++ main that writes each stage array to the file named by argv[1 + k]."""
    lines = ["#include <cstdio>", '#include "nachos_model_data.h"', "",
             f"static_assert(NACHOS_NUM_STAGE_MODELS == {len(symbols)}, \"stage count differs from the manifest\");",
             "",
             "static int dump(const char* path, const unsigned char* p, unsigned int n) {",
             "  FILE* f = std::fopen(path, \"wb\");",
             "  if (!f) return 1;",
             "  const size_t w = std::fwrite(p, 1, n, f);",
             "  return (std::fclose(f) == 0 && w == n) ? 0 : 1;",
             "}", "",
             "int main(int argc, char** argv) {",
             f"  if (argc != {len(symbols) + 1}) return 2;",
             "  int bad = 0;"]
    lines += [f"  bad |= dump(argv[{k + 1}], {s}, {s}_len);" for k, s in enumerate(symbols)]
    lines += ["  return bad;", "}", ""]
    return "\n".join(lines)


def _first_difference(a: bytes, b: bytes) -> Optional[int]:
    """Offset of the first differing byte (or of the shorter end), None when equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    diff = np.nonzero(np.frombuffer(a[:n], np.uint8) != np.frombuffer(b[:n], np.uint8))[0]
    return int(diff[0]) if len(diff) else n


def c_roundtrip(export_dir: Path, manifest: Optional[Dict[str, Any]] = None, cxx: Optional[str] = None
                ) -> Dict[str, Any]:
    """Compile nachos_model_data.cc with g++ and a dump main; compare every array with its .tflite file."""
    export_dir = Path(export_dir)
    manifest = manifest or read_manifest(export_dir)
    cxx = cxx or shutil.which("g++")
    if not cxx:
        raise CheckError("g++ not found: the C round trip needs the system C++ compiler")
    blobs = stage_files(export_dir, manifest)
    symbols = [st["symbol"] for st in manifest["stages"]]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nachos_roundtrip_") as tmp:
        work = Path(tmp)
        for f in ("nachos_model_data.h", "nachos_model_data.cc"):
            if not (export_dir / f).exists():
                raise CheckError(f"{export_dir / f} is missing")
            shutil.copy(export_dir / f, work / f)
        (work / "dump_main.cc").write_text(dump_main_source(symbols))
        cmd = [cxx, "-std=c++11", "-O0", "-Wall", "-Wextra", "-Werror", "nachos_model_data.cc", "dump_main.cc",
               "-o", "dump_main"]
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"ok": False, "compiler": _compiler_version(cxx), "command": " ".join(cmd[1:]),
                    "error": "compilation failed: " + proc.stderr.strip()[-2000:], "stages": [],
                    "seconds": time.perf_counter() - t0}
        outs = [work / f"stage{k}.bin" for k in range(len(symbols))]
        run = subprocess.run(["./dump_main"] + [str(p) for p in outs], cwd=work, capture_output=True, text=True)
        if run.returncode != 0:
            return {"ok": False, "compiler": _compiler_version(cxx), "command": " ".join(cmd[1:]),
                    "error": f"the dump program failed (exit code {run.returncode})", "stages": [],
                    "seconds": time.perf_counter() - t0}
        stages = []
        for k, (st, blob, path) in enumerate(zip(manifest["stages"], blobs, outs)):
            dumped = path.read_bytes()
            stages.append({
                "stage": k, "file": st["tflite"], "symbol": st["symbol"],
                "file_bytes": len(blob), "c_array_bytes": len(dumped),
                "identical": dumped == blob,
                "first_difference": _first_difference(dumped, blob),
                "manifest_bytes_ok": st.get("bytes") == len(blob),
                "manifest_sha256_ok": st.get("sha256") == hashlib.sha256(blob).hexdigest(),
            })
    ok = all(s["identical"] and s["manifest_bytes_ok"] and s["manifest_sha256_ok"] for s in stages)
    return {"ok": ok, "compiler": _compiler_version(cxx), "command": " ".join(cmd[1:]), "stages": stages,
            "seconds": time.perf_counter() - t0}


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return cxx


# --------------------------------------------------------------------------- (ii) independent staged run

def quantize_images(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw float images -> int8 with the device helper's float32 formula: floor(x / s + 0.5) + zp, clamped."""
    x = np.asarray(x, dtype=np.float32)
    f = np.floor(x / np.float32(scale) + np.float32(0.5))
    f = np.clip(np.nan_to_num(f, nan=-512.0), np.float32(-512.0), np.float32(512.0))
    return np.clip(f.astype(np.int32) + int(zero_point), -128, 127).astype(np.int8)


def smallest_f32_at_least(t: float) -> np.float32:
    """The smallest float32 >= t (so float32 score >= t iff score >= this value)."""
    f = np.float32(t)
    if math.isfinite(t) and float(f) < t:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def _num(v: Any) -> float:
    """A manifest number ("inf" / "-inf" strings included)."""
    return float(v)


class ExitRule:
    """The exit decision of one early exit, rebuilt from its manifest entry (not from tflite_export)."""

    def __init__(self, rule: str, stage: Dict[str, Any]):
        self.rule = rule
        t = _num(stage["threshold"])
        self.t_f32 = np.float32(_num(stage["threshold_f32"])) if stage.get("threshold_f32") is not None \
            else smallest_f32_at_least(t)
        if rule in ("entropy", "confidence") and self.t_f32 != smallest_f32_at_least(t):
            raise CheckError(f"{stage['tflite']}: threshold_f32 {stage['threshold_f32']} is not the float32 "
                             f"rounding up of threshold {t}")
        self.t_int = stage.get("threshold_int8")
        if rule in ("max_softmax", "margin") and self.t_int is None:
            raise CheckError(f"{stage['tflite']}: rule {rule} needs threshold_int8 in the manifest")
        ps, pz = float(stage["probs_quant"][0]), int(stage["probs_quant"][1])
        if rule == "max_softmax":       # the integer threshold must mean "dequantised >= t"
            self._check_int(t, [(q - pz) * float(np.float32(ps)) for q in range(-128, 128)], 128)
        if rule == "margin":
            self._check_int(t, [d * float(np.float32(ps)) for d in range(256)], 256)
        q = np.arange(-128, 128)
        if rule == "entropy":
            p = (q - pz).astype(np.float64) * float(np.float32(ps))
            with np.errstate(divide="ignore", invalid="ignore"):
                self.table = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).astype(np.float32)
        elif rule == "confidence":
            cs, cz = float(stage["confidence_quant"][0]), int(stage["confidence_quant"][1])
            self.table = ((q - cz).astype(np.float32) * np.float32(cs)).astype(np.float32)
        else:
            self.table = None

    def _check_int(self, t: float, values: List[float], never: int) -> None:
        lo = -128 if never == 128 else 0
        want = next((lo + i for i, v in enumerate(values) if v >= t), never)
        if int(self.t_int) != want:
            raise CheckError(f"threshold_int8 {self.t_int} does not encode threshold {t} (expected {want})")

    def fires(self, probs_q: np.ndarray, conf_q: Optional[int], stay: np.float32) -> Tuple[bool, np.float32]:
        """(leave here?, updated running product prod(1 - b_j)) for one sample's int8 outputs."""
        q = probs_q.astype(np.int32)
        if self.rule == "max_softmax":
            return int(q.max()) >= int(self.t_int), stay
        if self.rule == "margin":
            top = np.sort(q)[::-1]
            return int(top[0] - top[1]) >= int(self.t_int), stay
        if self.rule == "entropy":
            s = np.float32(0.0)
            for v in q:
                s = np.float32(s + self.table[int(v) + 128])
            return bool(s >= self.t_f32), stay
        b = self.table[int(conf_q) + 128]
        stay = np.float32(stay * np.float32(np.float32(1.0) - b))
        return bool(np.float32(np.float32(1.0) - stay) >= self.t_f32), stay


def independent_run(export_dir: Path, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """Staged TFLM run decided here from manifest.json only; figures plus per-sample predictions and exits."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    blobs = stage_files(export_dir, manifest)
    stages = manifest["stages"]
    rule = manifest["rule"]
    its = open_interpreters(blobs, manifest)
    rules = [ExitRule(rule, st) for st in stages[:-1]]
    shape = tuple(int(d) for d in manifest["input"]["shape"])
    xq = quantize_images(x, float(manifest["input"]["scale"]), int(manifest["input"]["zero_point"]))
    y = np.asarray(y).reshape(-1)
    n, last = len(xq), len(its) - 1
    preds = np.zeros(n, np.int64)
    exits = np.zeros(n, np.int64)
    invocations = [0] * len(its)
    t0 = time.perf_counter()
    for i in range(n):
        data = xq[i].reshape(shape)
        stay = np.float32(1.0)
        for k, it in enumerate(its):
            it.set_input(data, 0)
            it.invoke()
            invocations[k] += 1
            probs = np.asarray(it.get_output(stages[k]["logits_output"])).reshape(-1)
            if k == last:
                leave = True
            else:
                ci = stages[k]["confidence_output"]
                conf = int(np.asarray(it.get_output(ci)).reshape(-1)[0]) if ci is not None else None
                leave, stay = rules[k].fires(probs, conf, stay)
            if leave:
                preds[i], exits[i] = int(np.argmax(probs)), k
                break
            data = it.get_output(stages[k]["features_output"])
    seconds = time.perf_counter() - t0
    res = figures(preds, exits, y, manifest["exit_macs"], rule)
    res.update({"stage_invocations": invocations, "seconds": seconds, "ms_per_image": 1000.0 * seconds / n,
                "predictions": preds, "exits": exits})
    return res


def figures(preds: np.ndarray, exits: np.ndarray, y: np.ndarray, exit_macs: Sequence[float], rule: str
            ) -> Dict[str, Any]:
    """Accuracy, exit rates / counts and expected MACs from per-sample predictions and exits."""
    n = len(preds)
    counts = [int(np.sum(exits == k)) for k in range(len(exit_macs))]
    total = 0.0
    for c, m in zip(counts, exit_macs):        # integer-valued products: exact in any order
        total += c * float(m)
    return {"accuracy": int(np.sum(preds == y)) / n, "exit_rates": [c / n for c in counts],
            "exit_counts": counts, "expected_macs": total / n, "n": n, "rule": rule}


# --------------------------------------------------------------------------- (iii) the library path

def library_run(export_dir: Path, x: np.ndarray, y: np.ndarray, measure: bool = True) -> Dict[str, Any]:
    """tflite_export.tflm.evaluate_staged on the same samples, with per-sample predictions and exits."""
    from tflite_export.tflm import evaluate_staged

    return evaluate_staged(export_dir, x, y, details=True, measure=measure)


def library_cli_figures(export_dir: Path, dataset: str, data_path: Optional[str], split: str,
                        limit: Optional[int]) -> Dict[str, Any]:
    """What `nachos-tf evaluate DIR --dataset D --split S --limit N --json F` writes."""
    from tflite_export.from_run import evaluate_export

    return evaluate_export(export_dir, dataset, data_path=data_path, split=split, limit=limit)


def compare(ours: Dict[str, Any], theirs: Dict[str, Any], what: str, per_sample: bool = True) -> List[str]:
    """Differences between two runs (empty when they agree exactly)."""
    problems = []
    for key in FIGURE_KEYS:
        if key in theirs and ours.get(key) != theirs.get(key):
            problems.append(f"{what}: {key} differs: independent {ours.get(key)!r}, library {theirs.get(key)!r}")
    if per_sample:
        for key in ("predictions", "exits"):
            a, b = np.asarray(ours[key]), np.asarray(theirs[key])
            if a.shape != b.shape:
                problems.append(f"{what}: {key} has {a.shape} vs {b.shape} entries")
                continue
            bad = np.nonzero(a != b)[0]
            if len(bad):
                problems.append(f"{what}: {key} differ on {len(bad)} samples, first at sample {int(bad[0])} "
                                f"(independent {int(a[bad[0]])}, library {int(b[bad[0]])})")
    return problems


def agreement(export_dir: Path, x: np.ndarray, y: np.ndarray, measure: bool = True) -> Dict[str, Any]:
    """Independent run vs evaluate_staged on the same samples: {"ok", "problems", "independent", "library"}."""
    ours = independent_run(export_dir, x, y)
    lib = library_run(export_dir, x, y, measure=measure)
    problems = compare(ours, lib, "evaluate_staged")
    return {"ok": not problems, "problems": problems, "independent": ours, "library": lib}


# --------------------------------------------------------------------------- report

def public(res: Dict[str, Any]) -> Dict[str, Any]:
    """A run's JSON-safe figures (per-sample arrays dropped)."""
    return {k: v for k, v in res.items() if k not in ("predictions", "exits")}


def load_split(dataset: str, data_path: Optional[str], split: str, limit: Optional[int]
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The first `limit` samples of a split, loaded as `nachos-tf evaluate` loads them."""
    from nachos_tf.data import load

    data = load(dataset, data_path, 0.1, 0)
    x, y = getattr(data, f"x_{split}"), np.asarray(getattr(data, f"y_{split}")).reshape(-1)
    return (x[:limit], y[:limit]) if limit else (x, y)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir", type=Path, help="an export folder (manifest.json, stage<k>.tflite, C sources)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-path", default=None, help="where the dataset lives (default: found automatically)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--limit", type=int, default=None, help="first N samples of the split (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    report: Dict[str, Any] = {
        "benchmark": "deploy_check",
        "command": " ".join(["python benchmarks/deploy_check.py"] + list(sys.argv[1:] if argv is None else argv)),
        "export_dir": str(args.export_dir), "dataset": args.dataset, "split": args.split, "limit": args.limit,
        **environment(),
    }
    try:
        manifest = read_manifest(args.export_dir)
        report["export"] = {"solution": manifest.get("solution"), "quantization": manifest.get("quantization"),
                            "qat_epochs": manifest.get("qat_epochs"), "rule": manifest["rule"],
                            "thresholds": [st.get("threshold") for st in manifest["stages"][:-1]],
                            "exit_macs": manifest["exit_macs"]}
        report["roundtrip"] = c_roundtrip(args.export_dir, manifest)
        x, y = load_split(args.dataset, args.data_path, args.split, args.limit)
        agree = agreement(args.export_dir, x, y)
        t_cli = time.perf_counter()
        cli = library_cli_figures(args.export_dir, args.dataset, args.data_path, args.split, args.limit)
        cli["seconds_total"] = time.perf_counter() - t_cli
        problems = agree["problems"] + compare(agree["independent"], cli, "evaluate_export", per_sample=False)
    except CheckError as e:
        report["error"] = str(e)
        _write(args.out, report)
        print(f"deploy_check: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # ExportError and friends from the library path
        report["error"] = f"{type(e).__name__}: {e}"
        _write(args.out, report)
        print(f"deploy_check: {report['error']}", file=sys.stderr)
        return 2
    report["independent"] = public(agree["independent"])
    report["library_evaluate_staged"] = public(agree["library"])
    report["library_evaluate_export"] = cli
    report["agreement"] = {"ok": not problems, "problems": problems,
                           "compared": list(FIGURE_KEYS) + ["per-sample predictions", "per-sample exits"]}
    report["ok"] = bool(report["roundtrip"]["ok"] and not problems)
    report["wall_seconds"] = time.perf_counter() - t0
    _write(args.out, report)
    print(summary(report))
    if not report["roundtrip"]["ok"]:
        print("deploy_check: FAILED: the compiled C arrays differ from the .tflite files "
              f"({_roundtrip_problem(report['roundtrip'])})", file=sys.stderr)
    if problems:
        print("deploy_check: FAILED: the independent staged run and the library disagree:\n  "
              + "\n  ".join(problems[:10]), file=sys.stderr)
    return 0 if report["ok"] else 1


def _roundtrip_problem(rt: Dict[str, Any]) -> str:
    if rt.get("error"):
        return rt["error"]
    bad = [s for s in rt["stages"] if not (s["identical"] and s["manifest_bytes_ok"] and s["manifest_sha256_ok"])]
    return "; ".join(f"stage {s['stage']}: first difference at byte {s['first_difference']}, "
                     f"bytes ok {s['manifest_bytes_ok']}, sha256 ok {s['manifest_sha256_ok']}" for s in bad)


def summary(report: Dict[str, Any]) -> str:
    """A few lines for the terminal."""
    rt, ind = report["roundtrip"], report["independent"]
    lines = [f"C round trip ({rt['compiler']}): " + ("identical" if rt["ok"] else "DIFFERENT") + ", "
             + ", ".join(f"{s['file']} {s['file_bytes']:,} B" for s in rt["stages"]),
             f"independent staged run on {ind['n']} samples: accuracy {ind['accuracy']:.4f}, exit rates "
             + " / ".join(f"{r:.4f}" for r in ind["exit_rates"]) + f", expected MACs {ind['expected_macs']:,.1f}",
             "agreement with evaluate_staged and evaluate_export: "
             + ("exact" if report["agreement"]["ok"] else f"{len(report['agreement']['problems'])} differences"),
             f"report: {report.get('out', '')}"]
    return "\n".join(lines)


def _write(path: Path, report: Dict[str, Any]) -> None:
    report["out"] = str(path)
    write_json(Path(path), report, indent=2)


if __name__ == "__main__":
    sys.exit(main())
