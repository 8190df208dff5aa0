"""The engine: loss rises, every pixel moves every step, octaves keep the size, seeds reproduce."""
import numpy as np
import pytest

from zoomdream.ascent import DreamSettings, octave_shapes, tile_grid


@pytest.mark.parametrize("size,tile", [(700, 256), (300, 256), (256, 256), (100, 256), (1080, 512), (1, 8)])
def test_tile_grid_covers_every_pixel_once(size, tile):
    length, starts, keep = tile_grid(size, tile)
    assert length <= tile
    owners = np.zeros(size, int)
    for start, k in zip(starts, keep):
        owners[start + k:start + length] += 1
    assert (owners == 1).all()


def test_tile_grid_avoids_waste():
    length, starts, _ = tile_grid(1080, 512)
    assert length == 360 and len(starts) == 3


def loss_of(dreamer, image):
    _, loss = dreamer.step(image, np.zeros(2, np.int32), 0.0)
    return float(loss)


def test_loss_rises_over_steps(dreamer, photo):
    before = loss_of(dreamer, photo)
    after = loss_of(dreamer, dreamer.ascend(photo, 5, 0.02, np.random.default_rng(0)))
    assert after > before * 1.2


def test_every_pixel_changes_in_one_step_at_non_tile_multiple(dreamer):
    rng = np.random.default_rng(1)
    image = rng.uniform(-0.5, 0.5, (75, 150, 3)).astype(np.float32)  # 64-px tiles: 2 x 3 tiles, ragged
    stepped, _ = dreamer.step(image, np.array([13, 41]), 0.02)
    changed = np.abs(np.asarray(stepped) - image).max(axis=2) > 0
    assert changed.all(), f"{(~changed).sum()} pixels untouched"


def test_octave_output_keeps_input_shape(dreamer, photo):
    out = dreamer.dream(photo[:63, :91], DreamSettings(octaves=3, octave_scale=1.3, steps=2), seed=0)
    assert out.shape == (63, 91, 3)
    assert out.min() >= -1 and out.max() <= 1
    assert np.abs(out - photo[:63, :91]).mean() > 0.01


def test_octave_shapes_smallest_first():
    assert octave_shapes(300, 451, 3, 1.5) == [(133, 200), (200, 301), (300, 451)]


def test_same_seed_same_output_other_seed_differs(dreamer, photo):
    settings = DreamSettings(octaves=2, steps=3)
    a = dreamer.dream(photo, settings, seed=7)
    b = dreamer.dream(photo, settings, seed=7)
    c = dreamer.dream(photo, settings, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-4


def test_max_loss_stops_early(dreamer, photo):
    calls = []
    dreamer.ascend(photo, 10, 0.02, np.random.default_rng(0), max_loss=0.0, on_step=lambda: calls.append(1))
    assert len(calls) == 1


def test_bfloat16_precision_climbs_with_float32_image(photo):
    from zoomdream.ascent import Dreamer
    from zoomdream.models import load_model
    from zoomdream.objective import make_objective

    dreamer = Dreamer(load_model("efficientnet-lite0", precision="bfloat16"), make_objective("block3"), tile=64)
    image = photo[:32, :32]
    before = loss_of(dreamer, image)
    climbed = dreamer.ascend(image, 3, 0.02, np.random.default_rng(0))
    assert np.asarray(climbed).dtype == np.float32
    assert loss_of(dreamer, climbed) > before
