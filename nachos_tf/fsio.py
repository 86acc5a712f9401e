"""Safe writes for run and export folders: nothing already written is lost, every failure is one line.

Every file nachos-tf writes into a run or export folder goes through this module:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` /
  :func:`save_figure` write to a temporary file in the same folder (a name unique to the process and
  the call), fsync it, then ``os.replace`` it over the target. A crash, a full disk or Ctrl-C leaves
  either the old file or the new one, never a cut one; the temporary file is removed on failure.
  A target that is a device or a FIFO (``/dev/null``, ``/dev/full``, a pipe) is written in place:
  it is never replaced by a regular file.
* :func:`atomic_path` gives writers that need a file name (``keras.Model.save``) a temporary one, renamed
  into place when they succeed.
* :func:`ensure_writable` checks, before long work, that a file or folder can be written there.
* :func:`staging_dir` + :func:`publish_dir` build a whole folder beside its destination, then move
  its files in one by one with ``os.replace`` (a chosen file, e.g. ``manifest.json``, last).
* :func:`resolve_inside` keeps a path read from a file (a model path in ``pareto.json``) inside its
  folder.

Every ``OSError`` becomes :class:`~nachos_tf.errors.WriteError` naming the file, in one line.
Ground floor: no TensorFlow, imports only the standard library and ``nachos_tf.errors``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

from .errors import WriteError

__all__ = ["atomic_write_bytes", "atomic_path", "atomic_write_text", "atomic_write_json", "save_figure", "ensure_writable",
           "staging_dir", "publish_dir", "fsync_dir", "fsync_tree", "resolve_inside", "os_reason",
           "STAGING_MARK"]

PathLike = Union[str, "os.PathLike[str]"]

#: Part of the name of every temporary file or folder this module creates (so they can be recognised).
STAGING_MARK = ".nachos-tmp-"
_MAX_PREFIX = 120          # keep temporary names well under NAME_MAX (255 bytes)


def os_reason(exc: BaseException) -> str:
    """The short reason of an OSError ("No space left on device"), without errno noise."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fail(what: str, path: Path, exc: BaseException) -> WriteError:
    return WriteError(f"cannot {what} {path}: {os_reason(exc)}")


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target(path: PathLike) -> Path:
    """The file to write: a symlink's target (the link stays a link)."""
    p = Path(path).expanduser()
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    return p


def _is_special(p: Path) -> bool:
    """True for an existing device, FIFO or socket (written in place, never replaced)."""
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def fsync_dir(path: PathLike) -> None:
    """Make a rename in folder ``path`` durable (best effort: some filesystems refuse fsync on folders)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: PathLike) -> None:
    """fsync every regular file under ``path`` and the folders holding them.

    Raises:
        WriteError: a file cannot be opened or synced (naming it).
    """
    root = Path(path)
    for folder, _dirs, files in os.walk(root):
        for name in files:
            f = Path(folder) / name
            try:
                fd = os.open(str(f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _fail("write", f, exc) from None
        fsync_dir(folder)


def atomic_write_bytes(path: PathLike, data: Union[bytes, bytearray, memoryview]) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename.

    The new file keeps the permissions of the file it replaces (or gets the usual 0666 & ~umask).

    Args:
        path: the file to write (its folder must exist).
        data: the bytes.
    Returns:
        The path written (a symlink's target when ``path`` is a symlink).
    Raises:
        WriteError: one line naming the file (read-only folder, full disk, folder in the way, ...).
    """
    p = _target(path)
    if p.is_dir():
        raise WriteError(f"cannot write {p}: it is a folder")
    if _is_special(p):     # /dev/null, /dev/full, a FIFO: write in place, never rename over a device
        try:
            with open(p, "wb") as f:
                f.write(data)
                f.flush()
        except OSError as exc:
            raise _fail("write", p, exc) from None
        return p
    try:
        mode = stat.S_IMODE(os.stat(p).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    tmp: Optional[str] = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:_MAX_PREFIX]}{STAGING_MARK}", suffix=".tmp",
                                   dir=str(p.parent))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise _fail("write", p, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_dir(p.parent)
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path``, with the same suffix, for writers that insist on a file name
    (``keras.Model.save`` wants ``.keras``): renamed over ``path`` when the block succeeds, removed if it fails.

    Args:
        path: the file finally written (its folder must exist).
    Yields:
        The temporary path to write to.
    Raises:
        WriteError: the temporary file cannot be created or renamed (naming ``path``).
    """
    p = _target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.stem[:_MAX_PREFIX]}{STAGING_MARK}", suffix=p.suffix or ".tmp",
                                   dir=str(p.parent))
        os.close(fd)
    except OSError as exc:
        raise _fail("write", p, exc) from None
    done = False
    try:
        yield Path(tmp)
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, p)
            done = True
        except OSError as exc:
            raise _fail("write", p, exc) from None
        fsync_dir(p.parent)
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``.

    Args:
        path: the file to write.
        text: its new contents.
        encoding: text encoding (UTF-8).
    Returns:
        The path written.
    Raises:
        WriteError: one line naming the file.
    """
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, obj: Any, *, indent: Optional[int] = 2, sort_keys: bool = True) -> Path:
    """Strict JSON (no NaN or inf: a bug upstream fails here, not in a reader) written atomically, newline-ended.

    Args:
        path: the file to write.
        obj: a JSON-serialisable object.
        indent: JSON indentation.
        sort_keys: sort object keys.
    Returns:
        The path written.
    Raises:
        WriteError: the file cannot be written.
        ValueError: ``obj`` holds NaN or infinity; TypeError: it is not JSON-serialisable.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def save_figure(fig: Any, path: PathLike, **savefig_kwargs: Any) -> Path:
    """Render a matplotlib figure in memory, then write it atomically (the format follows the suffix).

    Args:
        fig: a ``matplotlib.figure.Figure``.
        path: the image file (``.png``, ``.svg``, ``.pdf``, ...).
        **savefig_kwargs: passed to ``fig.savefig`` (``dpi=...``).
    Returns:
        The path written.
    Raises:
        WriteError: the file cannot be written.
    """
    p = Path(path)
    buf = io.BytesIO()
    fmt = savefig_kwargs.pop("format", None) or (p.suffix[1:].lower() or "png")
    fig.savefig(buf, format=fmt, **savefig_kwargs)
    return atomic_write_bytes(p, buf.getvalue())


def _nearest_existing(p: Path) -> Path:
    a = p
    while not os.path.lexists(a) and a.parent != a:
        a = a.parent
    return a


def _probe_file(folder: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=f".probe{STAGING_MARK}", dir=str(folder))
    os.close(fd)
    os.unlink(name)


def ensure_writable(path: PathLike, folder: bool = False) -> Path:
    """Check before long work that ``path`` can be written, by really creating (and removing) a file there.

    ``folder=True``: ``path`` is a folder to write files into; it may not exist yet (it will be created
    with its parents). Otherwise ``path`` is a file whose folder must exist.

    Args:
        path: the file or folder.
        folder: whether ``path`` is a folder.
    Returns:
        ``path`` as a Path (``~`` expanded).
    Raises:
        WriteError: one line saying why not (a file in the way, read-only, missing folder, ...).
    """
    p = Path(path).expanduser()
    if folder:
        a = _nearest_existing(p)
        if not a.is_dir():
            what = "create folder" if a != p else "write in"
            raise WriteError(f"cannot {what} {p}: {a} is not a folder")
        try:
            if a == p:
                _probe_file(p)
            else:
                shutil.rmtree(tempfile.mkdtemp(prefix=f".probe{STAGING_MARK}", dir=str(a)))
        except OSError as exc:
            raise _fail("write in" if a == p else "create folder", p, exc) from None
        return p
    t = _target(p)
    if t.is_dir():
        raise WriteError(f"cannot write {p}: it is a folder")
    if _is_special(t):
        try:
            with open(t, "ab"):
                pass
        except OSError as exc:
            raise _fail("write", p, exc) from None
        return p
    parent = t.parent
    if not parent.is_dir():
        a = _nearest_existing(parent)
        why = f"{a} is not a folder" if os.path.lexists(a) and not a.is_dir() else f"folder {parent} does not exist"
        raise WriteError(f"cannot write {p}: {why}")
    try:
        _probe_file(parent)
    except OSError as exc:
        raise _fail("write", p, exc) from None
    return p


@contextlib.contextmanager
def staging_dir(dest: PathLike) -> Iterator[Path]:
    """A temporary folder on the same filesystem as ``dest`` (inside it when it exists, else beside it),
    removed when the block ends, whether it fails or not (:func:`publish_dir` moves its files out first).

    Args:
        dest: the folder the staged files are meant for.
    Yields:
        The staging folder.
    Raises:
        WriteError: the staging folder cannot be created.
    """
    d = Path(dest).expanduser()
    base = d if d.is_dir() else d.parent
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{d.name[:_MAX_PREFIX]}{STAGING_MARK}", dir=str(base)))
    except OSError as exc:
        raise _fail("create folder", d, exc) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(staging: PathLike, dest: PathLike, last: Sequence[str] = (),
                remove: Iterable[str] = ()) -> List[str]:
    """Move the files of ``staging`` into ``dest`` with ``os.replace`` (fsynced first), ``last`` ones last.

    A new ``dest`` receives the whole folder in one rename. Into an existing ``dest`` each file is
    replaced atomically; files not in ``staging`` are kept, except the names in ``remove`` (files of
    an earlier version that the new one no longer has), deleted once everything else is in place.

    Args:
        staging: folder of regular files (from :func:`staging_dir`).
        dest: the destination folder.
        last: file names moved last (e.g. ``manifest.json``, so that it never describes missing files).
        remove: file names in ``dest`` to delete afterwards.
    Returns:
        The names of the files now in ``dest`` from ``staging``, in the order moved.
    Raises:
        WriteError: a file cannot be moved (naming it).
    """
    src, d = Path(staging), Path(dest).expanduser()
    names = sorted(f.name for f in src.iterdir())
    for n in names:
        if not (src / n).is_file() or (src / n).is_symlink():
            raise WriteError(f"cannot publish {src / n}: only regular files are published")
    order = [n for n in names if n not in last] + [n for n in last if n in names]
    fsync_tree(src)
    if not d.exists() and src.parent == d.parent:
        try:
            os.rename(src, d)
            os.chmod(d, 0o777 & ~_umask())     # a staging folder is private (0700); the export is not
        except OSError as exc:
            raise _fail("create folder", d, exc) from None
        fsync_dir(d.parent)
        return order
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail("create folder", d, exc) from None
    for n in order:
        try:
            os.replace(src / n, d / n)
        except OSError as exc:
            raise _fail("write", d / n, exc) from None
    fsync_dir(d)
    for n in remove:
        if n not in names and "/" not in n and n not in (".", ".."):
            with contextlib.suppress(FileNotFoundError):
                try:
                    (d / n).unlink()
                except IsADirectoryError:
                    pass
                except OSError as exc:
                    raise _fail("remove", d / n, exc) from None
    fsync_dir(d)
    return order


def resolve_inside(base: PathLike, rel: Any, what: str = "path") -> Path:
    """``base / rel`` if it stays inside ``base`` (symlinks resolved), before anything is read from it.

    Args:
        base: the folder (a run or export folder).
        rel: a relative path read from a file of that folder.
        what: what the path is, for the message (e.g. "model path of solution c0007 in pareto.json").
    Returns:
        The absolute path inside ``base``.
    Raises:
        ValueError: one line saying why (absolute, empty, or leading outside ``base``); callers turn it
            into their own typed error (RunDirError, ExportError).
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise ValueError(f"{what} must be a non-empty relative path, got {rel!r}")
    if os.path.isabs(rel) or rel.startswith("~"):
        raise ValueError(f"{what} {rel!r} is absolute; it must stay inside {base}")
    root = Path(os.path.realpath(Path(base).expanduser()))
    full = Path(os.path.realpath(root / rel))
    if full != root and root not in full.parents:
        raise ValueError(f"{what} {rel!r} leads outside {base}")
    return full
