"""Search spaces and genomes: what the NAS chooses, as plain data that encodes to pymoo integer vectors.

A genome has two parts: backbone genes (a flat name -> value mapping, each gene a categorical choice)
and one exit gene group per candidate exit point (enabled, head design, head width, pooling factor).
`SearchSpace.mcu` is the built-in MobileNetV3-style space scaled to microcontrollers; a keras-tuner
`build(hp)` function or `HyperModel` can serve as the backbone instead (see `SearchSpace.from_hypermodel`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import GenomeError

HEADS = ("gap_dense", "conv_gap_dense", "nachos")
POOLS = (1, 2, 4)
HEAD_WIDTHS = (8, 16, 32)
ACTIVATIONS = ("relu", "hard_swish")


@dataclass(frozen=True)
class Gene:
    """One categorical gene: a name and the values it may take (encoded as the index of the value)."""

    name: str
    values: Tuple[Any, ...]

    def index(self, value: Any) -> int:
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
    """

    enabled: bool = False
    head: str = "gap_dense"
    width: int = 16
    pool: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return {"enabled": bool(self.enabled), "head": self.head, "width": int(self.width), "pool": int(self.pool)}


_DEFAULT_EXIT = ExitGene()


@dataclass(frozen=True)
class Genome:
    """A candidate EENN: backbone gene values plus one `ExitGene` per candidate exit point.

    Plain data: hashable, JSON round-trippable with `to_dict` / `from_dict`; the same genome always builds
    the same architecture.
    """

    backbone: Tuple[Tuple[str, Any], ...]
    exits: Tuple[ExitGene, ...]

    @staticmethod
    def make(backbone: Mapping[str, Any], exits: Sequence[ExitGene]) -> "Genome":
        """Build a genome from a backbone mapping (any order) and exit genes."""
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
        return {"backbone": dict(self.backbone), "exits": [e.to_dict() for e in self.exits]}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Genome":
        try:
            return Genome.make(d["backbone"], [ExitGene(bool(e["enabled"]), str(e["head"]), int(e["width"]),
                                                        int(e["pool"])) for e in d["exits"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise GenomeError(f"malformed genome dict ({exc!r}): {json.dumps(d, default=str)[:200]}") from None

    def key(self) -> str:
        """A stable string id of the architecture (used as the archive key)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _plain(v: Any) -> Any:
    """Numpy scalars to Python scalars so genomes hash and serialise the same way."""
    if isinstance(v, np.generic):
        return v.item()
    return v


class SearchSpace:
    """A set of EENN architectures: backbone genes, candidate exit points, and the exit-head choices.

    `backbone_genes` are categorical; each of the `n_exit_points` candidate exit points has the genes of
    `ExitGene`. `confidence=True` gives every early exit a learned confidence output (NACHOS binary
    branch). The integer encoding for pymoo is backbone gene indices followed by 4 indices per exit point.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, backbone_genes: Sequence[Gene],
                 n_exit_points: int, kind: str = "mcu", confidence: bool = True,
                 heads: Sequence[str] = HEADS, pools: Sequence[int] = POOLS,
                 head_widths: Sequence[int] = HEAD_WIDTHS, min_early_exits: int = 1,
                 max_early_exits: Optional[int] = None, hypermodel: Any = None,
                 settings: Optional[Dict[str, Any]] = None):
        if num_classes < 2:
            raise GenomeError(f"num_classes must be >= 2, got {num_classes}")
        if len(input_shape) != 3:
            raise GenomeError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.backbone_genes = list(backbone_genes)
        self.n_exit_points = int(n_exit_points)
        self.kind = kind
        self.confidence = bool(confidence)
        self.heads = tuple(heads)
        self.pools = tuple(int(p) for p in pools)
        self.head_widths = tuple(int(w) for w in head_widths)
        self.min_early_exits = int(min_early_exits)
        self.max_early_exits = self.n_exit_points if max_early_exits is None else int(max_early_exits)
        self.hypermodel = hypermodel
        self.settings = dict(settings or {})
        if self.max_early_exits < self.min_early_exits:
            raise GenomeError("max_early_exits < min_early_exits")
        if self.min_early_exits > self.n_exit_points:
            raise GenomeError(f"the space has {self.n_exit_points} exit points, fewer than "
                              f"min_early_exits={self.min_early_exits}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def mcu(cls, input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, confidence: bool = True,
            early_exits: bool = True) -> "SearchSpace":
        """The default space: OFA-MobileNetV3 shape (5 stages, depth {2,3,4}, kernel {3,5,7},
        expansion {3,4,6}) scaled down for microcontrollers, with an exit point after stages 1-4.

        Searched per stage: depth, depthwise kernel, expansion, output width, squeeze-excite on/off and
        ReLU / hard-swish; globally: input resolution (down-scaling) and stem width. `early_exits=False`
        gives the static (single-exit) space with the same backbone.
        """
        h, w, _ = (int(s) for s in input_shape)
        res = sorted({_even(h), _even(h * 0.86), _even(h * 0.72)}, reverse=True)
        genes = [Gene("resolution", tuple(res)), Gene("stem_width", (8, 16))]
        stage_widths = ((8, 12, 16), (12, 16, 20), (16, 20, 24), (20, 24, 32), (24, 32, 40))
        for s in range(5):
            genes += [Gene(f"s{s + 1}_depth", (2, 3, 4)), Gene(f"s{s + 1}_kernel", (3, 5, 7)),
                      Gene(f"s{s + 1}_expand", (3, 4, 6)), Gene(f"s{s + 1}_width", stage_widths[s]),
                      Gene(f"s{s + 1}_se", (False, True)), Gene(f"s{s + 1}_act", ACTIVATIONS)]
        settings = {"stem_stride": 2 if min(h, w) >= 24 else 1, "strides": [2, 1, 2, 1, 1]}
        n_points = 4 if early_exits else 0
        return cls(input_shape, num_classes, genes, n_points, kind="mcu", confidence=confidence and early_exits,
                   min_early_exits=1 if early_exits else 0, settings=settings)

    @classmethod
    def from_hypermodel(cls, hypermodel: Any, input_shape: Sequence[int], num_classes: int,
                        confidence: bool = True, float_steps: int = 5) -> "SearchSpace":
        """A space whose backbone is a keras-tuner `build(hp)` function or `keras_tuner.HyperModel`.

        The backbone's hyperparameters become backbone genes; the `nachos_tf.ExitPoint` layers it places
        become the candidate exit points. See `nachos_tf.tuner_bridge`.
        """
        from .tuner_bridge import discover_space

        return discover_space(cls, hypermodel, input_shape, num_classes, confidence, float_steps)

    # ----------------------------------------------------------------- pymoo encoding
    @property
    def n_var(self) -> int:
        return len(self.backbone_genes) + 4 * self.n_exit_points

    @property
    def xl(self) -> np.ndarray:
        return np.zeros(self.n_var, dtype=int)

    @property
    def xu(self) -> np.ndarray:
        ub = [len(g.values) - 1 for g in self.backbone_genes]
        ub += [1, len(self.heads) - 1, len(self.head_widths) - 1, len(self.pools) - 1] * self.n_exit_points
        return np.asarray(ub, dtype=int)

    def encode(self, genome: Genome) -> np.ndarray:
        """Genome -> integer vector (gene value indices) for pymoo."""
        self.validate(genome, structural_only=True)
        params = genome.params
        x = [g.index(params[g.name]) for g in self.backbone_genes]
        for e in genome.exits:
            x += [int(e.enabled), self.heads.index(e.head), self.head_widths.index(e.width), self.pools.index(e.pool)]
        return np.asarray(x, dtype=int)

    def decode(self, x: Sequence[float], repair: bool = True) -> Genome:
        """Integer (or real, rounded and clipped) vector -> genome, repaired unless `repair=False`."""
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
        """A random valid genome; the same seed gives the same genome."""
        rng = np.random.default_rng(seed)
        x = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(self.xl, self.xu)], dtype=int)
        return self.decode(x)

    def problems(self, genome: Genome) -> List[str]:
        """Reasons the genome is not a valid member of this space (empty list when valid)."""
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
        """Raise GenomeError with every reason the genome is invalid; `structural_only` skips the
        canonical-form checks (disabled exits at defaults, exit cost order) that `repair` fixes."""
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
        """(H, W, C) of the backbone tensor at every exit point (for the head-cost repair)."""
        if self.kind == "mcu":
            p = genome.params
            h = w = None
            h = p["resolution"]
            w = max(1, round(self.input_shape[1] * h / self.input_shape[0]))
            s = self.settings["stem_stride"]
            h, w = math.ceil(h / s), math.ceil(w / s)
            shapes = []
            for st, stride in enumerate(self.settings["strides"]):
                h, w = math.ceil(h / stride), math.ceil(w / stride)
                shapes.append((h, w, p[f"s{st + 1}_width"]))
            return shapes[: self.n_exit_points]
        from .tuner_bridge import exit_point_shapes

        return exit_point_shapes(self, genome)

    def head_macs(self, shape: Tuple[int, int, int], e: ExitGene) -> int:
        """MACs of one exit head (classifier + confidence branch) on a feature map of `shape`."""
        h, w, c = shape
        conf = 1 if self.confidence else 0
        if e.head == "gap_dense":
            return c * (self.num_classes + conf)
        ph, pw = math.ceil(h / e.pool), math.ceil(w / e.pool)
        if e.head == "conv_gap_dense":
            return ph * pw * c * e.width + e.width * (self.num_classes + conf)
        # nachos: 3x3 conv (same) on the pooled map, then flatten + dense
        return ph * pw * 9 * c * e.width + ph * pw * e.width * (self.num_classes + conf)

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
        """JSON description (for config.json); `from_dict` rebuilds built-in spaces."""
        return {"kind": self.kind, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "confidence": self.confidence, "n_exit_points": self.n_exit_points,
                "backbone_genes": {g.name: list(g.values) for g in self.backbone_genes},
                "heads": list(self.heads), "pools": list(self.pools), "head_widths": list(self.head_widths),
                "min_early_exits": self.min_early_exits, "max_early_exits": self.max_early_exits,
                "settings": self.settings}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        if d.get("kind") != "mcu":
            raise GenomeError(f"only the built-in 'mcu' space can be rebuilt from JSON, got {d.get('kind')!r}; "
                              "pass the hypermodel space object instead")
        space = cls.mcu(d["input_shape"], d["num_classes"], confidence=d["confidence"],
                        early_exits=d["n_exit_points"] > 0)
        if space.to_dict() != dict(d):
            raise GenomeError("the saved search space differs from this version's built-in 'mcu' space")
        return space

    def __repr__(self) -> str:
        return (f"SearchSpace(kind={self.kind!r}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"genes={self.n_var}, exit_points={self.n_exit_points}, confidence={self.confidence})")


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)
