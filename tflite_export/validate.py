"""Checks on export folders that nothing on disk is trusted blindly and nothing written is lost.

* :func:`check_manifest_files`: every file name a manifest lists is a plain file name inside the export
  folder (no NUL byte, no path separator, no ``..``, no hidden or absolute name), every C symbol an identifier.
* :func:`check_data_fits`: a dataset given to ``evaluate`` has the image shape and the number of classes
  of the export.
* :func:`check_export_target`: ``export --out DIR`` writes only into a new or empty folder, or into an
  earlier export of the same solution; anything else is refused before any work.

Every failure is one :class:`~nachos_tf.errors.ExportError` line naming the file or folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from nachos_tf.errors import ExportError
from nachos_tf.fsio import STAGING_MARK

__all__ = ["check_manifest_files", "check_data_fits", "check_export_target", "export_files", "MANIFEST",
           "SAFE_FILE_NAME", "C_IDENTIFIER"]

MANIFEST = "manifest.json"
#: A file name an export may list: letters, digits, '_', '-', '.', not starting with '.' or '-', <= 128 chars.
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FORMAT = "nachos-tf staged EENN"


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def check_manifest_files(manifest: Mapping[str, Any], where: Union[str, Path] = MANIFEST) -> None:
    """Refuse a manifest whose file names or C symbols could point outside the folder or break C code.

    Args:
        manifest: the parsed manifest (already structurally validated).
        where: the manifest's path, for the message.
    Raises:
        ExportError: one line naming the manifest, the field and the offending value.
    """
    stages = manifest.get("stages")
    if not isinstance(stages, list):
        raise ExportError(f"{where}: 'stages' must be a list")
    seen = set()
    for k, st in enumerate(stages):
        if not isinstance(st, Mapping):
            raise ExportError(f"{where}: stages[{k}] must be an object")
        name = st.get("tflite")
        if not isinstance(name, str) or not SAFE_FILE_NAME.match(name) or name in (".", ".."):
            raise ExportError(f"{where}: stages[{k}].tflite {_shown(name)} is not a plain file name inside the "
                              "export directory (letters, digits, '_', '-', '.'; no path separator or NUL byte)")
        if name in seen or name == MANIFEST:
            raise ExportError(f"{where}: stages[{k}].tflite {name!r} is listed twice")
        seen.add(name)
        sym = st.get("symbol")
        if sym is not None and (not isinstance(sym, str) or not C_IDENTIFIER.match(sym)):
            raise ExportError(f"{where}: stages[{k}].symbol {_shown(sym)} is not a C identifier")
    for key in ("c_sources",):
        names = manifest.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise ExportError(f"{where}: {key} must be a list of file names")
        for n in names:
            if not isinstance(n, str) or not SAFE_FILE_NAME.match(n):
                raise ExportError(f"{where}: {key} entry {_shown(n)} is not a plain file name")


def check_data_fits(manifest: Mapping[str, Any], input_shape: Sequence[int], num_classes: int,
                    what: str = "the dataset", labels: Optional[Any] = None) -> None:
    """Refuse data an export cannot classify: another image shape, or another number of classes.

    Args:
        manifest: the export's manifest.
        input_shape: (H, W, C) of the data's images.
        num_classes: number of classes of the data.
        what: how to name the data in the message.
        labels: optional label array; every label must be below the export's number of classes.
    Raises:
        ExportError: one line giving both shapes or both class counts.
    """
    shape = manifest.get("input", {}).get("shape") if isinstance(manifest.get("input"), Mapping) else None
    if isinstance(shape, list) and shape:
        want = tuple(int(d) for d in shape[1:]) if len(shape) == len(input_shape) + 1 else tuple(shape)
        got = tuple(int(d) for d in input_shape)
        if want != got:
            raise ExportError(f"{what} has images of shape {'x'.join(map(str, got))}, the export takes "
                              f"{'x'.join(map(str, want))}: evaluate it on the dataset it was made for")
    k = manifest.get("num_classes")
    if isinstance(k, int) and not isinstance(k, bool):
        if int(num_classes) != k:
            raise ExportError(f"{what} has {int(num_classes)} classes, the export classifies {k}: evaluate it on "
                              "the dataset it was made for")
        if labels is not None:
            import numpy as np

            y = np.asarray(labels)
            if y.size and (int(y.min()) < 0 or int(y.max()) >= k):
                raise ExportError(f"{what} holds label {int(y.max()) if int(y.max()) >= k else int(y.min())}, "
                                  f"outside the export's classes 0..{k - 1}")


def export_files(manifest: Mapping[str, Any]) -> List[str]:
    """The file names an export folder holds according to its manifest (stages, C sources, manifest)."""
    names = [st.get("tflite") for st in manifest.get("stages") or [] if isinstance(st, Mapping)]
    names += list(manifest.get("c_sources") or [])
    names.append(MANIFEST)
    return [n for n in names if isinstance(n, str) and SAFE_FILE_NAME.match(n)]


def check_export_target(out_dir: Union[str, Path], solution: str, model_sha256: Optional[str] = None) -> List[str]:
    """Refuse ``export --out DIR`` unless DIR is new, empty, or an earlier export of the same solution.

    An earlier export is recognised by its ``manifest.json``: format "nachos-tf staged EENN", the same
    ``solution`` id and, when both are known, the same SHA-256 of the solution's Keras file. Files that
    are not part of an export (e.g. ``evaluate.json``) are kept; only the export's own files are replaced.

    Args:
        out_dir: the export folder asked for.
        solution: id of the solution about to be exported.
        model_sha256: SHA-256 of its Keras file.
    Returns:
        The files of the earlier export (to be replaced or removed), or [] for a new or empty folder.
    Raises:
        ExportError: one line naming the folder and why it is refused.
    """
    d = Path(out_dir).expanduser()
    if not d.exists():
        return []
    if not d.is_dir():
        raise ExportError(f"cannot export into {d}: it is a file, not a folder")
    try:
        entries = sorted(p.name for p in d.iterdir() if STAGING_MARK not in p.name)
    except OSError as e:
        raise ExportError(f"cannot export into {d}: cannot list it ({e.strerror or e})") from None
    if not entries:
        return []
    hint = "choose a new or empty folder"
    if MANIFEST not in entries:
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        raise ExportError(f"cannot export into {d}: it is not empty ({shown}) and is not an earlier export; {hint}")
    try:
        old = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot export into {d}: its {MANIFEST} is not a readable nachos-tf manifest "
                          f"({getattr(e, 'strerror', None) or e}); {hint}") from None
    if not isinstance(old, dict) or old.get("format") != _FORMAT:
        raise ExportError(f"cannot export into {d}: its {MANIFEST} is not a nachos-tf export manifest; {hint}")
    old_sol = old.get("solution")
    if old_sol != solution:
        raise ExportError(f"cannot export into {d}: it holds the export of solution {old_sol!r}, not {solution!r}; "
                          f"{hint}")
    old_sha = (old.get("source") or {}).get("model_sha256") if isinstance(old.get("source"), dict) else None
    if model_sha256 and old_sha and old_sha != model_sha256:
        raise ExportError(f"cannot export into {d}: it holds an export of another model named {solution!r} "
                          f"(another run); {hint}")
    return export_files(old)
