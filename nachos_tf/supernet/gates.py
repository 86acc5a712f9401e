"""Genome -> gates: the static shape of the weight-sharing supernet and the per-subnet gate tensors.

`SupernetSpec` is the static part, read from a `SearchSpace.mcu` space: the largest choice of every gene
(which sizes the shared weights), the candidate resolutions, strides and exit-head variants.
A subnet is an int32 **code** vector (gene values, not indices), so one traced graph serves every
subnet, resolution included: `gates(spec, code)` turns a code into 0/1 channel masks, depth gates,
residual gates, kernel sizes, activation/SE switches and the input size *inside* the graph (spatial
sizes are dynamic; the depthwise window offsets are computed from them in the graph).

Code layout: ``[stem_width, (depth, kernel, expand, width, se, act) x stages, head width per
(exit point, head variant), (enabled, variant) per exit point, resolution index]``. The
(enabled, variant) group is the exit configuration of the NACHOS loss option (ignored by the forward
pass).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..errors import SupernetError

STAGE_GENES = ("depth", "kernel", "expand", "width", "se", "act")
ACTS = ("relu", "hard_swish")
#: Gene groups a training stage can make elastic (progressive shrinking): the rest stay at their largest.
ELASTIC_GROUPS = ("resolution", "stem") + STAGE_GENES + ("heads",)


def elastic_groups(groups: Sequence[str]) -> Tuple[str, ...]:
    """The gene groups `groups`, checked and in `ELASTIC_GROUPS` order.

    Raises:
        SupernetError: a string instead of a sequence, or an unknown group name.
    """
    if isinstance(groups, str):
        raise SupernetError("elastic must be a sequence of gene group names, not a string")
    bad = [g for g in groups if g not in ELASTIC_GROUPS]
    if bad:
        raise SupernetError(f"unknown elastic gene group(s) {bad}; choose from {list(ELASTIC_GROUPS)}")
    return tuple(g for g in ELASTIC_GROUPS if g in groups)


def same_pad_before(n: int, k: int, stride: int) -> int:
    """Rows TF's "same" padding adds before the input (kernel k, stride, input size n)."""
    out = math.ceil(n / stride)
    return max((out - 1) * stride + k - n, 0) // 2


def window_offset(n: int, k: int, k_max: int, stride: int) -> int:
    """Offset of the k x k window inside the k_max x k_max kernel that reproduces a k x k "same" conv.

    A "same" conv reads input rows ``i*stride - before(k) + [0, k)``; the big kernel reads
    ``i*stride - before(k_max) + [0, k_max)``, so the window starts at ``before(k_max) - before(k)``
    (the centre in every case TF pads symmetrically; computed, not assumed).
    """
    return same_pad_before(n, k_max, stride) - same_pad_before(n, k, stride)


@dataclass(frozen=True)
class SupernetSpec:
    """Static description of the supernet of one `SearchSpace.mcu` space (max sizes, shapes, variants)."""

    input_shape: Tuple[int, int, int]
    num_classes: int
    resolutions: Tuple[int, ...]
    stem_widths: Tuple[int, ...]
    stem_stride: int
    strides: Tuple[int, ...]
    depths: Tuple[Tuple[int, ...], ...]
    kernels: Tuple[Tuple[int, ...], ...]
    expands: Tuple[Tuple[int, ...], ...]
    widths: Tuple[Tuple[int, ...], ...]
    n_points: int
    heads: Tuple[str, ...]
    pools: Tuple[int, ...]
    head_widths: Tuple[int, ...]
    confidence: bool

    @classmethod
    def from_space(cls, space: Any) -> "SupernetSpec":
        """Read the spec from a search space (only the built-in "mcu" kind has a supernet).

        Raises:
            SupernetError: the space is not an "mcu" space or lacks a gene the supernet needs.
        """
        if getattr(space, "kind", None) != "mcu":
            raise SupernetError(f"a supernet exists only for SearchSpace.mcu spaces, got kind {space.kind!r}")
        genes = {g.name: tuple(g.values) for g in space.backbone_genes}
        strides = tuple(int(s) for s in space.settings["strides"])
        n = len(strides)
        need = ["resolution", "stem_width"] + [f"s{s + 1}_{g}" for s in range(n) for g in STAGE_GENES]
        missing = [g for g in need if g not in genes]
        if missing:
            raise SupernetError(f"the space lacks genes the supernet needs: {missing}")
        st = lambda g: tuple(tuple(int(v) for v in genes[f"s{s + 1}_{g}"]) for s in range(n))
        bad = [a for s in range(n) for a in genes[f"s{s + 1}_act"] if a not in ACTS]
        if bad or any(k % 2 == 0 for ks in st("kernel") for k in ks):
            raise SupernetError("supernet supports relu/hard_swish activations and odd kernels only")
        return cls(tuple(int(v) for v in space.input_shape), int(space.num_classes),
                   tuple(sorted((int(r) for r in genes["resolution"]), reverse=True)),
                   tuple(int(v) for v in genes["stem_width"]), int(space.settings["stem_stride"]), strides,
                   st("depth"), st("kernel"), st("expand"), st("width"), int(space.n_exit_points),
                   tuple(space.heads), tuple(int(p) for p in space.pools), tuple(int(w) for w in space.head_widths),
                   bool(space.confidence))

    # ------------------------------------------------------------------ static sizes
    @property
    def n_stages(self) -> int:
        return len(self.strides)

    @property
    def stem_max(self) -> int:
        return max(self.stem_widths)

    def width_max(self, st: int) -> int:
        return max(self.widths[st])

    def depth_max(self, st: int) -> int:
        return max(self.depths[st])

    def kernel_max(self, st: int) -> int:
        return max(self.kernels[st])

    def cin_max(self, st: int, b: int) -> int:
        """Largest input width of block b of stage st."""
        if b > 0:
            return self.width_max(st)
        return self.stem_max if st == 0 else self.width_max(st - 1)

    def cmid_max(self, st: int, b: int) -> int:
        return self.cin_max(st, b) * max(self.expands[st])

    def se_max(self, st: int, b: int) -> int:
        return max(4, self.cmid_max(st, b) // 4)

    @property
    def head_width_max(self) -> int:
        return max(self.head_widths)

    @property
    def variants(self) -> Tuple[Tuple[str, int], ...]:
        """Exit-head variants trained at every exit point: (head kind, pool); gap_dense ignores pool."""
        out: List[Tuple[str, int]] = []
        for h in self.heads:
            if h == "gap_dense":
                out.append((h, 1))
            else:
                out += [(h, p) for p in self.pools]
        return tuple(out)

    def variant_index(self, head: str, pool: int) -> int:
        return self.variants.index((head, 1 if head == "gap_dense" else int(pool)))

    def resolution_size(self, res: int) -> Tuple[int, int]:
        """(H, W) of the network input at resolution `res` (as the builder's Resizing)."""
        h, w, _ = self.input_shape
        return (int(res), max(1, round(w * res / h))) if res != h else (h, w)

    def stage_sizes(self, res: int) -> List[Tuple[Tuple[int, int], Tuple[int, int]]]:
        """Per stage ((H, W) at its input, (H, W) at its output) at resolution `res`."""
        h, w = self.resolution_size(res)
        h, w = math.ceil(h / self.stem_stride), math.ceil(w / self.stem_stride)
        out = []
        for s in self.strides:
            h2, w2 = math.ceil(h / s), math.ceil(w / s)
            out.append(((h, w), (h2, w2)))
            h, w = h2, w2
        return out

    def pooled_size(self, res: int, point: int, pool: int) -> Tuple[int, int]:
        h, w = self.stage_sizes(res)[point][1]
        return math.ceil(h / pool), math.ceil(w / pool)

    def nachos_shapes(self, point: int) -> List[Tuple[int, int]]:
        """Distinct pooled spatial sizes a flatten head at `point` can see (one dense kernel each)."""
        if "nachos" not in self.heads:
            return []
        return sorted({self.pooled_size(r, point, p) for r in self.resolutions for p in self.pools}, reverse=True)

    # ------------------------------------------------------------------ codes
    @property
    def n_head_widths(self) -> int:
        return self.n_points * len(self.variants)

    @property
    def code_length(self) -> int:
        return 1 + len(STAGE_GENES) * self.n_stages + self.n_head_widths + 2 * self.n_points + 1

    def _code(self, stem: int, stages: Sequence[Sequence[int]], head_widths: Sequence[int],
              exits: Sequence[int], res_index: int) -> np.ndarray:
        v = [stem] + [int(x) for s in stages for x in s] + list(head_widths) + list(exits) + [int(res_index)]
        return np.asarray(v, np.int32)

    def encode(self, genome: Any) -> Tuple[np.ndarray, int]:
        """Genome -> (code, resolution). Every head variant of a point gets that exit's width.

        Raises:
            SupernetError: a gene value outside the supernet's choices.
        """
        p = genome.params
        stages = []
        for s in range(self.n_stages):
            g = f"s{s + 1}"
            stages.append([p[f"{g}_depth"], p[f"{g}_kernel"], p[f"{g}_expand"], p[f"{g}_width"],
                           int(bool(p[f"{g}_se"])), ACTS.index(p[f"{g}_act"])])
        hw, ex = [], []
        for k in range(self.n_points):
            e = genome.exits[k]
            hw += [int(e.width)] * len(self.variants)
            ex += [int(e.enabled), self.variant_index(e.head, e.pool) if e.enabled else 0]
        res = int(p["resolution"])
        if res not in self.resolutions:
            raise SupernetError(f"resolution {res} is not one of the supernet's {list(self.resolutions)}")
        return self._code(int(p["stem_width"]), stages, hw, ex, self.resolutions.index(res)), res

    def extreme_code(self, largest: bool) -> np.ndarray:
        """Code of the largest (or smallest) subnet; SE on and hard-swish for the largest, off/relu else."""
        f = max if largest else min
        stages = [[f(self.depths[s]), f(self.kernels[s]), f(self.expands[s]), f(self.widths[s]),
                   int(largest), int(largest)] for s in range(self.n_stages)]
        hw = [f(self.head_widths)] * self.n_head_widths
        ex = [1, 0] * self.n_points
        return self._code(f(self.stem_widths), stages, hw, ex, 0 if largest else len(self.resolutions) - 1)

    def random_code(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random subnet code (every gene, every head width, a random exit configuration)."""
        c = lambda vals: int(vals[rng.integers(len(vals))])
        stages = [[c(self.depths[s]), c(self.kernels[s]), c(self.expands[s]), c(self.widths[s]),
                   int(rng.integers(2)), int(rng.integers(2))] for s in range(self.n_stages)]
        hw = [c(self.head_widths) for _ in range(self.n_head_widths)]
        ex = []
        for _ in range(self.n_points):
            ex += [int(rng.integers(2)), int(rng.integers(len(self.variants)))]
        return self._code(c(self.stem_widths), stages, hw, ex, int(rng.integers(len(self.resolutions))))

    def elastic_positions(self, groups: Sequence[str]) -> List[int]:
        """Code positions of the gene groups `groups` (names from `ELASTIC_GROUPS`).

        Args:
            groups: gene group names.

        Returns:
            The sorted positions in a subnet code that those groups' genes occupy.

        Raises:
            SupernetError: an unknown group name.
        """
        groups = elastic_groups(groups)
        pos: List[int] = []
        if "stem" in groups:
            pos.append(0)
        for s in range(self.n_stages):
            pos += [1 + len(STAGE_GENES) * s + i for i, g in enumerate(STAGE_GENES) if g in groups]
        hb = 1 + len(STAGE_GENES) * self.n_stages
        if "heads" in groups:
            pos += list(range(hb, hb + self.n_head_widths))
        if "resolution" in groups:
            pos.append(self.code_length - 1)
        return sorted(pos)

    def restrict(self, code: np.ndarray, groups: Sequence[str]) -> np.ndarray:
        """`code` with every gene outside the elastic `groups` set to the largest subnet's value.

        Args:
            code: a subnet code (`code_length` int values).
            groups: the elastic gene groups (names from `ELASTIC_GROUPS`).

        Returns:
            A new code: the exit configuration (the NACHOS loss option's genes) and the elastic genes as in
            `code`, every other gene at its largest value.

        Raises:
            SupernetError: an unknown group name.
        """
        out = self.extreme_code(True)
        hb = 1 + len(STAGE_GENES) * self.n_stages + self.n_head_widths
        keep = self.elastic_positions(groups) + list(range(hb, hb + 2 * self.n_points))
        out[keep] = np.asarray(code, np.int32)[keep]
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ---------------------------------------------------------------------- in-graph gates
def _mask(tf, n_max: int, n) -> Any:
    return tf.cast(tf.range(n_max) < n, tf.float32)


def _window(tf, k_max: int, k, offset) -> Any:
    r = tf.range(k_max)
    return tf.cast(tf.logical_and(r >= offset, r < offset + k), tf.float32)


def offset_t(tf, n, k, k_max: int, stride: int):
    """Tensor version of `window_offset` (input size n and kernel size k may be tensors)."""
    out = (n + stride - 1) // stride
    before = lambda kk: tf.maximum((out - 1) * stride + kk - n, 0) // 2
    return before(k_max) - before(k)


def window_mask(tf, n_h, n_w, k, k_max: int, stride: int):
    """k_max x k_max 0/1 mask of the k x k window a "same" conv of kernel k needs (dynamic sizes)."""
    wh = _window(tf, k_max, k, offset_t(tf, n_h, k, k_max, stride))
    ww = _window(tf, k_max, k, offset_t(tf, n_w, k, k_max, stride))
    return wh[:, None] * ww[None, :]


def gates(spec: SupernetSpec, code) -> Dict[str, Any]:
    """In-graph gates of one subnet: code (int32 tensor [code_length]).

    Returns a dict: ``stem`` mask; ``res`` resolution index; ``size`` (H, W) input size tensor;
    ``stages``: per stage dict(act, se, kernel, width mask, blocks=[dict(on, mid, se_mask, residual)]);
    ``heads``: float masks [n_points, n_variants, head_width_max]; ``exit_on``, ``exit_variant``.
    """
    import tensorflow as tf

    code = tf.cast(code, tf.int32)
    stem = code[0]
    res = code[-1]
    table = tf.constant([spec.resolution_size(r) for r in spec.resolutions], tf.int32)
    out: Dict[str, Any] = {"stem": _mask(tf, spec.stem_max, stem), "stages": [], "res": res,
                           "size": tf.gather(table, res)}
    prev_w = stem
    for s in range(spec.n_stages):
        base = 1 + len(STAGE_GENES) * s
        depth, kernel, expand, width, se, act = (code[base + i] for i in range(len(STAGE_GENES)))
        stage = {"act": act > 0, "se": se > 0, "kernel": kernel, "width": _mask(tf, spec.width_max(s), width),
                 "blocks": []}
        for b in range(spec.depth_max(s)):
            stride = spec.strides[s] if b == 0 else 1
            c_in = prev_w if b == 0 else width
            c_mid = c_in * expand
            stage["blocks"].append({
                "on": b < depth, "mid": _mask(tf, spec.cmid_max(s, b), c_mid),
                "se_mask": _mask(tf, spec.se_max(s, b), tf.maximum(4, c_mid // 4)),
                "residual": tf.logical_and(tf.equal(c_in, width), stride == 1)})
        out["stages"].append(stage)
        prev_w = width
    hb = 1 + len(STAGE_GENES) * spec.n_stages
    hw = tf.reshape(code[hb: hb + spec.n_head_widths], [spec.n_points, len(spec.variants)])
    out["heads"] = tf.cast(tf.range(spec.head_width_max)[None, None, :] < hw[:, :, None], tf.float32)
    eb = hb + spec.n_head_widths
    ex = tf.reshape(code[eb: eb + 2 * spec.n_points], [spec.n_points, 2])
    out["exit_on"], out["exit_variant"] = tf.cast(ex[:, 0], tf.float32), ex[:, 1]
    return out
