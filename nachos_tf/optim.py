"""`LeanAdam`: Keras' Adam with the same arithmetic, traced as a few TensorFlow ops per variable.

Keras 3's TensorFlow backend traces Adam's update through `tf.distribute`'s per-variable ``update`` and about
twenty Keras ops per variable, and recomputes the step's scalars (bias corrections, step size) for every
variable. For an EENN of ~180 variables that is about 8.5 s of graph tracing per `fit` call on a 2-core
machine, every time a model starts a training phase: the final stage's short fine-tunes (one epoch per
phase) spent as long tracing the optimizer as training. `LeanAdam` computes the scalars once per step and
updates each variable with the same element-wise TensorFlow ops, in the same order, as `keras.optimizers.Adam`,
so its results are bit-identical (tested against it); anything it does not cover (AMSGrad, a non-float32
variable, sparse gradients, a distribution strategy) goes through Keras' own path.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

__all__ = ["LeanAdam"]


class LeanAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same arguments, same results) whose update traces quickly.

    Args:
        *args, **kwargs: those of `keras.optimizers.Adam`.
    """

    def _backend_update_step(self, grads: Sequence[Any], trainable_variables: Sequence[Any], learning_rate: Any) -> None:
        tf_vars = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        if (self.amsgrad or tf.distribute.has_strategy() or any(v.dtype != tf.float32 for v in tf_vars)
                or any(isinstance(g, tf.IndexedSlices) for g in grads)):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        f32 = tf.float32
        lr = tf.cast(learning_rate, f32)
        local_step = tf.cast(self.iterations + 1, f32)
        beta_1_power = tf.pow(tf.cast(self.beta_1, f32), local_step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, f32), local_step)
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)      # as Keras: the same scalar ops
        one_minus_b1 = tf.constant(1 - self.beta_1, f32)
        one_minus_b2 = tf.constant(1 - self.beta_2, f32)
        eps = tf.constant(self.epsilon, f32)
        for grad, var, key_var in zip(grads, tf_vars, trainable_variables):
            i = self._get_variable_index(key_var)
            m, v = self._momentums[i].value, self._velocities[i].value
            g = tf.cast(grad, f32)
            m.assign_add(tf.multiply(tf.subtract(g, m), one_minus_b1))
            v.assign_add(tf.multiply(tf.subtract(tf.square(g), v), one_minus_b2))
            var.assign_sub(tf.divide(tf.multiply(m, alpha), tf.add(tf.sqrt(v), eps)))
        return None
