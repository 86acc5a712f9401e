"""nachos-tf: hardware-constrained NAS for early-exit neural networks on microcontrollers (Keras 3)."""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .errors import (ConstraintError, DataError, ExportError, GenomeError, NachosError,  # noqa: E402
                     NoAdmissibleSolutionError, ProfileError, RunDirError)
from .space import ExitGene, Gene, Genome, SearchSpace  # noqa: E402
from .builder import build_eenn  # noqa: E402
from .tuner_bridge import ExitPoint  # noqa: E402

__version__ = "0.1.0"
