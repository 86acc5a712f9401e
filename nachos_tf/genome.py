"""The genome: what the NAS chooses for one candidate EENN, as plain, hashable, JSON round-trippable data.

A genome has two parts: backbone genes (a flat name -> value mapping, each gene a categorical choice of
its backbone family) and one `ExitGene` group per candidate exit point (enabled, head kind, head width,
pooling factor). Ground floor: no TensorFlow, no Keras; `nachos_tf.space.SearchSpace` gives genomes their
meaning (valid values, encoding, repair) and `nachos_tf.builder.build_eenn` turns them into models.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .errors import GenomeError

#: Default cost-aware pooling factors an exit head may average-pool its input by.
POOLS = (1, 2, 4)
#: Default widths (channels) of the convolution of an exit head.
HEAD_WIDTHS = (8, 16, 32)


@dataclass(frozen=True)
class Gene:
    """One categorical gene: a name and the values it may take (encoded as the index of the value).

    Attributes:
        name: The gene name (a key of `Genome.params`).
        values: The values the gene may take, in encoding order.
    """

    name: str
    values: Tuple[Any, ...]

    def index(self, value: Any) -> int:
        """The encoding of `value`: its index in `values`.

        Args:
            value: One of `values`.

        Returns:
            The index of `value` in `values`.

        Raises:
            GenomeError: `value` is not one of `values`.
        """
        try:
            return self.values.index(value)
        except ValueError:
            raise GenomeError(f"gene {self.name!r}: value {value!r} is not one of {list(self.values)}") from None


@dataclass(frozen=True)
class ExitGene:
    """Genes of one candidate exit point: whether it is used and what its head looks like.

    `pool` is the cost-aware pooling factor: the head average-pools its input by this factor before its
    convolution/classifier, so that an earlier exit is never more expensive than a later one (repair
    raises it where needed).

    Attributes:
        enabled: Whether the exit point carries an exit.
        head: The head kind (a name registered in `nachos_tf.heads`).
        width: Channels of the head's convolution (heads without one ignore it).
        pool: Average-pooling factor applied before the head's convolution.
    """

    enabled: bool = False
    head: str = "gap_dense"
    width: int = 16
    pool: int = 1

    def to_dict(self) -> Dict[str, Any]:
        """JSON form of the exit genes.

        Returns:
            `{"enabled", "head", "width", "pool"}` with plain Python values.
        """
        return {"enabled": bool(self.enabled), "head": self.head, "width": int(self.width), "pool": int(self.pool)}


#: The canonical genes of a disabled exit point (what `SearchSpace.repair` resets them to).
DEFAULT_EXIT = ExitGene()


@dataclass(frozen=True)
class Genome:
    """A candidate EENN: backbone gene values plus one `ExitGene` per candidate exit point.

    Plain data: hashable, JSON round-trippable with `to_dict` / `from_dict`; the same genome always builds
    the same architecture.

    Attributes:
        backbone: `(name, value)` pairs of the backbone genes, sorted by name.
        exits: One `ExitGene` per candidate exit point, in depth order.
    """

    backbone: Tuple[Tuple[str, Any], ...]
    exits: Tuple[ExitGene, ...]

    @staticmethod
    def make(backbone: Mapping[str, Any], exits: Sequence[ExitGene]) -> "Genome":
        """Build a genome from a backbone mapping (any order) and exit genes.

        Args:
            backbone: Backbone gene name -> value (numpy scalars become Python scalars).
            exits: One `ExitGene` per candidate exit point.

        Returns:
            The genome, its backbone genes sorted by name.
        """
        return Genome(tuple(sorted((str(k), _plain(v)) for k, v in backbone.items())), tuple(exits))

    @property
    def params(self) -> Dict[str, Any]:
        """Backbone genes as a dict."""
        return dict(self.backbone)

    @property
    def exit_positions(self) -> List[int]:
        """Indices of the enabled exit points, in depth order."""
        return [i for i, e in enumerate(self.exits) if e.enabled]

    def to_dict(self) -> Dict[str, Any]:
        """JSON form of the genome.

        Returns:
            `{"backbone": {name: value}, "exits": [ExitGene.to_dict(), ...]}`.
        """
        return {"backbone": dict(self.backbone), "exits": [e.to_dict() for e in self.exits]}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Genome":
        """Inverse of `to_dict`.

        Args:
            d: A dict as written by `to_dict` (e.g. read back from JSON).

        Returns:
            The genome.

        Raises:
            GenomeError: `d` is malformed (missing keys, wrong types).
        """
        try:
            return Genome.make(d["backbone"], [ExitGene(bool(e["enabled"]), str(e["head"]), int(e["width"]),
                                                        int(e["pool"])) for e in d["exits"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise GenomeError(f"malformed genome dict ({exc!r}): {json.dumps(d, default=str)[:200]}") from None

    def key(self) -> str:
        """A stable string id of the architecture (used as the archive key).

        Returns:
            The compact, key-sorted JSON of `to_dict`.
        """
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _plain(v: Any) -> Any:
    """Numpy scalars to Python scalars so genomes hash and serialise the same way (numpy is not imported
    here: if it is not loaded, `v` cannot be a numpy scalar)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.generic):
        return v.item()
    return v
