"""Search spaces: what the NAS chooses, as plain data that encodes to pymoo integer vectors.

A `SearchSpace` is a backbone family (`nachos_tf.backbones`: its genes, candidate exit points and build)
plus the exit-head choices of every candidate exit point (`nachos_tf.genome.ExitGene`; head kinds from
`nachos_tf.heads`). `SearchSpace.mcu` is the built-in MobileNetV3-style space scaled to microcontrollers;
a keras-tuner `build(hp)` function or `HyperModel` can serve as the backbone instead
(`SearchSpace.from_hypermodel`). Genomes (`Genome`, `ExitGene`, `Gene`) live in `nachos_tf.genome` and are
re-exported here.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .backbones import BackboneFamily, HypermodelFamily, McuFamily, family_from_dict
from .backbones.mcu import ACTIVATIONS
from .errors import GenomeError
from .genome import DEFAULT_EXIT as _DEFAULT_EXIT
from .genome import HEAD_WIDTHS, POOLS, ExitGene, Gene, Genome
from .heads import HEADS, head_kind
from .heads import head_macs as _head_macs

__all__ = ["ACTIVATIONS", "HEADS", "HEAD_WIDTHS", "POOLS", "ExitGene", "Gene", "Genome", "SearchSpace"]


class SearchSpace:
    """A set of EENN architectures: a backbone family, its candidate exit points, and the exit-head choices.

    The family's genes are categorical; each of its `n_exit_points` candidate exit points has the genes of
    `ExitGene`. The integer encoding for pymoo is backbone gene indices followed by 4 indices per exit
    point (enabled, head, width, pool).

    Args:
        family: The backbone family (e.g. `McuFamily.default(input_shape)`; see `nachos_tf.backbones`).
        input_shape: (height, width, channels) of the raw input images.
        num_classes: Number of classes (>= 2).
        confidence: Give every early exit a learned confidence output (the NACHOS binary branch).
        heads: Head kinds an exit may use (registered in `nachos_tf.heads`).
        pools: Pooling factors an exit head may use.
        head_widths: Convolution widths an exit head may use.
        min_early_exits: Fewest enabled early exits of a valid genome.
        max_early_exits: Most enabled early exits of a valid genome (default: every exit point).

    Raises:
        GenomeError: inconsistent arguments (shape, classes, exit counts, unknown head kind, not a family).
    """

    def __init__(self, family: BackboneFamily, input_shape: Sequence[int], num_classes: int,
                 confidence: bool = True, heads: Sequence[str] = HEADS, pools: Sequence[int] = POOLS,
                 head_widths: Sequence[int] = HEAD_WIDTHS, min_early_exits: int = 1,
                 max_early_exits: Optional[int] = None):
        if not isinstance(family, BackboneFamily):
            raise GenomeError(f"SearchSpace(family, input_shape, num_classes, ...) needs a nachos_tf.backbones."
                              f"BackboneFamily first, got {type(family).__name__}; see SearchSpace.mcu")
        if num_classes < 2:
            raise GenomeError(f"num_classes must be >= 2, got {num_classes}")
        if len(input_shape) != 3:
            raise GenomeError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
        self.family = family
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.confidence = bool(confidence)
        self.heads = tuple(heads)
        for h in self.heads:
            head_kind(h)  # GenomeError for an unknown head kind
        self.pools = tuple(int(p) for p in pools)
        self.head_widths = tuple(int(w) for w in head_widths)
        self.min_early_exits = int(min_early_exits)
        self.max_early_exits = self.n_exit_points if max_early_exits is None else int(max_early_exits)
        if self.max_early_exits < self.min_early_exits:
            raise GenomeError("max_early_exits < min_early_exits")
        if self.min_early_exits > self.n_exit_points:
            raise GenomeError(f"the space has {self.n_exit_points} exit points, fewer than "
                              f"min_early_exits={self.min_early_exits}")

    # ----------------------------------------------------------------- the family's part
    @property
    def kind(self) -> str:
        """The backbone family's kind ("mcu", "hypermodel", ...), as written in the JSON."""
        return self.family.kind

    @property
    def backbone_genes(self) -> List[Gene]:
        """The backbone family's genes, in encoding order."""
        return self.family.genes

    @property
    def n_exit_points(self) -> int:
        """Number of candidate exit points of the backbone."""
        return self.family.n_exit_points

    @property
    def settings(self) -> Dict[str, Any]:
        """The backbone family's fixed (not searched) settings."""
        return self.family.settings

    @property
    def hypermodel(self) -> Any:
        """The keras-tuner hypermodel of a hypermodel space, else None."""
        return getattr(self.family, "hypermodel", None)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def mcu(cls, input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, confidence: bool = True,
            early_exits: bool = True) -> "SearchSpace":
        """The default space: OFA-MobileNetV3 shape (5 stages, depth {2,3,4}, kernel {3,5,7},
        expansion {3,4,6}) scaled down for microcontrollers, with an exit point after stages 1-4.

        Searched per stage: depth, depthwise kernel, expansion, output width, squeeze-excite on/off and
        ReLU / hard-swish; globally: input resolution (down-scaling) and stem width.

        Args:
            input_shape: (height, width, channels) of the raw images.
            num_classes: Number of classes.
            confidence: Learned confidence outputs on the early exits.
            early_exits: False gives the static (single-exit) space with the same backbone.

        Returns:
            The space (backbone family `McuFamily`).

        Raises:
            GenomeError: invalid shape or number of classes.
        """
        family = McuFamily.default(input_shape, early_exits=early_exits)
        return cls(family, input_shape, num_classes, confidence=confidence and early_exits,
                   min_early_exits=1 if early_exits else 0)

    @classmethod
    def from_hypermodel(cls, hypermodel: Any, input_shape: Sequence[int], num_classes: int,
                        confidence: bool = True, float_steps: int = 5) -> "SearchSpace":
        """A space whose backbone is a keras-tuner `build(hp)` function or `keras_tuner.HyperModel`.

        The backbone's hyperparameters become backbone genes; the `nachos_tf.ExitPoint` layers it places
        become the candidate exit points (see `nachos_tf.backbones.hypermodel`).

        Args:
            hypermodel: A `build(hp)` function or a `keras_tuner.HyperModel`.
            input_shape: (height, width, channels) of the raw images.
            num_classes: Number of classes.
            confidence: Learned confidence outputs on the early exits.
            float_steps: Values a `hp.Float` without a step is discretised to.

        Returns:
            The space (backbone family `HypermodelFamily`).

        Raises:
            GenomeError: the hypermodel cannot serve as a backbone (no ExitPoint, several outputs, ...).
        """
        return cls(HypermodelFamily.discover(hypermodel, float_steps), input_shape, num_classes,
                   confidence=confidence)

    # ----------------------------------------------------------------- pymoo encoding
    @property
    def n_var(self) -> int:
        """Length of the integer encoding: backbone genes + 4 per exit point."""
        return len(self.backbone_genes) + 4 * self.n_exit_points

    @property
    def xl(self) -> np.ndarray:
        """Lower bounds of the encoding (all 0)."""
        return np.zeros(self.n_var, dtype=int)

    @property
    def xu(self) -> np.ndarray:
        """Upper bounds of the encoding (number of values - 1 per gene)."""
        ub = [len(g.values) - 1 for g in self.backbone_genes]
        ub += [1, len(self.heads) - 1, len(self.head_widths) - 1, len(self.pools) - 1] * self.n_exit_points
        return np.asarray(ub, dtype=int)

    def encode(self, genome: Genome) -> np.ndarray:
        """Genome -> integer vector (gene value indices) for pymoo.

        Args:
            genome: A structurally valid genome of this space.

        Returns:
            The `n_var` gene value indices (int array).

        Raises:
            GenomeError: the genome does not fit the space.
        """
        self.validate(genome, structural_only=True)
        params = genome.params
        x = [g.index(params[g.name]) for g in self.backbone_genes]
        for e in genome.exits:
            x += [int(e.enabled), self.heads.index(e.head), self.head_widths.index(e.width), self.pools.index(e.pool)]
        return np.asarray(x, dtype=int)

    def decode(self, x: Sequence[float], repair: bool = True) -> Genome:
        """Integer (or real, rounded and clipped) vector -> genome, repaired unless `repair=False`.

        Args:
            x: `n_var` gene value indices (reals are rounded, then clipped to `xl`..`xu`).
            repair: Return the canonical valid form (`repair`).

        Returns:
            The genome.

        Raises:
            GenomeError: `x` has the wrong length.
        """
        x = np.clip(np.rint(np.asarray(x, dtype=float)), self.xl, self.xu).astype(int)
        if x.shape != (self.n_var,):
            raise GenomeError(f"expected a vector of {self.n_var} genes, got shape {x.shape}")
        nb = len(self.backbone_genes)
        backbone = {g.name: g.values[i] for g, i in zip(self.backbone_genes, x[:nb])}
        exits = []
        for k in range(self.n_exit_points):
            e, h, w, p = x[nb + 4 * k: nb + 4 * k + 4]
            exits.append(ExitGene(bool(e), self.heads[h], self.head_widths[w], self.pools[p]))
        g = Genome.make(backbone, exits)
        return self.repair(g) if repair else g

    # ----------------------------------------------------------------- sampling, validity, repair
    def sample(self, seed: int = 0) -> Genome:
        """A random valid genome; the same seed gives the same genome.

        Args:
            seed: Seed of the numpy generator that draws the gene indices.

        Returns:
            A canonical valid genome.
        """
        rng = np.random.default_rng(seed)
        x = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(self.xl, self.xu)], dtype=int)
        return self.decode(x)

    def problems(self, genome: Genome) -> List[str]:
        """Reasons the genome is not a valid member of this space.

        Args:
            genome: Any genome.

        Returns:
            One line per reason; empty when the genome is valid and canonical.
        """
        reasons: List[str] = []
        params = genome.params
        names = {g.name for g in self.backbone_genes}
        if set(params) != names:
            missing, extra = sorted(names - set(params)), sorted(set(params) - names)
            reasons.append(f"backbone genes differ from the space (missing {missing}, unknown {extra})")
        else:
            for g in self.backbone_genes:
                if params[g.name] not in g.values:
                    reasons.append(f"gene {g.name!r}={params[g.name]!r} not in {list(g.values)}")
        if len(genome.exits) != self.n_exit_points:
            reasons.append(f"{len(genome.exits)} exit gene groups, the space has {self.n_exit_points} exit points")
            return reasons
        for k, e in enumerate(genome.exits):
            if e.head not in self.heads:
                reasons.append(f"exit point {k}: head {e.head!r} not in {list(self.heads)}")
            if e.width not in self.head_widths:
                reasons.append(f"exit point {k}: head width {e.width} not in {list(self.head_widths)}")
            if e.pool not in self.pools:
                reasons.append(f"exit point {k}: pool {e.pool} not in {list(self.pools)}")
        n_on = len(genome.exit_positions)
        if not self.min_early_exits <= n_on <= self.max_early_exits:
            reasons.append(f"{n_on} early exits enabled; the space needs {self.min_early_exits}.."
                           f"{self.max_early_exits}")
        if not reasons:
            for k, e in enumerate(genome.exits):
                if not e.enabled and e != _DEFAULT_EXIT:
                    reasons.append(f"exit point {k} is disabled but carries non-default head genes")
            reasons += self._cost_order_problems(genome)
        return reasons

    def validate(self, genome: Genome, structural_only: bool = False) -> None:
        """Check that the genome is a valid member of this space.

        Args:
            genome: Any genome.
            structural_only: Skip the canonical-form checks (exit count, disabled exits at defaults,
                exit cost order) that `repair` fixes.

        Raises:
            GenomeError: with every reason the genome is invalid.
        """
        reasons = self.problems(genome)
        if structural_only:
            reasons = [r for r in reasons if "disabled but carries" not in r and "costs more" not in r
                       and "early exits enabled" not in r]
        if reasons:
            raise GenomeError("invalid genome: " + "; ".join(reasons))

    def repair(self, genome: Genome) -> Genome:
        """Canonical valid form of a structurally valid genome.

        Disabled exits get default head genes (so equal architectures hash equal); if too few exits are
        enabled, the middle exit points are switched on (too many: the deepest are switched off); pooling
        factors of earlier exits are raised until no exit head costs more than a later one.

        Args:
            genome: A structurally valid genome of this space.

        Returns:
            The canonical valid genome.

        Raises:
            GenomeError: the genome is not structurally valid.
        """
        self.validate(genome, structural_only=True)
        exits = list(genome.exits)
        order = sorted(range(self.n_exit_points), key=lambda k: (abs(k - (self.n_exit_points - 1) / 2), k))
        for k in order:
            if sum(e.enabled for e in exits) >= self.min_early_exits:
                break
            if not exits[k].enabled:
                exits[k] = ExitGene(True, exits[k].head, exits[k].width, exits[k].pool)
        while sum(e.enabled for e in exits) > self.max_early_exits:
            k = max(i for i, e in enumerate(exits) if e.enabled)
            exits[k] = _DEFAULT_EXIT
        exits = [e if e.enabled else _DEFAULT_EXIT for e in exits]
        g = Genome(genome.backbone, tuple(exits))
        return self._repair_cost_order(g)

    # ----------------------------------------------------------------- exit-head cost order
    def exit_feature_shapes(self, genome: Genome) -> List[Tuple[int, int, int]]:
        """(H, W, C) of the backbone tensor at every exit point (for the head-cost repair).

        Args:
            genome: A genome with valid backbone genes.

        Returns:
            One shape per candidate exit point, in depth order.

        Raises:
            GenomeError: the backbone family cannot trace these genes.
        """
        return self.family.exit_feature_shapes(self, genome)

    def exit_macs(self, genome: Genome) -> Optional[List[int]]:
        """Staged MACs of every exit of `genome` (backbone up to the exit plus every head up to it; the
        final exit pays every early head), by arithmetic, without building the model.

        Equal to `nachos_tf.profile_macs(nachos_tf.build_eenn(space, genome)).exit_macs`.

        Args:
            genome: A valid genome.

        Returns:
            One figure per exit (enabled early exits in depth order, then the final one), or None when the
            backbone family cannot count without building (e.g. a keras-tuner hypermodel).

        Raises:
            GenomeError: the backbone family cannot trace these genes.
        """
        counted = self.family.backbone_macs(self, genome)
        if counted is None:
            return None
        points, whole = counted
        shapes = self.exit_feature_shapes(genome)
        heads, out = 0, []
        for pt in genome.exit_positions:
            heads += self.head_macs(shapes[pt], genome.exits[pt])
            out.append(int(points[pt] + heads))
        out.append(int(whole + heads))
        return out

    def head_macs(self, shape: Tuple[int, int, int], e: ExitGene) -> int:
        """MACs of one exit head (classifier + confidence branch) on a feature map of `shape`.

        Args:
            shape: (H, W, C) of the exit point's feature map.
            e: The exit point's genes.

        Returns:
            The head's multiply-accumulates (see `nachos_tf.heads.head_macs`).

        Raises:
            GenomeError: `e.head` is not a registered head kind.
        """
        return _head_macs(shape, e, self.num_classes, self.confidence)

    def _cost_order_problems(self, genome: Genome) -> List[str]:
        shapes = self.exit_feature_shapes(genome)
        on = genome.exit_positions
        out = []
        for a, b in zip(on, on[1:]):
            ca, cb = self.head_macs(shapes[a], genome.exits[a]), self.head_macs(shapes[b], genome.exits[b])
            if ca > cb and genome.exits[a].pool != max(self.pools):
                out.append(f"exit point {a} head costs more ({ca} MACs) than the later exit point {b} ({cb})")
        return out

    def _repair_cost_order(self, genome: Genome) -> Genome:
        shapes = self.exit_feature_shapes(genome)
        exits = list(genome.exits)
        on = genome.exit_positions
        for a, b in reversed(list(zip(on, on[1:]))):
            cb = self.head_macs(shapes[b], exits[b])
            while self.head_macs(shapes[a], exits[a]) > cb and exits[a].pool != max(self.pools):
                nxt = self.pools[self.pools.index(exits[a].pool) + 1]
                exits[a] = ExitGene(True, exits[a].head, exits[a].width, nxt)
        return Genome(genome.backbone, tuple(exits))

    # ----------------------------------------------------------------- description
    def to_dict(self) -> Dict[str, Any]:
        """JSON description (for config.json); `from_dict` rebuilds built-in spaces.

        Returns:
            `{"kind", "input_shape", "num_classes", "confidence", "n_exit_points", "backbone_genes",
            "heads", "pools", "head_widths", "min_early_exits", "max_early_exits", "settings"}`.
        """
        fam = self.family.to_dict()
        return {"kind": fam["kind"], "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "confidence": self.confidence, "n_exit_points": fam["n_exit_points"],
                "backbone_genes": fam["backbone_genes"],
                "heads": list(self.heads), "pools": list(self.pools), "head_widths": list(self.head_widths),
                "min_early_exits": self.min_early_exits, "max_early_exits": self.max_early_exits,
                "settings": fam["settings"]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        """Rebuild a space from `to_dict()` JSON (e.g. config.json of a run folder).

        Args:
            d: The space JSON.

        Returns:
            The space.

        Raises:
            GenomeError: the backbone family cannot be rebuilt from JSON (a hypermodel space: pass the
                space object instead), or the JSON differs from what this version builds.
            KeyError: a key is missing.
        """
        family = family_from_dict(d)
        space = cls(family, d["input_shape"], d["num_classes"], confidence=d["confidence"], heads=d["heads"],
                    pools=d["pools"], head_widths=d["head_widths"], min_early_exits=d["min_early_exits"],
                    max_early_exits=d["max_early_exits"])
        if space.to_dict() != dict(d):
            raise GenomeError(f"the saved {space.kind!r} search space does not round-trip in this version "
                              "(it differs from what this version builds from it)")
        return space

    def __repr__(self) -> str:
        return (f"SearchSpace(kind={self.kind!r}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"genes={self.n_var}, exit_points={self.n_exit_points}, confidence={self.confidence})")
