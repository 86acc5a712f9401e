"""Typed exceptions of nachos-tf: every bad input raises one of these, never a bare traceback."""


class NachosError(Exception):
    """Base class of every error nachos-tf raises on purpose."""


class DataError(NachosError, ValueError):
    """A dataset file or folder is missing, truncated or malformed; the message names the file."""


class GenomeError(NachosError, ValueError):
    """A genome cannot be built in its search space; the message says why."""


class ProfileError(NachosError, ValueError):
    """A model cannot be profiled (e.g. a layer with weights whose MACs are unknown)."""


class ConstraintError(NachosError, ValueError):
    """Constraints are malformed or impossible (negative budgets, accuracy outside 0..1)."""


class NoAdmissibleSolutionError(NachosError):
    """A search ended with no candidate meeting every constraint; the message says by how much."""


class RunDirError(NachosError, ValueError):
    """A run directory is missing, unreadable, or holds files that do not parse."""


class ExportError(NachosError, ValueError):
    """A model, .tflite file or manifest cannot be exported, loaded or run."""


class WriteError(NachosError, OSError):
    """A file or folder cannot be written (read-only, full disk, not a folder); the message names it."""


class SupernetError(NachosError, ValueError):
    """A supernet cannot be built, trained, loaded or extracted from (e.g. saved for another space)."""


class WorkerError(NachosError, RuntimeError):
    """A worker process evaluating candidates ended abruptly (e.g. killed by the system when out of memory);
    the candidates already evaluated are safe in the run's archive and a resume continues from them."""
