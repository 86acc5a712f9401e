"""`BackboneFamily`: what a search space needs from its backbone, and the registry of families by kind.

A backbone family owns the backbone genes, the candidate exit points and how a genome becomes a flat
functional Keras EENN. `SearchSpace` holds one family and the exit-head choices; it delegates building,
exit-point shapes and the backbone part of its JSON to the family, so no code branches on a kind string.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Protocol, Tuple, Type

from ..errors import GenomeError
from ..genome import Gene, Genome

Shape = Tuple[int, int, int]


class SpaceView(Protocol):
    """The parts of a `nachos_tf.SearchSpace` a family reads when it builds (no import of space.py)."""

    input_shape: Tuple[int, int, int]
    num_classes: int
    confidence: bool
    n_exit_points: int


class BackboneFamily(abc.ABC):
    """Base class of backbone families (the built-in MobileNet family, keras-tuner hypermodels, ...).

    Subclasses set the class attribute `kind` (the `"kind"` of the space JSON; setting it registers the
    class for `family_from_dict`) and `supports_supernet`, and provide the attributes `genes`,
    `n_exit_points`, `settings` and the methods below.

    Attributes:
        kind: Registry name, written as `"kind"` in the space JSON.
        supports_supernet: Whether a weight-sharing supernet can be built for this family.
        genes: The backbone genes (categorical), in encoding order.
        n_exit_points: Number of candidate exit points, in depth order.
        settings: JSON-able fixed (not searched) settings, written as `"settings"` in the space JSON.
    """

    kind: ClassVar[str] = ""
    supports_supernet: ClassVar[bool] = False
    genes: List[Gene]
    n_exit_points: int
    settings: Dict[str, Any]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            FAMILIES[cls.kind] = cls

    @abc.abstractmethod
    def build(self, space: SpaceView, genome: Genome, name: str) -> Any:
        """The flat functional EENN of `genome`, exit heads included (`nachos_tf.heads`).

        Args:
            space: The space (input shape, classes, confidence); the genome is already validated.
            genome: A valid genome of the space.
            name: The Keras model name.

        Returns:
            A `keras.Model` with outputs exit_0, [exit_0_conf], ..., final (see `nachos_tf.naming`).

        Raises:
            GenomeError: the genome cannot be built by this family.
        """

    @abc.abstractmethod
    def exit_feature_shapes(self, space: SpaceView, genome: Genome) -> List[Shape]:
        """(H, W, C) of the backbone feature map at each candidate exit point for this genome.

        Args:
            space: The space.
            genome: A genome whose backbone genes are valid (exit genes are not read).

        Returns:
            One shape per candidate exit point, in depth order.

        Raises:
            GenomeError: the backbone cannot be traced for these genes.
        """

    def backbone_macs(self, space: SpaceView, genome: Genome) -> Optional[Tuple[List[int], int]]:
        """MACs of the backbone counted without building it, if the family can (else None).

        Args:
            space: The space.
            genome: A genome whose backbone genes are valid.

        Returns:
            (MACs up to each candidate exit point, cumulative; MACs of the whole backbone with the final
            classifier), counted as `nachos_tf.profile_macs` counts the built model; None when the
            family cannot count without building (callers then build and profile).
        """
        return None

    def to_dict(self) -> Dict[str, Any]:
        """The backbone part of the space JSON.

        Returns:
            `{"kind", "n_exit_points", "backbone_genes": {name: [values]}, "settings"}`.
        """
        return {"kind": self.kind, "n_exit_points": self.n_exit_points,
                "backbone_genes": {g.name: list(g.values) for g in self.genes}, "settings": self.settings}

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BackboneFamily":
        """Rebuild the family from a space JSON (the whole dict of `SearchSpace.to_dict`).

        Args:
            d: The space JSON.

        Returns:
            The family.

        Raises:
            GenomeError: this family cannot be rebuilt from JSON, or the JSON does not match this version.
        """


FAMILIES: Dict[str, Type[BackboneFamily]] = {}


def family_from_dict(d: Mapping[str, Any]) -> BackboneFamily:
    """Rebuild the backbone family of a space JSON, by its `"kind"`.

    Args:
        d: The space JSON (`SearchSpace.to_dict()`).

    Returns:
        The family.

    Raises:
        GenomeError: the kind is unknown or that family cannot be rebuilt from JSON.
    """
    cls = FAMILIES.get(d.get("kind"))
    if cls is None:
        raise GenomeError(f"unknown backbone family {d.get('kind')!r} in the space JSON; known: {sorted(FAMILIES)}")
    return cls.from_dict(d)
