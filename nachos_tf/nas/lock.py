"""One process at a time per run folder: a lock file holding the owner's pid.

A second `search --resume` of the same folder is refused while the owner lives; a lock left by a process
that is gone (crash, kill -9, reboot) is taken over. The lock is created with O_EXCL, so two processes
starting at the same instant cannot both win.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import RunDirError

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Context manager holding ``<run folder>/.lock`` for the current process.

    Raises:
        RunDirError: another live process holds the lock, or the lock cannot be written.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _holder(self) -> Optional[int]:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError:
            return -1
        return int(text) if text.isdigit() else -1

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise RunDirError(f"{self.path.parent} is in use by another nachos-tf process (pid {pid}); "
                                      "wait for it to finish or stop it") from None
                try:
                    self.path.unlink()            # a stale lock: its owner is gone
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise RunDirError(f"cannot write the lock file {self.path}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return
        raise RunDirError(f"could not take the lock {self.path}: another process keeps taking it")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if self._holder() == os.getpid():
                    self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
