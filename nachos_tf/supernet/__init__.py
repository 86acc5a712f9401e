"""Weight-sharing supernet of `SearchSpace.mcu` (issue 12): train once, extract any subnet as a plain Keras model.

Public API:

* `Supernet(space, seed=0)`; `.extract(genome, bn_data=None, bn_images=2000) -> keras.Model`;
  `.subnet_predict(genome, x) -> [arrays]`; `.save(folder)`; `Supernet.load(folder, space, data=None)`.
* `train_supernet(space, data, epochs=..., ...) -> Supernet` (sandwich rule, in-place distillation,
  resumable epoch checkpoints, seeded; `elastic=` restricts the sampled gene groups; `kernel_transform=True`
  adds OFA's kernel-transformation matrices, module `kernels`).
* `train_progressive(space, data, folder, stages=DEFAULT_STAGES) -> Supernet`: Once-For-All's progressive
  shrinking, one `train_supernet` stage per `ShrinkStage` (largest first, then kernel, depth, expansion...).
* `SupernetSpec` (static sizes, genome <-> code), `reestimate_bn(model, x)`, `space_fingerprint(space)`,
  `data_fingerprint(data)`.
"""
from .api import Supernet
from .extract import reestimate_bn, subnet_weights
from .fitting import train_supernet
from .gates import ELASTIC_GROUPS, SupernetSpec, window_offset
from .progressive import DEFAULT_STAGES, ShrinkStage, load_schedule, train_progressive
from .store import SupernetMismatchError, data_fingerprint, space_fingerprint

__all__ = ["Supernet", "SupernetSpec", "SupernetMismatchError", "train_supernet", "train_progressive",
           "ShrinkStage", "DEFAULT_STAGES", "ELASTIC_GROUPS", "load_schedule", "reestimate_bn",
           "subnet_weights", "window_offset", "space_fingerprint", "data_fingerprint"]
