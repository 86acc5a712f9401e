"""Real file-system faults for the reliability tests (no mocks): permissions that hold even for root, a
file-size limit that makes the kernel refuse writes past N bytes (what a full disk does mid-file), and a
temporary folder an unprivileged user can reach."""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

NOBODY = 65534


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block with the effective uid/gid of `nobody` when we are root (root ignores chmod 000),
    so that permission bits are enforced by the kernel; a no-op for a normal user."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@contextlib.contextmanager
def open_tmp_dir() -> Iterator[Path]:
    """A fresh folder under /tmp that `nobody` may enter (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="nachos_rel_", dir="/tmp"))
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        for root, dirs, _files in os.walk(d):
            for x in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, x), 0o755)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """RLIMIT_FSIZE for the block: the kernel refuses (EFBIG) any write that would make a file longer than
    `nbytes`, like a disk that fills up in the middle of a file. SIGXFSZ is ignored meanwhile."""
    old_sig = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(nbytes), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_sig)
