"""Builds a genome into a flat Keras 3 functional EENN (the space's backbone family does the layers).

Standard Keras layers only, so the model converts to full-int8 TFLite and saves/loads with plain
`keras.models.load_model`. Output names and order follow `nachos_tf.naming`; exit heads come from
`nachos_tf.heads`, backbones from `nachos_tf.backbones`.
"""
from __future__ import annotations

from typing import Optional

import keras

from .genome import Genome
from .heads import attach_exit_head  # noqa: F401  (re-exported: nachos_tf.builder.attach_exit_head)
from .space import SearchSpace


def build_eenn(space: SearchSpace, genome: Genome, name: Optional[str] = None) -> keras.Model:
    """Genome -> keras.Model with outputs exit_0, [exit_0_conf], ..., final (class logits).

    Args:
        space: The search space the genome belongs to.
        genome: A canonical member of the space (call `space.repair` on hand-edited genomes).
        name: The Keras model name (default "nachos_eenn").

    Returns:
        A flat functional `keras.Model`, one output per enabled exit (and its confidence), final last.

    Raises:
        GenomeError: the genome is not a valid member of the space (with every reason).
    """
    space.validate(genome)
    return space.family.build(space, genome, name or "nachos_eenn")
