"""nachos-tf: hardware-constrained NAS for early-exit neural networks on microcontrollers (Keras 3).

Public API (see README.md): datasets (`nachos_tf.data.load`), the search space (`SearchSpace`, `Genome`),
the builder (`build_eenn`), the MAC profiler (`profile_macs`), training (`train_eenn`, `LossConfig`),
exit policies (`simulate`, `calibrate`) and the search (`search`, `Constraints`).
"""
import os as _os

# TensorFlow's C++ log lines (INFO to ERROR; e.g. the harmless "NodeDef mentions attribute
# use_unbounded_threadpool" of tf.data) are noise to a user: Python exceptions still carry every real
# error. NACHOS_TF_VERBOSE=1 (or an explicit TF_CPP_MIN_LOG_LEVEL) shows them.
if not _os.environ.get("NACHOS_TF_VERBOSE"):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .tf_logging import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from .errors import (ConstraintError, DataError, ExportError, GenomeError, NachosError, WorkerError,  # noqa: E402
                     NoAdmissibleSolutionError, ProfileError, RunDirError)
from . import data, naming  # noqa: E402
from .data import Dataset  # noqa: E402
from .genome import ExitGene, Gene, Genome  # noqa: E402
from .space import SearchSpace  # noqa: E402
from .backbones import ExitPoint  # noqa: E402
from .builder import build_eenn  # noqa: E402
from .macs import MacReport, profile_macs  # noqa: E402
from .losses import LossConfig  # noqa: E402
from .predict import predict_exits  # noqa: E402
from .train import TrainHistory, train_eenn  # noqa: E402
from .policy import Calibration, SimResult, calibrate, crossfit_calibrate, exit_scores, simulate  # noqa: E402
from .units import parse_size  # noqa: E402
from .results import SearchResult, Solution, load_run  # noqa: E402
from .report import report  # noqa: E402
from .supernet import ShrinkStage, Supernet, train_progressive, train_supernet  # noqa: E402
from .nas import (BUDGETS, Budget, Constraints, DataRef, EvalContext, Evaluator, ProxyEvaluator,  # noqa: E402
                  SupernetEvaluator, cut_run, refinalize, register_evaluator, resume_search, search)

__version__ = "0.1.0"
