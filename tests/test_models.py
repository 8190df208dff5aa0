"""The EfficientNet-Lite port is a working ImageNet classifier, and the registry explains what is missing."""
import os

import cv2
import imageio.v3 as iio
import keras
import numpy as np
import pytest

from zoomdream.efficientnet_lite import build_efficientnet_lite
from zoomdream.errors import ZoomdreamError
from zoomdream.models import BACKBONES, get_backbone, load_model, resolve_weights

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")


def build_classifier(name: str, resolution: int):
    weights = get_backbone(name).find_weights()
    image = keras.Input((resolution, resolution, 3))
    scaled = keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0)(image)
    return build_efficientnet_lite(weights, image, scaled, include_top=True)


@pytest.fixture(scope="module")
def classifier():
    return build_classifier("efficientnet-lite0", 224)


def top5(model, name):
    size = model.input_shape[1]
    img = iio.imread(os.path.join(SAMPLES, name))[..., :3]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return set(np.argsort(-model.predict(img[None], verbose=0)[0])[:5].tolist())


def test_port_sees_a_cat_in_chelsea(classifier):
    assert top5(classifier, "chelsea.png") & {281, 282, 283, 284, 285}


def test_port_sees_espresso_in_coffee(classifier):
    assert top5(classifier, "coffee.png") & {967, 968}


@pytest.mark.parametrize("name,resolution", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_bigger_lite_ports_classify_too(name, resolution):
    model = build_classifier(name, resolution)
    assert top5(model, "chelsea.png") & {281, 282, 283, 284, 285}
    assert top5(model, "coffee.png") & {967, 968}


def test_dream_input_convention_matches_classifier(lite0, classifier):
    """The dream model's own preprocessing ([-1, 1] in) gives the classifier's features."""
    img = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    dream_head = lite0.feature_model(["head"])(img / 127.5 - 1.0)
    reference = keras.Model(classifier.input, classifier.get_layer("head").output)(img)
    np.testing.assert_allclose(np.asarray(dream_head), np.asarray(reference), atol=1e-3)


def test_feature_model_stops_at_deepest_layer(lite0):
    names = {layer.name for layer in lite0.feature_model(["block3", "block5"]).layers}
    assert "block5" in names and "block6" not in names and "head" not in names


def test_unknown_layer_lists_valid_ones(lite0):
    with pytest.raises(ZoomdreamError, match=r"unknown layer 'block99'.*valid: stem, block0, block1"):
        lite0.feature_model(["block99"])


def test_unknown_model():
    with pytest.raises(ZoomdreamError, match="unknown model 'alexnet'.*efficientnet-lite0"):
        get_backbone("alexnet")


def test_missing_keras_weights_names_file_cache_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ZoomdreamError) as e:
        resolve_weights(BACKBONES["inception_v3"])
    message = str(e.value)
    assert "\n" not in message
    assert str(tmp_path / "models" / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5") in message
    assert "https://storage.googleapis.com/" in message and "--weights" in message


def test_keras_backbone_with_random_weights_has_its_layers():
    model = load_model("inception_v3", weights="random")
    assert model.layers == [f"mixed{i}" for i in range(11)]


def test_batch_norm_folding_keeps_the_function():
    from zoomdream.models import fold_batch_norm

    raw = get_backbone("mobilenet_v2").build(None)
    rng = np.random.default_rng(0)
    for layer in raw.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    folded = fold_batch_norm(raw)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    x = rng.uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(folded([x])), np.asarray(raw([x])), atol=1e-4)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_layer_table_matches_the_networks(name):
    """`zoomdream models` and the up-front layer checks read zoomdream/layers.py, not the networks: it must say
    what each built network has (regenerate it with `python scripts/layer_table.py`)."""
    from zoomdream.layers import LAYERS
    from zoomdream.models import measure_layers

    assert list(LAYERS) == list(BACKBONES)
    assert list(LAYERS[name].items()) == measure_layers(BACKBONES[name])


def test_model_cache_loads_once_and_a_bounded_one_lets_the_old_model_go_first(monkeypatch):
    """The studio's cache keeps every model; a cluster worker's (keep=1) holds one, dropped before the next loads."""
    import zoomdream.models
    from zoomdream.models import ModelCache

    loads = []
    monkeypatch.setattr(zoomdream.models, "load_model", lambda *key: loads.append((key, len(cache.loaded))) or key)
    cache = ModelCache({("given", None, "float32"): "preloaded"})
    assert cache.get("given", None, "float32") == "preloaded"
    assert cache.get("a", None, "float32") == cache.get("a", None, "float32") == ("a", None, "float32")
    assert cache.get("b", "w.h5", "bfloat16") and len(cache.loaded) == 3
    assert loads == [(("a", None, "float32"), 1), (("b", "w.h5", "bfloat16"), 2)]
    loads.clear()
    cache = ModelCache(keep=1)
    for name in ("a", "a", "b", "a"):
        assert cache.get(name, None, "float32") == (name, None, "float32")
    assert [(key[0], held) for key, held in loads] == [("a", 0), ("b", 0), ("a", 0)]  # nothing held at each load
