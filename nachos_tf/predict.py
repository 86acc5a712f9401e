"""An EENN's exits in one forward pass: softmax probabilities of every exit and the early exits' confidences
(`predict_exits`, and `exit_outputs` from outputs already computed), in the order of `nachos_tf.naming`."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from .naming import ExitSpec, exit_layout

__all__ = ["predict_exits", "exit_outputs", "softmax"]


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable), as `predict_exits` turns logits into probabilities.

    Args:
        z: logits.

    Returns:
        Probabilities of the same shape.
    """
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_exits(model: keras.Model, x: Union[np.ndarray, tf.Tensor], batch_size: int = 256, eager: bool = False
                  ) -> Tuple[List[np.ndarray], Optional[List[Optional[np.ndarray]]]]:
    """One forward pass: (softmax probabilities of every exit, final last; early-exit confidences (N,) or None).

    Args:
        model: an EENN (outputs follow `nachos_tf.naming`).
        x: images.
        batch_size: images per forward call.
        eager: call the model directly (inference mode) instead of `model.predict`: no graph is traced,
            which is faster for a model used once (a candidate of a supernet search); use large batches.

    Returns:
        Confidences is None when the model has no confidence output; otherwise one array per early exit
        (None for an exit without one).
    """
    layout = exit_layout(model)
    if eager:
        parts = [model(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        parts = [p if isinstance(p, (list, tuple)) else [p] for p in parts]
        outs = [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]
    else:
        outs = model.predict(x, batch_size=batch_size, verbose=0)
    return exit_outputs(outs, layout)


def exit_outputs(outs: Any, layout: Sequence[ExitSpec]) -> Tuple[List[np.ndarray], Optional[List[Optional[np.ndarray]]]]:
    """`predict_exits`' result from raw model outputs (logits and confidences, in output order) and their
    `naming.exit_layout`: softmax probabilities per exit (final last), early-exit confidences (N,) or None."""
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    probs = [softmax(np.asarray(outs[s.logits_index], np.float32)) for s in layout]
    if all(s.conf_index is None for s in layout[:-1]):
        return probs, None
    confs = [None if s.conf_index is None else np.asarray(outs[s.conf_index], np.float32).reshape(-1)
             for s in layout[:-1]]
    return probs, confs
