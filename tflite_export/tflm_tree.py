"""TensorFlow Lite Micro as a dependency: the source tree (`TFLM_ROOT`), its op resolver, its library.

The project never copies TFLM: a user points `TFLM_ROOT` at a tflite-micro checkout whose Makefile
downloads (flatbuffers, gemmlowp, ruy, kissfft, CMSIS-NN, CMSIS) are already in
`tensorflow/lite/micro/tools/make/downloads/`. `build_library` builds `libtensorflow-microlite.a`
with TFLM's own Makefile, out of tree (the checkout may be read-only), into a cache folder
`$XDG_CACHE_HOME/nachos-tf/tflm/<tree>/<target>-<kernels>/` (default `~/.cache`), where <tree> is the
checkout's git commit or a hash of its files; a second call with the same settings only reads the
cache. The compiler flags TFLM used are stored beside the library (`flags.json`): code that includes
TFLM headers must be compiled with them (C++17, `-DTF_LITE_STATIC_MEMORY`, the same float ABI).

`RESOLVER_METHODS` maps every TFLite builtin op to the `tflite::MicroMutableOpResolver` method that
registers it, as read from `micro_mutable_op_resolver.h` of tflite-micro 90b983c2 (2026-08-20);
`resolver_table()` reads the header of `TFLM_ROOT` instead when it is set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from nachos_tf.errors import ExportError

__all__ = ["FirmwareError", "TFLM_ENV", "TARGETS", "KERNELS", "RESOLVER_METHODS", "find_tflm_root",
           "tree_key", "resolver_methods", "resolver_table", "cache_root", "Library", "build_library",
           "make_args", "check_target"]

TFLM_ENV = "TFLM_ROOT"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"

#: target name -> TFLM Makefile TARGET_ARCH (None: the host, TFLM's default linux_x86_64 target)
TARGETS: Dict[str, Optional[str]] = {
    "host": None, "cortex-m4": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp", "cortex-m33": "cortex-m33",
    "cortex-m55": "cortex-m55",
}
#: kernel set -> TFLM Makefile OPTIMIZED_KERNEL_DIR
KERNELS: Dict[str, Optional[str]] = {"reference": None, "cmsis-nn": "cmsis_nn"}

# TFLite builtin op -> MicroMutableOpResolver method, from tflite-micro 90b983c2's micro_mutable_op_resolver.h
# (tests/test_firmware_tools.py checks it against TFLM_ROOT's header).
RESOLVER_METHODS: Dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}


class FirmwareError(ExportError):
    """The firmware cannot be built or run: TFLM_ROOT, toolchain, compiler, linker or emulator."""


def find_tflm_root(required: bool = True) -> Optional[Path]:
    """The tflite-micro checkout named by the TFLM_ROOT environment variable.

    Args:
        required: raise when TFLM_ROOT is unset (else return None).

    Returns:
        The absolute path of the checkout, or None when unset and not required.

    Raises:
        FirmwareError: TFLM_ROOT is unset (and required) or does not hold a tflite-micro checkout with its
            Makefile downloads.
    """
    val = os.environ.get(TFLM_ENV, "").strip()
    if not val:
        if not required:
            return None
        raise FirmwareError(f"{TFLM_ENV} is not set: point it at a tflite-micro checkout "
                            f"(e.g. export {TFLM_ENV}=/path/to/tflite-micro)")
    root = Path(val).expanduser().resolve()
    if not (root / MAKEFILE).is_file() or not (root / RESOLVER_HEADER).is_file():
        raise FirmwareError(f"{TFLM_ENV}={val} is not a tflite-micro checkout (no {MAKEFILE})")
    missing = [d for d in ("flatbuffers", "gemmlowp", "ruy") if not (root / DOWNLOADS / d).is_dir()]
    if missing:
        raise FirmwareError(f"{TFLM_ENV}={val} lacks {DOWNLOADS}/{missing[0]}: the Makefile's third-party "
                            f"downloads must be in place (offline builds)")
    return root


_KEYS: Dict[str, str] = {}


def tree_key(root: Path) -> str:
    """A short name of the checkout's version: its git commit, else a hash of every file's path and bytes.

    Args:
        root: the tflite-micro checkout.

    Returns:
        "<12 hex digits of the commit>" or "tree-<12 hex digits>".
    """
    root = Path(root)
    if str(root) in _KEYS:
        return _KEYS[str(root)]
    key = None
    if (root / ".git").exists() and shutil.which("git"):
        p = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
        if p.returncode == 0 and not dirty.stdout.strip():
            key = p.stdout.strip()[:12]
    if key is None:
        h = hashlib.sha256()
        for dp, dns, fns in os.walk(root):
            dns[:] = sorted(d for d in dns if d not in (".git", "gen"))
            for fn in sorted(fns):
                path = os.path.join(dp, fn)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                h.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
        key = "tree-" + h.hexdigest()[:12]
    _KEYS[str(root)] = key
    return key


def resolver_methods(root: Path) -> Dict[str, str]:
    """Builtin op -> MicroMutableOpResolver method, parsed from the checkout's micro_mutable_op_resolver.h.

    Args:
        root: the tflite-micro checkout.

    Returns:
        One entry per `Add<Name>(...)` method that calls `AddBuiltin(BuiltinOperator_<OP>, ...)`.

    Raises:
        FirmwareError: the header cannot be read or registers no builtin op.
    """
    path = Path(root) / RESOLVER_HEADER
    try:
        text = path.read_text()
    except OSError as e:
        raise FirmwareError(f"{path}: cannot read ({e.strerror or e})") from None
    parts = re.split(r"TfLiteStatus\s+(Add\w+)\s*\(", text)
    table = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        m = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body.split("TfLiteStatus", 1)[0])
        if m:
            table[m.group(1)] = name
    if not table:
        raise FirmwareError(f"{path}: no builtin op registration found (not TFLM's op resolver?)")
    return table


def resolver_table() -> Tuple[Dict[str, str], str]:
    """The op -> resolver method table to export against, and where it comes from.

    Returns:
        (table, source): TFLM_ROOT's header when TFLM_ROOT is set, else RESOLVER_METHODS.

    Raises:
        FirmwareError: TFLM_ROOT is set but invalid.
    """
    root = find_tflm_root(required=False)
    if root is None:
        return RESOLVER_METHODS, "tflite-micro 90b983c2 (TFLM_ROOT not set)"
    return resolver_methods(root), str(root / RESOLVER_HEADER)


# --------------------------------------------------------------------------- the library build

_PRINT_VARS = ("CXX", "CC", "CXXFLAGS", "CCFLAGS", "INCLUDES", "CORE_OPTIMIZATION_LEVEL", "LDFLAGS",
               "MICROLITE_LIBS", "MICROLITE_LIB_PATH")
LIBRARY_JSON = "library.json"


def cache_root() -> Path:
    """Folder of the cached TFLM library builds: `$XDG_CACHE_HOME/nachos-tf/tflm` (default ~/.cache).

    Returns:
        The folder (not created).
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nachos-tf" / "tflm"


@dataclass
class Library:
    """A built `libtensorflow-microlite.a` and the flags TFLM compiled it with (make text, shell-quoted)."""

    target: str
    kernels: str
    tree: str                  # tree_key of the checkout
    root: str                  # the checkout
    folder: str                # the cache folder (TFLM's BASE_GENDIR)
    lib: str                   # path of libtensorflow-microlite.a
    make_args: List[str]
    vars: Dict[str, str]       # CXX, CC, CXXFLAGS, CCFLAGS, INCLUDES, CORE_OPTIMIZATION_LEVEL, LDFLAGS, ...
    seconds: float             # wall time of the build (0 when it came from the cache)
    cached: bool = False

    def to_dict(self) -> Dict[str, object]:
        """JSON-safe fields."""
        return {k: getattr(self, k) for k in ("target", "kernels", "tree", "root", "folder", "lib", "make_args",
                                                "vars", "seconds", "cached")}


def make_args(target: str, kernels: str) -> List[str]:
    """TFLM Makefile variables for a target and kernel set.

    Args:
        target: one of TARGETS.
        kernels: one of KERNELS.

    Returns:
        e.g. ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp", "TARGET_TOOLCHAIN_ROOT=/usr/bin/",
        "OPTIMIZED_KERNEL_DIR=cmsis_nn"].

    Raises:
        FirmwareError: unknown target or kernels, or arm-none-eabi-gcc missing for a Cortex-M target.
    """
    check_target(target, kernels)
    args: List[str] = []
    arch = TARGETS[target]
    if arch is not None:
        gcc = shutil.which("arm-none-eabi-gcc")
        if gcc is None:
            raise FirmwareError("arm-none-eabi-gcc not found: install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                "libstdc++-arm-none-eabi-newlib (Debian) or put the Arm GNU toolchain on PATH")
        args += ["TARGET=cortex_m_generic", f"TARGET_ARCH={arch}",
                 f"TARGET_TOOLCHAIN_ROOT={os.path.dirname(os.path.realpath(gcc))}/"]
    if KERNELS[kernels] is not None:
        args.append(f"OPTIMIZED_KERNEL_DIR={KERNELS[kernels]}")
    return args


def check_target(target: str, kernels: str) -> None:
    """FirmwareError unless `target` is one of TARGETS and `kernels` one of KERNELS."""
    if target not in TARGETS:
        raise FirmwareError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if kernels not in KERNELS:
        raise FirmwareError(f"unknown kernels {kernels!r}; choose one of {', '.join(KERNELS)}")


def _build_env(folder: Path) -> Dict[str, str]:
    """The environment for TFLM's make: a python3 with numpy and Pillow first on PATH (its Makefile runs
    generate_cc_arrays.py while it parses)."""
    probe = subprocess.run([sys.executable, "-c", "import numpy, PIL"], capture_output=True)
    if probe.returncode != 0:
        raise FirmwareError(f"TFLM's Makefile needs a python3 with numpy and Pillow; {sys.executable} lacks them "
                            f"(pip install numpy pillow)")
    shim = folder / "python-bin"
    shim.mkdir(parents=True, exist_ok=True)
    script = f'#!/bin/sh\nexec "{sys.executable}" "$@"\n'   # a script, not a symlink: a venv's python
    link = shim / "python3"                                      # finds its packages only under its own path
    if not link.is_file() or link.read_text() != script:
        tmp = shim / f"python3.{os.getpid()}"
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, link)
    env = dict(os.environ)
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    return env


def _make(root: Path, args: List[str], env: Dict[str, str], log_path: Optional[Path] = None,
          timeout: float = 7200) -> str:
    cmd = ["make", "-s", "-f", MAKEFILE] + args
    if shutil.which("make") is None:
        raise FirmwareError("make not found: install make (Debian: build-essential)")
    try:
        p = subprocess.run(cmd, cwd=str(root), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"TFLM's make did not finish in {timeout:.0f} s: {' '.join(cmd)}") from None
    if log_path is not None:
        log_path.write_text(f"$ (cd {root} && {' '.join(cmd)})\n{p.stdout}\n{p.stderr}")
    if p.returncode != 0:
        tail = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip()][-3:]
        where = f" (log: {log_path})" if log_path is not None else ""
        raise FirmwareError(f"TFLM's make failed{where}: {' | '.join(tail) or 'no message'}")
    return p.stdout


def build_library(target: str, kernels: str = "reference", root: Optional[Path] = None, jobs: int = 2,
                  log: Optional[Callable[[str], None]] = None) -> Library:
    """`libtensorflow-microlite.a` for a target and kernel set, built once with TFLM's Makefile and cached.

    Built out of tree (`BASE_GENDIR` in the cache folder), so the checkout may be read-only. The flags
    TFLM compiled with are printed by its Makefile (`print-CXXFLAGS` ...) and kept in `library.json`.

    Args:
        target: one of TARGETS ("host", "cortex-m4", ...).
        kernels: "reference" or "cmsis-nn".
        root: the tflite-micro checkout (default: TFLM_ROOT).
        jobs: parallel compile jobs.
        log: called with one line before a (long) build starts.

    Returns:
        The Library (from the cache when it was built before).

    Raises:
        FirmwareError: TFLM_ROOT, a tool or the build fails.
    """
    import fcntl

    check_target(target, kernels)
    # resolved: one checkout named two ways (a symlink, "../shared/...") must find its one cached build
    root = (Path(root) if root is not None else find_tflm_root()).resolve()
    key = tree_key(root)
    folder = cache_root() / key / f"{target}-{kernels}"
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / LIBRARY_JSON
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one build per folder at a time (tests, CLI)
        if info.is_file():
            try:
                d = json.loads(info.read_text())
                # the folder is named by the tree's content (commit or file hash): a build made from another
                # copy of the same tree (a moved or re-cloned checkout, CI's path) is this one's; only where
                # the headers live changes
                if Path(d["lib"]).is_file() and d.get("tree") == key:
                    d.update(root=str(root), cached=True, seconds=0.0)
                    return Library(**d)
            except (ValueError, KeyError, TypeError):
                pass
        args = make_args(target, kernels) + [f"BASE_GENDIR={folder}"]
        env = _build_env(folder)
        if log is not None:
            log(f"building TFLM's library for {target} ({kernels} kernels) into {folder} "
                f"(once; minutes on 2 cores)")
        t0 = time.time()
        _make(root, args + [f"-j{max(1, int(jobs))}", "microlite"], env, folder / "build.log")
        seconds = time.time() - t0
        out = _make(root, args + [f"print-{v}" for v in _PRINT_VARS], env)
        vals: Dict[str, str] = {}
        for line in out.splitlines():
            name, sep, value = line.partition("=")
            if sep and name in _PRINT_VARS and name not in vals:
                vals[name] = value.strip()
        missing = [v for v in _PRINT_VARS if v not in vals]
        if missing:
            raise FirmwareError(f"TFLM's Makefile did not print {', '.join(missing)}")
        lib = Path(vals["MICROLITE_LIB_PATH"])
        lib = lib if lib.is_absolute() else root / lib
        if not lib.is_file():
            raise FirmwareError(f"TFLM's make finished but {lib} does not exist")
        libr = Library(target, kernels, key, str(root), str(folder), str(lib), make_args(target, kernels), vals,
                       round(seconds, 1))
        tmp = info.with_suffix(".tmp")
        tmp.write_text(json.dumps(libr.to_dict(), indent=2) + "\n")
        os.replace(tmp, info)
        return libr
