"""Microcontroller boards as search constraints: what is left for the model once the runtime is in.

A board has flash, SRAM and a core. The model's share is the board minus the TFLM runtime's own code and
RAM, **measured** by building the `make demo` solution's export with real TFLM for that core
(`nachos-tf firmware`, `benchmarks/firmware.py`) and stored in `runtime_footprint.json` beside this
module:

* runtime flash = the firmware's flash minus the model arrays (TFLM with the demo model's op set, the
  staged runner, newlib, start-up and the test driver's stdio);
* runtime RAM = .data + .bss minus the tensor arena, plus the stack and heap the run really used.

`max_flash` then bounds the int8 stage files (what the search measures as `flash_bytes`) and `max_ram`
the tensor arena (`arena_bytes`). A model with many more op types links more TFLM kernels than the demo
model; keep a margin for your own application code and buffers (`reserve_flash` / `reserve_ram`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import ConstraintError

__all__ = ["Board", "BOARDS", "FOOTPRINT_FILE", "runtime_footprint", "board", "board_limits", "board_constraints",
           "check_fit", "check_manifest_fit"]

FOOTPRINT_FILE = Path(__file__).with_name("runtime_footprint.json")
KIB = 1024


@dataclass(frozen=True)
class Board:
    """A real board: memory, core and the firmware target whose measured runtime it uses."""

    name: str
    part: str
    flash_bytes: int
    ram_bytes: int
    core: str
    target: str                 # `nachos-tf firmware --target` of the same core
    kernels: str = "cmsis-nn"   # the kernel set one ships on it
    note: str = ""


BOARDS: Dict[str, Board] = {b.name: b for b in (
    Board("stm32f746", "STM32F746NG (32F746G-DISCOVERY)", 1024 * KIB, 320 * KIB, "Cortex-M7F", "cortex-m7",
          note="single-precision FPU; runtime measured on QEMU's M7 (mps2-an500)"),
    Board("stm32l4r5", "STM32L4R5ZI (NUCLEO-L4R5ZI)", 2048 * KIB, 640 * KIB, "Cortex-M4F", "cortex-m4"),
    Board("nrf52840", "nRF52840 (nRF52840-DK, Arduino Nano 33 BLE)", 1024 * KIB, 256 * KIB, "Cortex-M4F",
          "cortex-m4"),
    Board("rp2350", "RP2350 (Raspberry Pi Pico 2)", 4096 * KIB, 520 * KIB, "Cortex-M33", "cortex-m33",
          note="flash is the Pico 2's external 4 MB QSPI chip"),
    Board("stm32l432", "STM32L432KC (NUCLEO-L432KC)", 256 * KIB, 64 * KIB, "Cortex-M4F", "cortex-m4"),
)}


def runtime_footprint(path: Optional[Path] = None) -> Dict[str, Any]:
    """The measured runtime footprints, keyed "<target>-<kernels>" (from runtime_footprint.json).

    Args:
        path: another footprint file (default: the one beside this module).

    Returns:
        {"source": ..., "footprints": {"cortex-m4-cmsis-nn": {"flash_bytes", "ram_bytes", ...}, ...}}.

    Raises:
        ConstraintError: the file is missing or malformed.
    """
    p = Path(path) if path is not None else FOOTPRINT_FILE
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConstraintError(f"{p}: cannot read the measured runtime footprints ({e}); re-create it with "
                              f"`python benchmarks/firmware.py`") from None
    if not isinstance(d, dict) or not isinstance(d.get("footprints"), dict):
        raise ConstraintError(f"{p}: no 'footprints' object")
    return d


def board(name: str) -> Board:
    """The board called `name` (case-insensitive).

    Args:
        name: a key of BOARDS, e.g. "stm32f746".

    Returns:
        The Board.

    Raises:
        ConstraintError: unknown board.
    """
    key = str(name).strip().lower()
    if key not in BOARDS:
        raise ConstraintError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[key]


def board_limits(name: str, reserve_flash: int = 0, reserve_ram: int = 0,
                 footprints: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Flash and RAM left for the model on a board: board minus the measured runtime (minus reserves).

    Args:
        name: the board.
        reserve_flash: bytes of flash kept for the application besides the runtime.
        reserve_ram: bytes of RAM kept for the application.
        footprints: the footprint file's content (default: runtime_footprint()).

    Returns:
        {"board": asdict(Board), "max_flash": bytes for the int8 stage files, "max_ram": bytes for the
        tensor arena, "runtime": the measured footprint used}.

    Raises:
        ConstraintError: unknown board, no measured footprint for its core, or nothing left for a model.
    """
    b = board(name)
    fps = (footprints or runtime_footprint())["footprints"]
    key = f"{b.target}-{b.kernels}"
    if key not in fps:
        raise ConstraintError(f"no measured runtime footprint for {key} (board {b.name}); re-create "
                              f"{FOOTPRINT_FILE.name} with `python benchmarks/firmware.py`")
    fp = fps[key]
    max_flash = b.flash_bytes - int(fp["flash_bytes"]) - int(reserve_flash)
    max_ram = b.ram_bytes - int(fp["ram_bytes"]) - int(reserve_ram)
    if max_flash <= 0 or max_ram <= 0:
        raise ConstraintError(f"board {b.name}: the runtime alone ({fp['flash_bytes']} B flash, {fp['ram_bytes']} B "
                              f"RAM) leaves no room for a model")
    return {"board": asdict(b), "max_flash": int(max_flash), "max_ram": int(max_ram), "runtime": dict(fp, key=key)}


def board_constraints(name: str, max_flash: Optional[float] = None,
                      max_ram: Optional[float] = None) -> Tuple[int, int, str]:
    """The search's max_flash / max_ram for a board, the tighter of the board's and any given ones.

    Args:
        name: the board.
        max_flash: a flash bound the user gave too (bytes of the int8 stage files), or None.
        max_ram: a RAM bound the user gave too (arena bytes), or None.

    Returns:
        (max_flash, max_ram, one line saying where they come from).

    Raises:
        ConstraintError: unknown board or no footprint for it.
    """
    lim = board_limits(name)
    b = lim["board"]
    flash = int(min(lim["max_flash"], max_flash)) if max_flash else lim["max_flash"]
    ram = int(min(lim["max_ram"], max_ram)) if max_ram else lim["max_ram"]
    rt = lim["runtime"]
    line = (f"board {b['name']} ({b['part']}, {b['core']}, {b['flash_bytes'] // KIB} KiB flash, "
            f"{b['ram_bytes'] // KIB} KiB RAM) minus the measured TFLM runtime ({rt['key']}: {rt['flash_bytes']:,} B "
            f"flash, {rt['ram_bytes']:,} B RAM): max_flash {flash:,} B, max_ram {ram:,} B")
    return flash, ram, line


def check_manifest_fit(name: str, manifest: Dict[str, Any]) -> Tuple[bool, str]:
    """`check_fit` for an export's manifest: the sum of its stage files and its tensor arena.

    Args:
        name: the board.
        manifest: an export's manifest.json content.

    Returns:
        (fits, message).

    Raises:
        ConstraintError: unknown board or no footprint for it.
    """
    return check_fit(name, int(sum(int(st["bytes"]) for st in manifest["stages"])), int(manifest["arena_bytes"]))


def check_fit(name: str, flash_bytes: int, arena_bytes: int) -> Tuple[bool, str]:
    """Whether a model of `flash_bytes` stage bytes and `arena_bytes` arena fits a board, with one line saying so.

    Args:
        name: the board.
        flash_bytes: bytes of the int8 stage files.
        arena_bytes: the export's tensor arena.

    Returns:
        (fits, message).

    Raises:
        ConstraintError: unknown board or no footprint for it.
    """
    lim = board_limits(name)
    ok = flash_bytes <= lim["max_flash"] and arena_bytes <= lim["max_ram"]
    b = lim["board"]
    msg = (f"{b['name']} ({b['part']}, {b['flash_bytes'] // KIB} KiB flash / {b['ram_bytes'] // KIB} KiB RAM): "
           f"model {flash_bytes:,} B of {lim['max_flash']:,} B flash left by the runtime, arena {arena_bytes:,} B "
           f"of {lim['max_ram']:,} B RAM left: {'fits' if ok else 'does NOT fit'}")
    return ok, msg
