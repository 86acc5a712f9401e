"""Flash and RAM of a linked firmware image: `size -A`, `nm` and the GNU ld link map.

Flash = the sections placed in flash (vectors, code, constants, init arrays) plus the `.data` load image;
the model arrays are found by their symbols (the manifest names them), the tensor arena by `g_arena`.
RAM = `.data` + `.bss` (arena included) + the heap and stack reserves of the linker script. The link map
splits flash and RAM by origin: model data, staged runner, TFLM library, test driver, C/C++ runtime.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

from .tflm_tree import TARGETS, FirmwareError

__all__ = ["measure_sizes", "map_breakdown"]

_FLASH_SECTIONS = (".vectors", ".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array",
                   ".fini_array")


def _tool(name: str, target: str) -> str:
    exe = shutil.which(name if TARGETS[target] is None else f"arm-none-eabi-{name}")
    if exe is None:
        raise FirmwareError(f"{name if TARGETS[target] is None else 'arm-none-eabi-' + name} not found "
                            f"(binutils{'' if TARGETS[target] is None else '-arm-none-eabi'})")
    return exe


def _sections(elf: Path, target: str) -> Dict[str, int]:
    out = subprocess.run([_tool("size", target), "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            res[parts[0]] = int(parts[1])
    return res


def _symbol_sizes(elf: Path, target: str) -> Dict[str, int]:
    out = subprocess.run([_tool("nm", target), "-S", "-C", "--defined-only", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            try:
                res[parts[3]] = int(parts[1], 16)
            except ValueError:
                pass
    return res


_MAP_OUT = re.compile(r"^(\.[\w.]+)\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)")
_MAP_IN = re.compile(r"^\s+(?:(\S+)\s+)?0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


def _origin(path: str) -> str:
    name = os.path.basename(path.split("(")[0])
    if name.startswith("libtensorflow-microlite"):
        return "tflm"
    if name == "nachos_model_data.o":
        return "model"
    if name in ("nachos_eenn.o", "nachos_decision.o"):
        return "runner"
    if name in ("nachos_main.o", "nachos_startup.o"):
        return "driver"
    return "c_runtime"


def map_breakdown(map_path: Path) -> Dict[str, Dict[str, int]]:
    """Bytes per origin (model, runner, tflm, driver, c_runtime) in flash and in RAM, from a GNU ld map.

    Args:
        map_path: the `-Wl,-Map` file of the link.

    Returns:
        {"flash": {origin: bytes}, "ram": {origin: bytes}}; .data counts in both (its image is in flash).
    """
    flash: Dict[str, int] = {}
    ram: Dict[str, int] = {}
    section = None
    started = False
    for line in map_path.read_text(errors="replace").splitlines():
        if line.startswith("Linker script and memory map"):
            started = True
            continue
        if not started:
            continue
        m = _MAP_OUT.match(line)
        if m or (line.startswith(".") and len(line.split()) == 1):
            section = line.split()[0]
            continue
        if line.startswith(" ") and len(line.split()) == 1 and line.split()[0].startswith("."):
            continue                      # an input section's name alone: its figures follow on the next line
        m = _MAP_IN.match(line)
        if not m or section is None:
            continue
        size = int(m.group(2), 16)
        path = m.group(3).strip()
        if size == 0 or path.startswith("0x") or "*fill*" in line or not ("/" in path or path.endswith(".o")):
            continue
        origin = _origin(path)
        if section in _FLASH_SECTIONS or section == ".data":
            flash[origin] = flash.get(origin, 0) + size
        if section in (".data", ".bss"):
            ram[origin] = ram.get(origin, 0) + size
    return {"flash": flash, "ram": ram}


def measure_sizes(elf: Path, manifest: dict, target: str, map_path: Optional[Path] = None) -> Dict[str, Any]:
    """Flash and RAM of a linked firmware image.

    Args:
        elf: the linked program.
        manifest: the export's manifest (names the model arrays).
        target: the build target.
        map_path: the link map, for the per-origin breakdown.

    Returns:
        {"sections": {name: bytes}, "flash_bytes", "model_bytes", "code_bytes", "ram": {"data", "bss",
        "arena", "heap", "stack", "total"}, "breakdown": map_breakdown(...) or None}.
    """
    secs = _sections(elf, target)
    syms = _symbol_sizes(elf, target)
    model = sum(syms.get(st["symbol"], 0) for st in manifest["stages"])
    arena = next((v for k, v in syms.items() if k.endswith("::g_arena") or k == "g_arena"), 0)
    bare = TARGETS[target] is not None
    if bare:
        flash = sum(v for k, v in secs.items() if k in _FLASH_SECTIONS) + secs.get(".data", 0)
        heap, stack = secs.get(".heap", 0), secs.get(".stack", 0)
    else:   # a host program: its loaded sections, no stack/heap reserve
        flash = sum(v for k, v in secs.items() if k in (".text", ".rodata", ".init", ".fini", ".plt", ".plt.got",
                                                         ".eh_frame", ".eh_frame_hdr", ".init_array",
                                                         ".fini_array", ".data.rel.ro", ".got", ".data"))
        heap = stack = 0
    data, bss = secs.get(".data", 0), secs.get(".bss", 0)
    res = {
        "sections": secs,
        "flash_bytes": int(flash),
        "model_bytes": int(model),
        "code_bytes": int(flash - model),
        "ram": {"data": data, "bss": bss, "arena": int(arena), "other_static": int(data + bss - arena),
                "heap": heap, "stack": stack, "total": int(data + bss + heap + stack)},
        "breakdown": map_breakdown(map_path) if map_path is not None and map_path.is_file() else None,
    }
    return res
