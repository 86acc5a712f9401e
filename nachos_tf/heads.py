"""Exit heads: the Keras layers of each head kind and their analytic MACs, one place per head kind.

Every exit head maps a backbone feature map (H, W, C) to a feature vector of length F (the head kind's
own layers), then to class logits with a Dense layer and, when the space has learned confidences, to a
sigmoid confidence with a second Dense layer (the NACHOS binary branch). A head kind is a `HeadKind`:
its `features` layers and its `cost` formula side by side. A new kind is added by writing one `HeadKind`
and passing it to `register_head`; a space offers it when its name is in `SearchSpace(heads=...)`.

MAC convention (see DESIGN.md): multiply-accumulates of Conv2D / Dense layers; pooling, BatchNorm,
activations and biases count 0. `head_macs` must equal what `nachos_tf.profile_macs` measures on the
built head (tests check it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

from keras import layers

from . import naming
from .errors import GenomeError
from .genome import ExitGene

Shape = Tuple[int, int, int]

#: Head kinds a space offers by default (in encoding order).
HEADS = ("gap_dense", "conv_gap_dense", "nachos")


@dataclass(frozen=True)
class HeadKind:
    """One kind of exit head.

    Attributes:
        name: The value of `ExitGene.head` that selects this kind.
        features: `(x, prefix, gene) -> v`: adds the head's layers (names starting with `prefix`) on the
            feature map `x` and returns the (N, F) feature vector the classifier reads.
        cost: `(shape, gene) -> (macs, F)`: MACs of the layers `features` adds on an (H, W, C) feature
            map, and the length F of the vector it returns.
    """

    name: str
    features: Callable[[Any, str, ExitGene], Any]
    cost: Callable[[Shape, ExitGene], Tuple[int, int]]


_KINDS: Dict[str, HeadKind] = {}


def register_head(kind: HeadKind) -> HeadKind:
    """Make a head kind available to spaces (`SearchSpace(heads=(..., kind.name))`).

    Args:
        kind: The head kind.

    Returns:
        `kind`, so that it can be used as an expression.

    Raises:
        GenomeError: another kind with the same name is registered.
    """
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise GenomeError(f"head kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def head_kind(name: str) -> HeadKind:
    """The registered head kind called `name`.

    Args:
        name: A head kind name (`ExitGene.head`).

    Returns:
        The `HeadKind`.

    Raises:
        GenomeError: no head kind of that name is registered.
    """
    try:
        return _KINDS[name]
    except KeyError:
        raise GenomeError(f"unknown exit head kind {name!r}; registered: {sorted(_KINDS)}") from None


def head_kinds() -> Tuple[str, ...]:
    """Names of every registered head kind, in registration order."""
    return tuple(_KINDS)


def attach_exit_head(x: Any, k: int, gene: ExitGene, num_classes: int, confidence: bool) -> List[Any]:
    """Add exit k's head on backbone tensor `x`.

    Layer names start with `exit_{k}`; the outputs are named by `nachos_tf.naming`.

    Args:
        x: Symbolic (N, H, W, C) feature map (the exit point).
        k: Index of the exit among the enabled exits (0 = earliest).
        gene: The exit point's genes (head kind, width, pooling).
        num_classes: Number of class logits.
        confidence: Whether to add the learned confidence output.

    Returns:
        `[logits]` or `[logits, confidence]` (symbolic tensors).

    Raises:
        GenomeError: `gene.head` is not a registered head kind.
    """
    v = head_kind(gene.head).features(x, f"exit_{k}", gene)
    outs = [layers.Dense(num_classes, name=naming.exit_name(k))(v)]
    if confidence:
        outs.append(layers.Dense(1, activation="sigmoid", name=naming.conf_name(k))(v))
    return outs


def head_macs(shape: Shape, gene: ExitGene, num_classes: int, confidence: bool) -> int:
    """MACs of one exit head (its own layers + classifier + confidence branch) on a feature map.

    Args:
        shape: (H, W, C) of the exit point's feature map.
        gene: The exit point's genes.
        num_classes: Number of class logits.
        confidence: Whether the head has the learned confidence output.

    Returns:
        The head's multiply-accumulates.

    Raises:
        GenomeError: `gene.head` is not a registered head kind.
    """
    macs, f = head_kind(gene.head).cost(tuple(shape), gene)
    return macs + f * (num_classes + (1 if confidence else 0))


# ----------------------------------------------------------------------------- the built-in head kinds
def _pooled(shape: Shape, gene: ExitGene) -> Tuple[int, int]:
    """(H, W) after the head's "same"-padded average pooling."""
    h, w, _ = shape
    return math.ceil(h / gene.pool), math.ceil(w / gene.pool)


def _pool_conv_bn_relu(x: Any, p: str, gene: ExitGene, ksize: int) -> Any:
    if gene.pool > 1:
        x = layers.AveragePooling2D(gene.pool, strides=gene.pool, padding="same", name=f"{p}_pool")(x)
    x = layers.Conv2D(gene.width, ksize, padding="same", use_bias=False, name=f"{p}_conv")(x)
    x = layers.BatchNormalization(name=f"{p}_bn")(x)
    return layers.ReLU(name=f"{p}_relu")(x)


def _gap_dense_features(x: Any, p: str, gene: ExitGene) -> Any:
    return layers.GlobalAveragePooling2D(name=f"{p}_gap")(x)


def _gap_dense_cost(shape: Shape, gene: ExitGene) -> Tuple[int, int]:
    return 0, shape[2]


def _conv_gap_dense_features(x: Any, p: str, gene: ExitGene) -> Any:
    return layers.GlobalAveragePooling2D(name=f"{p}_gap")(_pool_conv_bn_relu(x, p, gene, 1))


def _conv_gap_dense_cost(shape: Shape, gene: ExitGene) -> Tuple[int, int]:
    ph, pw = _pooled(shape, gene)
    return ph * pw * shape[2] * gene.width, gene.width


def _nachos_features(x: Any, p: str, gene: ExitGene) -> Any:
    return layers.Flatten(name=f"{p}_flatten")(_pool_conv_bn_relu(x, p, gene, 3))


def _nachos_cost(shape: Shape, gene: ExitGene) -> Tuple[int, int]:
    ph, pw = _pooled(shape, gene)
    return ph * pw * 9 * shape[2] * gene.width, ph * pw * gene.width


#: Global average pooling, then the classifier.
GAP_DENSE = register_head(HeadKind("gap_dense", _gap_dense_features, _gap_dense_cost))
#: Pool, 1x1 conv + BN + ReLU, global average pooling, then the classifier.
CONV_GAP_DENSE = register_head(HeadKind("conv_gap_dense", _conv_gap_dense_features, _conv_gap_dense_cost))
#: The NACHOS head: pool, 3x3 conv + BN + ReLU, flatten, then the classifier.
NACHOS = register_head(HeadKind("nachos", _nachos_features, _nachos_cost))
