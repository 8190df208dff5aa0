"""How to climb: the tiled gradient-ascent step, the step loop and the octave pyramid.

Images here are float32 RGB in [-1, 1], shape (H, W, 3). One compiled step does, without leaving the
graph: roll the image by a random shift, cut it into equal tiles that cover every pixel, take each tile's
input gradient of the objective (a loop in the graph over one copy of the model, so a 4K frame compiles in
seconds), stitch the gradients back, un-roll, normalise by the standard deviation, step and clip. Tile
positions are fixed by the image size, so the step compiles once per size and is reused for every later
step, octave and frame of that size.

Tiles: for a side of ``n`` pixels and a tile of ``t``, use ``k = ceil(n / t)`` tiles of ``ceil(n / k)``
pixels, the last one flush with the far edge. Every pixel gets its gradient from exactly one tile (the few
overlapping pixels take the later tile's), and no tile is mostly wasted padding (1080 rows with 512-px tiles
become 3 tiles of 360, not 3 of 512). The random roll moves the seams every step.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import numpy as np

from zoomdream import backend
from zoomdream.errors import ZoomdreamError
from zoomdream.models import LoadedModel
from zoomdream.objective import Objective
from zoomdream.settings import DreamSettings


def tile_grid(size: int, tile: int) -> tuple[int, list[int], list[int]]:
    """Tile length, tile starts and, per tile, the first row/column whose gradient it contributes."""
    count = math.ceil(size / tile)
    length = math.ceil(size / count)
    starts = [i * length for i in range(count - 1)] + [size - length]
    keep = [0] + [starts[i - 1] + length - starts[i] for i in range(1, count)]
    return length, starts, keep


def _tiled_step(objective: Objective, tile: int, primitives, image, shift, step_size, weights):
    from keras import ops

    height, width = image.shape[0], image.shape[1]
    th, ys, keep_y = tile_grid(height, tile)
    tw, xs, keep_x = tile_grid(width, tile)
    rolled = ops.roll(image, shift, axis=(0, 1))

    def tile_loss(t):
        return objective.loss(primitives.call_model(t[None]), weights, t)

    def tile_gradient(corner):
        return primitives.value_and_grad(tile_loss, ops.slice(rolled, (corner[0], corner[1], 0), (th, tw, 3)))

    if len(ys) * len(xs) == 1:
        loss, grad = tile_gradient((0, 0))
    else:  # one model in the program, tiles in turn; then each keeps the pixels it owns
        corners = ops.convert_to_tensor([(y, x) for y in ys for x in xs], "int32")
        losses, grads = primitives.map_sequential(tile_gradient, corners)
        rows = [ops.concatenate([grads[r * len(xs) + c][ky:, kx:] for c, kx in enumerate(keep_x)], axis=1)
                for r, ky in enumerate(keep_y)]
        grad, loss = ops.concatenate(rows, axis=0), ops.mean(losses)
    grad = ops.roll(grad, -shift, axis=(0, 1))
    grad = grad / (ops.std(grad) + 1e-8)
    image = ops.clip(image + step_size * grad, -1.0, 1.0)
    return image, loss


def octave_shapes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave up to the input's own size."""
    return [
        (max(1, round(height / scale ** i)), max(1, round(width / scale ** i)))
        for i in reversed(range(octaves))
    ]


def _resize(image, shape: tuple[int, int]):
    from keras import ops

    if tuple(image.shape[:2]) == shape:
        return image
    return ops.image.resize(image, shape, interpolation="bilinear", antialias=True)


class Dreamer:
    """A dream engine compiled for one model and objective; build once, reuse for every frame."""

    def __init__(self, model: LoadedModel, objective: Objective, tile: int = 512):
        self.model = model
        self.objective = objective
        self.tile = tile
        self.dreams = 0  # calls of dream(): what progress counts besides frames (a frame may take 0 or many)
        self.feature_model = model.feature_model(objective.layers)
        self._step = backend.compile_step(self.feature_model, partial(_tiled_step, objective, tile))

    def step(self, image, shift: np.ndarray, step_size: float, weights: np.ndarray | None = None):
        """One ascent step; returns the new image (backend tensor) and the mean tile loss."""
        from keras import ops

        weights = self.objective.weights() if weights is None else np.asarray(weights, np.float32)
        return self._step(
            ops.convert_to_tensor(image, "float32"),
            ops.convert_to_tensor(np.asarray(shift, np.int32)),
            ops.convert_to_tensor(np.float32(step_size)),
            ops.convert_to_tensor(weights),
        )

    def ascend(self, image, steps: int, step_size: float, rng: np.random.Generator,
               weights: np.ndarray | None = None, max_loss: float | None = None,
               on_step: Callable[[], None] | None = None):
        """``steps`` ascent steps with fresh random rolls; stops early once the loss passes ``max_loss``."""
        height, width = image.shape[0], image.shape[1]
        for _ in range(steps):
            shift = rng.integers(0, (height, width))
            image, loss = self.step(image, shift, step_size, weights)
            if on_step:
                on_step()
            if max_loss is not None and float(loss) > max_loss:
                break
        return image

    def dream(self, image: np.ndarray, settings: DreamSettings = DreamSettings(), seed: int | None = 0,
              weights: np.ndarray | None = None, rng: np.random.Generator | None = None,
              on_step: Callable[[], None] | None = None, on_device: bool = False) -> np.ndarray:
        """Dream a [-1, 1] image over the octave pyramid, re-injecting the detail each downscale lost.

        At each octave the image is that octave's downscale of the original plus the dream's own detail
        carried up from the octave below, so the output keeps the input's size and sharpness. ``image`` may
        be a backend tensor; ``on_device`` returns one too, left on the device for the next step's work.
        """
        from keras import ops

        self.dreams += 1
        rng = rng if rng is not None else np.random.default_rng(seed)
        original = ops.convert_to_tensor(image, "float32")
        shapes = octave_shapes(image.shape[0], image.shape[1], settings.octaves, settings.octave_scale)
        detail = None
        for shape in shapes:
            base = _resize(original, shape)
            current = base if detail is None else base + _resize(detail, shape)
            current = self.ascend(current, settings.steps, settings.step_size, rng, weights,
                                  settings.max_loss, on_step)
            detail = current - base
        result = ops.clip(original + detail, -1.0, 1.0)
        if not on_device:
            result = np.asarray(ops.convert_to_numpy(result))
        finite = bool(ops.all(ops.isfinite(result))) if on_device else np.isfinite(result).all()
        if not finite:  # a NaN step or weights: never write a broken frame
            raise ZoomdreamError("the dream became NaN (not a number): lower --step-size, or check the model's "
                                 "weights file")
        return result
