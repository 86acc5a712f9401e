"""The `make demo` export on real TFLM firmware: per target flash and RAM, agreement with the Python evaluation.

For each configuration (target x kernel set) this builds the export with `tflite_export.firmware.build_firmware`
(TFLM's own library, TFLM_ROOT), runs the first N test images on the host or under qemu-system-arm and records
flash (model arrays vs code), RAM (.data, .bss with the arena, heap and stack reserves, what the run used) and
whether class and exit of every image equal the Python TFLM evaluation (`nachos-tf evaluate`). When the exported
arena is too small for a kernel set (CMSIS-NN on Helium asks for more scratch), the failure is recorded and the
run repeated with a larger arena (`--arena-bytes`), as a firmware engineer would.

It also writes the runtime footprints that `nachos_tf.boards` subtracts from a board's memory
(`nachos_tf/runtime_footprint.json`): runtime flash = firmware flash - model arrays; runtime RAM = .data + .bss
- arena + stack and heap used by the run.

    TFLM_ROOT=../shared/third_party/tflite-micro .venv/bin/python benchmarks/firmware.py runs/demo/deploy \
        --run 2000 --out benchmarks/results/firmware.json --footprint nachos_tf/runtime_footprint.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ["host-reference", "cortex-m4-reference", "cortex-m4-cmsis-nn", "cortex-m7-cmsis-nn",
           "cortex-m33-cmsis-nn", "cortex-m55-cmsis-nn"]


def _split(cfg: str):
    for k in ("-reference", "-cmsis-nn"):
        if cfg.endswith(k):
            return cfg[: -len(k)], k[1:]
    raise SystemExit(f"bad configuration {cfg!r}: <target>-reference or <target>-cmsis-nn")


def _version(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def _summary(rep: Dict[str, Any]) -> Dict[str, Any]:
    s = rep["sizes"]
    run = rep.get("run") or {}
    out = {
        "target": rep["target"], "kernels": rep["kernels"], "machine": rep["machine"], "core": rep["core"],
        "arena_bytes": rep["arena_bytes"], "arena_exported": rep["arena_exported"],
        "flash_bytes": s["flash_bytes"], "model_bytes": s["model_bytes"], "code_bytes": s["code_bytes"],
        "ram": s["ram"], "breakdown": s["breakdown"], "sections": s["sections"],
        "library_bytes": rep["tflm"]["library_bytes"],
    }
    if run:
        out["run"] = {k: run[k] for k in ("n", "agree", "agree_class", "agree_exit", "all_agree", "failed",
                                           "accuracy", "exit_counts", "python", "arena_used", "stack_used",
                                           "heap_used", "mismatches")}
        sc = run["scores"]
        out["run"]["scores"] = {k: sc[k] for k in ("images_differing", "values_differing", "max_abs_diff",
                                                    "per_exit")}
        out["run"]["scores"]["examples"] = sc["examples"][:3]
    return out


def footprint(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The runtime's own flash and RAM in one firmware (what a board must hold besides the model)."""
    ram = summary["ram"]
    run = summary["run"]
    return {
        "flash_bytes": summary["code_bytes"],
        "ram_bytes": ram["data"] + ram["bss"] - ram["arena"] + run["stack_used"] + run["heap_used"],
        "firmware_flash_bytes": summary["flash_bytes"], "model_bytes": summary["model_bytes"],
        "data": ram["data"], "bss": ram["bss"], "arena": ram["arena"], "stack_used": run["stack_used"],
        "heap_used": run["heap_used"], "machine": summary["machine"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir")
    ap.add_argument("--run", type=int, default=2000, help="test images per configuration")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "firmware.json"))
    ap.add_argument("--footprint", default=None, help="also write the boards' runtime footprints here")
    args = ap.parse_args(argv)

    from tflite_export.convert import build_firmware
    from tflite_export.tflm_tree import FirmwareError

    manifest = json.loads((Path(args.export_dir) / "manifest.json").read_text())
    res: Dict[str, Any] = {
        "command": "python benchmarks/firmware.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "export": str(args.export_dir), "solution": manifest.get("solution"), "rule": manifest["rule"],
        "stages": len(manifest["stages"]), "stage_bytes": [st["bytes"] for st in manifest["stages"]],
        "ops": manifest["ops"], "dataset": args.dataset, "split": "test", "n": args.run,
        "tools": {"g++": _version(["g++", "--version"]), "arm-none-eabi-g++": _version(["arm-none-eabi-g++", "--version"]),
                  "qemu-system-arm": _version(["qemu-system-arm", "--version"])},
        "configs": {},
    }
    for cfg in [c.strip() for c in args.configs.split(",") if c.strip()]:
        target, kernels = _split(cfg)
        t0 = time.time()
        print(f"--- {cfg}", flush=True)
        rep = build_firmware(args.export_dir, target, kernels, run=args.run, dataset=args.dataset, jobs=args.jobs,
                             log=print)
        res.setdefault("tflm", rep["tflm"]["tree"])
        entry = {"exported_arena": None}
        if rep["run"]["failed"]:
            # the exported arena (reference kernels + margin) is too small for these kernels: record it and
            # size the arena from what the kernels use, as a firmware engineer would
            entry["exported_arena"] = {"arena_bytes": rep["arena_bytes"], "failed": rep["run"]["failed"],
                                       "agree": rep["run"]["agree"], "n": rep["run"]["n"]}
            probe = build_firmware(args.export_dir, target, kernels, run=args.run, dataset=args.dataset,
                                   jobs=args.jobs, arena_bytes=4 * rep["arena_bytes"])
            need = max(probe["run"]["arena_used"])
            arena = int(math.ceil((need * 1.25 + 1024) / 16.0) * 16)   # the exporter's margin, on these kernels
            rep = build_firmware(args.export_dir, target, kernels, run=args.run, dataset=args.dataset,
                                 jobs=args.jobs, arena_bytes=arena)
            if rep["run"]["failed"]:
                raise FirmwareError(f"{cfg}: still failing with a {arena}-byte arena")
        entry.update(_summary(rep))
        entry["library_build_seconds"] = rep["tflm"]["library_build_seconds"]
        entry["seconds"] = round(time.time() - t0, 1)
        res["configs"][cfg] = entry
        r = entry["run"]
        print(f"{cfg}: flash {entry['flash_bytes']:,} (model {entry['model_bytes']:,}, code {entry['code_bytes']:,}), "
              f"RAM {entry['ram']['total']:,}; agree {r['agree']}/{r['n']}, int8 scores differ on "
              f"{r['scores']['images_differing']} images", flush=True)
    res["all_agree"] = all(c["run"]["all_agree"] for c in res["configs"].values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    if args.footprint:
        fps = {cfg: footprint(c) for cfg, c in res["configs"].items() if c["target"] != "host"}
        doc = {"source": f"{res['command']} (TFLM {res.get('tflm')}, {res['date']}): the export of solution "
                         f"{res['solution']} ({', '.join(res['ops'])})",
               "definition": "flash_bytes = firmware flash - model arrays; ram_bytes = .data + .bss - tensor arena "
                             "+ stack and heap used by the run",
               "footprints": fps}
        Path(args.footprint).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.footprint}")
    return 0 if res["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
