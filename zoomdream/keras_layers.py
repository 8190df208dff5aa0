"""The Keras layers of zoomdream's own, apart from ``models`` so that module loads without Keras."""
from __future__ import annotations

import keras


class CaffePreprocess(keras.layers.Layer):
    """[-1, 1] RGB -> 0..255 BGR minus the ImageNet mean (VGG and ResNet50's ``caffe`` mode)."""

    def call(self, inputs):
        bgr = keras.ops.flip((inputs + 1.0) * 127.5, axis=-1)
        return bgr - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=bgr.dtype)


class FoldedAway(keras.layers.Layer):
    """Stands where a folded batch norm was (same name, same call signature), passing its input through."""

    def call(self, inputs, training=None, mask=None):
        return inputs
