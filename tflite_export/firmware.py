"""Build an export with real TensorFlow Lite Micro for the host or a Cortex-M, run it, and measure it.

`build_firmware(export_dir, target, kernels, run=N)`:

1. builds TFLM's `libtensorflow-microlite.a` for the target and kernel set with TFLM's own Makefile
   (`tflm_tree.build_library`, cached per TFLM version, target and kernels);
2. writes `firmware/` into the export (driver, start-up code, linker script, Makefile and the build's
   `<config>.mk`, see firmware_files.py) and builds it with that Makefile, `-Werror` on our sources;
3. reports flash (model arrays vs code, from `size -A`, `nm` and the link map) and RAM (.data, .bss
   with the tensor arena, heap and stack reserves, and what the run really used);
4. with `run=N`, classifies the first N images of a dataset split on the host or under
   `qemu-system-arm` (newlib semihosting), and checks class AND exit of every image against the Python
   TFLM evaluation (`tflm.evaluate_staged`, what `nachos-tf evaluate` runs). The int8 scores of every
   exit evaluated are compared too, so an optimised kernel set (CMSIS-NN) that rounds differently is
   reported with where and by how much.

QEMU's timing says nothing about a device; only sizes and results are reported.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .firmware_files import DRIVER_CC, MACHINES, MAKEFILE, STARTUP_C, config_mk, linker_script
from .firmware_sizes import measure_sizes
from .tflm import StagedRunner, evaluate_staged, load_export
from .tflm_tree import TARGETS, FirmwareError, Library, build_library, check_target, find_tflm_root

__all__ = ["build_firmware", "firmware_summary", "write_firmware_files", "STACK_BYTES", "HEAP_BYTES"]

PathLike = Union[str, Path]
STACK_BYTES = 16 << 10       # main stack reserved on Cortex-M (the run reports what it used)
HEAP_BYTES = 16 << 10        # heap for newlib's stdio buffers of the test driver (the runner needs none)
FIRMWARE_DIR = "firmware"


def config_name(target: str, kernels: str) -> str:
    """The name of one build configuration, e.g. "cortex-m4-cmsis-nn"."""
    return f"{target}-{kernels}"


# --------------------------------------------------------------------------- files

def _includes(lib: Library) -> str:
    """TFLM's include flags with paths inside the checkout written as $(TFLM_ROOT)/...; generated-source
    folders of the library build are left out (the export does not include them)."""
    out = []
    for tok in lib.vars["INCLUDES"].split():
        if not tok.startswith("-I"):
            out.append(tok)
            continue
        path = tok[2:]
        if os.path.isabs(path):
            if path.startswith(lib.folder):
                continue
            rel = os.path.relpath(path, lib.root)
            out.append(tok if rel.startswith("..") else f"-I$(TFLM_ROOT)/{rel}")
        else:
            path = os.path.normpath(path)
            out.append("-I$(TFLM_ROOT)" if path == "." else f"-I$(TFLM_ROOT)/{path}")
    return " ".join(out)


def _cpu_flags(lib: Library) -> str:
    keep = ("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb", "-mlittle-endian")
    return " ".join(t for t in lib.vars["CXXFLAGS"].split() if t.startswith(keep))


def _run_words(target: str) -> List[str]:
    """The command that runs the built program on IMAGES from inside its build folder."""
    if TARGETS[target] is None:
        return ["./nachos_app", "{images}"]
    m = MACHINES[target]
    return ["qemu-system-arm", "-M", m.name, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native,arg=nachos_app,arg={images}",
            "-kernel", "nachos_app.elf"]


def write_firmware_files(export_dir: PathLike, lib: Library, stack_bytes: int = STACK_BYTES,
                         heap_bytes: int = HEAP_BYTES) -> Path:
    """Writes `firmware/` into an export: driver, Makefile, `<config>.mk` and, for Cortex-M, start-up
    code and the QEMU board's linker script.

    Args:
        export_dir: the export folder (its C sources are compiled from `..`).
        lib: the TFLM library build the configuration uses.
        stack_bytes: Cortex-M stack reserve.
        heap_bytes: Cortex-M heap reserve.

    Returns:
        The firmware folder.
    """
    fw = Path(export_dir) / FIRMWARE_DIR
    fw.mkdir(parents=True, exist_ok=True)
    cfg = config_name(lib.target, lib.kernels)
    bare = TARGETS[lib.target] is not None
    files = {"nachos_main.cc": DRIVER_CC, "Makefile": MAKEFILE}
    values = {
        "TFLM_ROOT": lib.root,
        "TFLM_LIB": lib.lib,
        "CXX": lib.vars["CXX"],
        "CC": lib.vars["CC"],
        "CXXFLAGS": lib.vars["CXXFLAGS"],
        "CCFLAGS": lib.vars["CCFLAGS"],
        "OPT": lib.vars["CORE_OPTIMIZATION_LEVEL"],
        "INCLUDES": _includes(lib),
        "LDLIBS": lib.vars["MICROLITE_LIBS"],
    }
    run = " ".join(_run_words(lib.target)).replace("{images}", "$(IMAGES)")
    if bare:
        m = MACHINES[lib.target]
        ld = f"{m.name}.ld"
        files["nachos_startup.c"] = STARTUP_C
        files[ld] = linker_script(m, stack_bytes, heap_bytes)
        values.update({
            "BOARD_DEFINES": "-DNACHOS_BARE_METAL",
            "LDSCRIPT": ld,
            "LINKFLAGS": f"{_cpu_flags(lib)} -T {ld} --specs=rdimon.specs -nostartfiles "
                         f"{lib.vars['LDFLAGS']} -Wl,--no-warn-rwx-segments",
            "STARTUP_OBJ": "$(BUILD)/nachos_startup.o",
            "APP_SUFFIX": ".elf",
            "RUN": f"cd $(BUILD) && {run}",
        })
    else:
        values.update({"BOARD_DEFINES": "", "LDSCRIPT": "", "LINKFLAGS": lib.vars["LDFLAGS"], "STARTUP_OBJ": "",
                       "APP_SUFFIX": "", "RUN": f"cd $(BUILD) && {run}"})
    header = (f"TFLM library: tflite-micro {lib.tree}, make {' '.join(lib.make_args) or '(host defaults)'} microlite\n"
              f"Flags as TFLM's Makefile printed them (print-CXXFLAGS ...), tree paths under $(TFLM_ROOT).")
    files[f"{cfg}.mk"] = config_mk(cfg, header, values)
    for name, text in files.items():
        p = fw / name
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
    return fw


# --------------------------------------------------------------------------- running

def _run_program(build: Path, target: str, images: Path, timeout: float) -> Tuple[str, str, int]:
    words = [w.replace("{images}", images.name) for w in _run_words(target)]
    if TARGETS[target] is not None and shutil.which("qemu-system-arm") is None:
        raise FirmwareError("qemu-system-arm not found: install qemu-system-arm (Debian) to run Cortex-M firmware")
    proc = subprocess.Popen(words, cwd=str(build), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise FirmwareError(f"{' '.join(words[:3])}: no result in {timeout:.0f} s (firmware hung?)") from None
    return out, err, proc.returncode


def parse_output(out: str, n_stages: int) -> Dict[str, Any]:
    """The driver's lines as arrays: class, exit, status and int8 scores per image; arena/stack/heap used.

    Args:
        out: the program's standard output.
        n_stages: stages of the export.

    Returns:
        {"classes", "exits", "status" (lists), "scores" (per image, a list of int8 arrays), "arena_used"
        (per stage), "stack_used", "heap_used", "done"}.
    """
    res: Dict[str, Any] = {"classes": [], "exits": [], "status": [], "scores": [], "arena_used": [0] * n_stages,
                           "stack_used": None, "heap_used": None, "done": None, "init": None}
    for line in out.splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "R" and len(w) >= 5:
            res["classes"].append(int(w[2]))
            res["exits"].append(int(w[3]))
            res["status"].append(int(w[4]))
            res["scores"].append([np.frombuffer(bytes.fromhex(h), dtype=np.int8) for h in w[5:]])
        elif w[0] == "NACHOS" and len(w) >= 3:
            if w[1] == "arena" and len(w) == 4 and 0 <= int(w[2]) < n_stages:
                res["arena_used"][int(w[2])] = int(w[3])
            elif w[1] in ("stack", "heap", "done", "init"):
                res[f"{w[1]}_used" if w[1] in ("stack", "heap") else w[1]] = int(w[2])
    return res


def compare_scores(fw_scores: Sequence[Sequence[np.ndarray]], py_scores: Sequence[Sequence[np.ndarray]],
                   limit: int = 10) -> Dict[str, Any]:
    """Where and by how much the firmware's int8 exit scores differ from Python TFLM's.

    Args:
        fw_scores: per image, the firmware's scores of every exit evaluated.
        py_scores: the same from the Python TFLM runner.
        limit: how many differing images to list.

    Returns:
        {"images_differing", "values_differing", "max_abs_diff", "per_exit": {k: {"images", "max_abs_diff"}},
        "examples": [{"image", "exit", "firmware", "python"}]}; scores compared for the exits both evaluated.
    """
    per_exit: Dict[int, Dict[str, int]] = {}
    examples = []
    images = values = max_abs = 0
    for i, (a, b) in enumerate(zip(fw_scores, py_scores)):
        differs = False
        for k, (sa, sb) in enumerate(zip(a, b)):
            if sa.shape != sb.shape:
                d = np.array([255])
            else:
                d = np.abs(sa.astype(np.int32) - sb.astype(np.int32))
            nz = int(np.count_nonzero(d))
            if nz:
                differs = True
                values += nz
                m = int(d.max())
                max_abs = max(max_abs, m)
                e = per_exit.setdefault(k, {"images": 0, "max_abs_diff": 0})
                e["images"] += 1
                e["max_abs_diff"] = max(e["max_abs_diff"], m)
                if len(examples) < limit:
                    examples.append({"image": i, "exit": k, "firmware": sa.tolist(), "python": sb.tolist()})
        images += int(differs)
    return {"images_differing": images, "values_differing": values, "max_abs_diff": max_abs,
            "per_exit": {str(k): v for k, v in sorted(per_exit.items())}, "examples": examples}


def python_reference(export_dir: PathLike, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """Class and exit per image from `evaluate_staged` (the `nachos-tf evaluate` path) and the int8 scores
    of every exit evaluated (the same stage interpreters, `StagedRunner.classify_trace`).

    Args:
        export_dir: the export.
        x: raw float images; y: labels.

    Returns:
        {"classes", "exits" (numpy), "scores" (per image), "evaluate" (the figures of evaluate_staged)}.
    """
    ev = evaluate_staged(export_dir, x, y, measure=False, details=True)
    manifest, blobs = load_export(export_dir)
    runner = StagedRunner(blobs, manifest, check=False)
    scores = [runner.classify_trace(runner.quantize(xi))[2] for xi in x]
    figures = {k: v for k, v in ev.items() if k not in ("predictions", "exits")}
    return {"classes": ev["predictions"], "exits": ev["exits"], "scores": scores, "evaluate": figures}


# --------------------------------------------------------------------------- the entry point

def _load_images(dataset: str, data_path: Optional[str], split: str, n: int) -> Tuple[np.ndarray, np.ndarray]:
    from nachos_tf.data import load

    if split not in ("train", "val", "test"):
        raise FirmwareError(f"split must be train, val or test, got {split!r}")
    data = load(dataset, data_path, 0.1, 0)
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    return np.asarray(x[:n]), np.asarray(y[:n]).reshape(-1)


def build_firmware(export_dir: PathLike, target: str = "host", kernels: str = "reference", run: int = 0,
                   dataset: str = "fashion_mnist", data_path: Optional[str] = None, split: str = "test",
                   images: Optional[Tuple[np.ndarray, np.ndarray]] = None, arena_bytes: Optional[int] = None,
                   jobs: int = 2, log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Builds an export with real TFLM for a target, measures it and optionally runs N real images.

    Args:
        export_dir: an export folder written by `nachos-tf export` / `export_eenn`.
        target: "host", "cortex-m4" (M4F, QEMU mps2-an386), "cortex-m7" (M7F, mps2-an500), "cortex-m33"
            (mps2-an505) or "cortex-m55" (mps3-an547).
        kernels: "reference" or "cmsis-nn" (TFLM's OPTIMIZED_KERNEL_DIR=cmsis_nn).
        run: classify the first `run` images of the split and compare with the Python TFLM evaluation
            (0: build and measure only).
        dataset, data_path, split: where the images come from (as `nachos-tf evaluate`).
        images: (x, y) raw images and labels instead of a dataset (the first `run` are used).
        arena_bytes: override the exported tensor arena (`-DNACHOS_ARENA_BYTES`), for kernels that need
            more scratch than the reference kernels the export was measured with.
        jobs: parallel compile jobs.
        log: called with progress lines (the library build takes minutes the first time).

    Returns:
        A JSON-safe report: target, kernels, machine, library, files, sizes (flash: model arrays vs code;
        RAM: data, bss, arena, heap, stack) and, with `run`, the run: n, agreement of class and exit with
        the Python evaluation, accuracy, exit rates, arena/stack/heap used, int8 score differences. Also
        written to `firmware/<config>.json`.

    Raises:
        FirmwareError: TFLM_ROOT, a tool, the build or the run fails (a non-zero exit, a crash, a TFLM
            error such as an arena too small for the kernels).
        ExportError: the export folder is broken.
    """
    check_target(target, kernels)
    if run < 0:
        raise FirmwareError(f"run must be >= 0, got {run}")
    if arena_bytes is not None and arena_bytes < 1024:
        raise FirmwareError(f"arena_bytes must be >= 1024, got {arena_bytes}")
    export_dir = Path(export_dir).resolve()
    manifest, blobs = load_export(export_dir)
    if "StageProbs" not in (export_dir / "nachos_eenn.h").read_text():
        raise FirmwareError(f"{export_dir} was exported by an older nachos-tf (its runner has no StageProbs): "
                            f"export it again")
    root = find_tflm_root()
    if TARGETS[target] is None and shutil.which("g++") is None:
        raise FirmwareError("g++ not found: install g++ (Debian: build-essential) for host builds")
    lib = build_library(target, kernels, root, jobs=jobs, log=log)
    fw = write_firmware_files(export_dir, lib)
    cfg = config_name(target, kernels)
    tag = cfg + (f"-arena{arena_bytes}" if arena_bytes else "")
    build = fw / "build" / tag
    cmd = ["make", "-s", "-C", str(fw), f"CONFIG={cfg}", f"BUILD=build/{tag}", f"TFLM_ROOT={root}",
           f"TFLM_LIB={lib.lib}", f"-j{max(1, int(jobs))}", "all"]
    if arena_bytes:
        cmd.insert(-1, f"NACHOS_DEFINES=-DNACHOS_ARENA_BYTES={int(arena_bytes)}")
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower()] or lines
        (build / "build.log").parent.mkdir(parents=True, exist_ok=True)
        (build / "build.log").write_text(p.stdout + p.stderr)
        raise FirmwareError(f"building {cfg} failed (log: {build / 'build.log'}): {' | '.join(errs[:3])[:600]}")
    build_s = time.time() - t0
    elf = build / ("nachos_app.elf" if TARGETS[target] is not None else "nachos_app")
    sizes = measure_sizes(elf, manifest, target, build / "nachos_app.map")
    m = MACHINES.get(target)
    report: Dict[str, Any] = {
        "export": str(export_dir),
        "solution": manifest.get("solution"),
        "target": target,
        "kernels": kernels,
        "config": tag,
        "machine": m.name if m else "host",
        "core": m.core if m else "x86-64 host",
        "tflm": {"tree": lib.tree, "root": lib.root, "library": lib.lib,
                 "library_bytes": os.path.getsize(lib.lib), "make_args": lib.make_args,
                 "library_build_seconds": lib.seconds, "library_cached": lib.cached,
                 "compiler": lib.vars["CXX"]},
        "arena_bytes": int(arena_bytes or manifest["arena_bytes"]),
        "arena_exported": int(manifest["arena_bytes"]),
        "files": {"folder": str(fw), "elf": str(elf), "map": str(build / "nachos_app.map"),
                  "makefile": str(fw / "Makefile"), "config": str(fw / f"{cfg}.mk")},
        "sizes": sizes,
        "build_seconds": round(build_s, 1),
        "run": None,
    }
    if run:
        report["run"] = _run_and_compare(export_dir, build, target, manifest, run, dataset, data_path, split,
                                         images)
        report["run"]["dataset"] = dataset if images is None else "given images"
        report["run"]["split"] = split if images is None else None
    out = fw / f"{tag}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    return report


def _run_and_compare(export_dir: Path, build: Path, target: str, manifest: dict, n: int, dataset: str,
                     data_path: Optional[str], split: str, images) -> Dict[str, Any]:
    if images is not None:
        x, y = np.asarray(images[0])[:n], np.asarray(images[1]).reshape(-1)[:n]
    else:
        x, y = _load_images(dataset, data_path, split, n)
    if len(x) == 0 or len(x) != len(y):
        raise FirmwareError(f"need images with labels to run (got {len(x)} images, {len(y)} labels)")
    size = int(np.prod(manifest["input"]["shape"]))
    if int(np.prod(x.shape[1:])) != size:
        raise FirmwareError(f"images have {int(np.prod(x.shape[1:]))} values, the export takes {size}")
    path = build / "images.f32"
    np.ascontiguousarray(x, dtype="<f4").tofile(path)
    n_stages = len(manifest["stages"])
    t0 = time.time()
    out, err, rc = _run_program(build, target, path, timeout=120 + 2.0 * len(x))
    seconds = time.time() - t0
    (build / "run.log").write_text(out + ("\n--- stderr\n" + err if err else ""))
    fw = parse_output(out, n_stages)
    errs = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if rc != 0 or fw["done"] is None:
        raise FirmwareError(f"the {target} firmware stopped (exit status {rc}) after {len(fw['classes'])} of "
                            f"{len(x)} images: {' | '.join(errs[-3:]) or 'no message'}")
    status = np.asarray(fw["status"])
    failed = np.flatnonzero(status != 0)
    failure = None
    if len(failed):     # e.g. -3: AllocateTensors failed, the arena is too small for these kernels
        failure = {"images": int(len(failed)), "first_image": int(failed[0]),
                   "status_counts": {str(int(v)): int(c) for v, c in zip(*np.unique(status[failed], return_counts=True))},
                   "messages": errs[-3:],
                   "hint": ("status -3: the tensor arena is too small for these kernels; build with a larger "
                            "arena_bytes (--arena-bytes)") if (status == -3).any() else ""}
    py = python_reference(export_dir, x, y)
    cls = np.asarray(fw["classes"])
    ex = np.asarray(fw["exits"])
    same_c = cls == py["classes"]
    same_e = ex == py["exits"]
    both = same_c & same_e
    counts = np.bincount(ex[status == 0], minlength=n_stages)
    mism = np.flatnonzero(~both)
    return {
        "n": int(len(x)),
        "agree": int(both.sum()),
        "agree_class": int(same_c.sum()),
        "agree_exit": int(same_e.sum()),
        "all_agree": bool(both.all()),
        "failed": failure,
        "mismatches": [{"image": int(i), "firmware": [int(cls[i]), int(ex[i])],
                        "python": [int(py["classes"][i]), int(py["exits"][i])]} for i in mism[:10]],
        "accuracy": float(np.mean((cls == y) & (status == 0))),
        "exit_counts": [int(c) for c in counts],
        "python": {k: py["evaluate"][k] for k in ("accuracy", "exit_counts", "expected_macs", "n")},
        "scores": compare_scores(fw["scores"], py["scores"]),
        "arena_used": fw["arena_used"],
        "stack_used": fw["stack_used"],
        "heap_used": fw["heap_used"],
        "seconds": round(seconds, 2),
    }


def firmware_summary(report: Dict[str, Any]) -> str:
    """A few lines for the terminal: sizes and, when run, the agreement with the Python evaluation.

    Args:
        report: what `build_firmware` returned.

    Returns:
        The text.
    """
    s = report["sizes"]
    ram = s["ram"]
    lines = [f"{report['target']} ({report['core']}, {report['kernels']} kernels, TFLM {report['tflm']['tree']}): "
             f"{report['files']['elf']}",
             f"flash {s['flash_bytes']:,} B = model arrays {s['model_bytes']:,} + code {s['code_bytes']:,}",
             f"RAM {ram['total']:,} B = data {ram['data']:,} + bss {ram['bss']:,} (arena {ram['arena']:,}) + heap "
             f"{ram['heap']:,} + stack {ram['stack']:,}"]
    r = report.get("run")
    if r:
        sc = r["scores"]
        lines.append(f"{r['n']} images on {report['machine']}: class and exit equal to the Python TFLM evaluation "
                     f"for {r['agree']}/{r['n']} (class {r['agree_class']}, exit {r['agree_exit']}); accuracy "
                     f"{r['accuracy']:.4f}, exits {r['exit_counts']}")
        lines.append("int8 exit scores: identical on every image" if not sc["images_differing"] else
                     f"int8 exit scores differ on {sc['images_differing']} images ({sc['values_differing']} values, "
                     f"max |diff| {sc['max_abs_diff']}, per exit {sc['per_exit']})")
        if r.get("failed"):
            f = r["failed"]
            lines.append(f"{f['images']} images FAILED on the device (status {f['status_counts']}; first image "
                         f"{f['first_image']}): {f['hint'] or ' | '.join(f['messages'])}")
        used = f"arena used per stage {r['arena_used']} of {report['arena_bytes']:,}"
        if r.get("stack_used") is not None:
            used += f", stack used {r['stack_used']:,}, heap used {r['heap_used']:,}"
        lines.append(used)
    return "\n".join(lines)
