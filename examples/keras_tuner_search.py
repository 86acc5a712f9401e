"""Search your own backbone: a keras-tuner build(hp) function with nachos_tf.ExitPoint markers.

Every hyperparameter the function registers becomes a backbone gene; every ExitPoint becomes a candidate
exit point whose head, width and pooling the search chooses. Runs a small search on real Fashion-MNIST:
    .venv/bin/python examples/keras_tuner_search.py
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ logs off (nachos_tf does the same)

import nachos_tf as nt  # noqa: E402  (first: it imports TensorFlow without the start-up lines)
import keras  # noqa: E402


def build(hp):
    """A plain CNN whose widths and depth are tuned; ExitPoint marks where an early exit may go."""
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)                     # the EENN takes raw pixels
    for stage in range(3):
        width = hp.Choice(f"width_{stage}", [8, 16, 24])
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if hp.Boolean(f"extra_conv_{stage}"):
            x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = nt.ExitPoint()(x)                                          # a candidate exit point
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))               # final class logits


if __name__ == "__main__":
    data = nt.data.load("fashion_mnist").subset(train=8000, val=2000, test=2000, seed=0)
    space = nt.SearchSpace.from_hypermodel(build, data.input_shape, data.num_classes)
    print(space)
    result = nt.search(space, data, nt.Constraints(min_accuracy=0.75, max_macs=150e3), budget="quick",
                       generations=2, population=6, seed=0, out_dir="runs/keras_tuner_example")
    print(result.table())
