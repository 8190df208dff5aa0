"""Objectives: the layer syntax, and each kind of term climbs."""
import numpy as np
import pytest

from zoomdream.ascent import Dreamer
from zoomdream.errors import ZoomdreamError
from zoomdream.objective import LayerTerm, guide_features, make_objective, parse_layers


def test_parse_weighted_layers_and_channels():
    assert parse_layers("block10:1.0, block12:0.5,mixed4[37,40]:2,head") == (
        LayerTerm("block10", 1.0), LayerTerm("block12", 0.5), LayerTerm("mixed4", 2.0, (37, 40)),
        LayerTerm("head", 1.0))


@pytest.mark.parametrize("bad", ["block10:x", "block10:1:2", "", "mixed4[a]", "9layer"])
def test_bad_layer_specs_name_the_syntax(bad):
    with pytest.raises(ZoomdreamError, match="LAYER|number"):
        parse_layers(bad)


def climbs(lite0, objective, photo):
    dreamer = Dreamer(lite0, objective, tile=64)
    zero = np.zeros(2, np.int32)
    before = float(dreamer.step(photo, zero, 0.0)[1])
    after = float(dreamer.step(dreamer.ascend(photo, 4, 0.02, np.random.default_rng(0)), zero, 0.0)[1])
    return before, after


def test_single_channel_objective_climbs(lite0, photo):
    before, after = climbs(lite0, make_objective("block8[5]"), photo)
    assert after > before


def test_mean_loss_climbs(lite0, photo):
    before, after = climbs(lite0, make_objective("block8", loss="mean"), photo)
    assert after > before


def test_guide_objective_climbs(lite0, photo):
    objective = make_objective("block8")
    features = lite0.feature_model(objective.layers)
    guide = np.random.default_rng(0).uniform(-1, 1, (48, 48, 3)).astype(np.float32)
    before, after = climbs(lite0, objective.with_guide(guide_features(features, objective.layers, guide)), photo)
    assert after > before


def test_tv_weight_smooths(lite0, photo):
    from zoomdream.objective import total_variation

    plain = Dreamer(lite0, make_objective("block5"), tile=64).ascend(photo, 4, 0.03, np.random.default_rng(0))
    smooth = Dreamer(lite0, make_objective("block5", tv=50.0), tile=64).ascend(photo, 4, 0.03,
                                                                               np.random.default_rng(0))
    assert float(total_variation(smooth)) < float(total_variation(plain))
