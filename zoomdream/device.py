"""A zoom frame's per-frame arithmetic on the backend's device: the warp, the colour match and the 8-bit
conversion, in Keras ops compiled into one program each. On a GPU the dream takes 0.03-0.05 s a frame; doing
these on the CPU (and moving the frame across and back for them) cost as much again. So where the backend has
an accelerator, a frame goes to the device once as uint8 and comes back once as uint8, to be kept. OpenCV
does the same on a CPU.

The maps match ``motion.warp_evenly`` (bilinear, evened; mirrored borders, see ``warp_evenly``),
``colour.color_match`` and ``ascent.to_uint8`` to float rounding, so a frame differs from the CPU path's by at
most a level here and there.
"""
from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from keras import ops

from zoomdream import backend
from zoomdream.motion import missing_blur


def to_device(frame):
    """A uint8 frame (an array here, or a tensor on the device) as a [-1, 1] float32 tensor on the device.
    One compiled program for both, so a frame kept and read back on resume gives the bits of the frame
    left on the device."""
    return _compiled()[0](frame)


def warp_evenly(image, matrix: np.ndarray):
    """``motion.warp_evenly`` on a tensor: the 3x3 forward map (source pixel -> output pixel), bilinear, then
    the blur bilinear weights left out added per pixel. Borders are mirrored repeating the edge pixel, where
    OpenCV's BORDER_REFLECT_101 does not (Keras offers only this one on every backend); the two differ only
    where the map reaches outside the frame."""
    inverse = np.linalg.inv(matrix)  # affine_transform takes the map from output pixels back to the source
    transform = np.array([*inverse[0], *inverse[1], 0.0, 0.0], np.float32)
    shape = tuple(image.shape[:2])
    return _compiled()[1](image, transform, *_missing_blur(shape, np.asarray(matrix, np.float64).tobytes()))


@lru_cache(maxsize=2)
def _missing_blur(shape: tuple[int, int], matrix: bytes):
    """``motion.missing_blur``'s maps, on the device for as long as the motion stays the same."""
    maps = missing_blur(shape, np.frombuffer(matrix).reshape(3, 3))
    return tuple(ops.convert_to_tensor(m[..., None]) for m in maps)


def color_match(image, reference: tuple[np.ndarray, np.ndarray], strength: float):
    """``colour.color_match`` on a tensor: each channel's mean and standard deviation moved toward the
    reference's by ``strength``, clipped to [-1, 1]."""
    if strength <= 0:
        return image
    ref_mean, ref_std = (np.asarray(v, np.float32) for v in reference)
    return _compiled()[2](image, ref_mean, ref_std, np.float32(strength))


def to_host(image) -> tuple[np.ndarray, object]:
    """``ascent.to_uint8`` on the device: the uint8 frame, brought back once to be kept, and the same frame as
    a [-1, 1] tensor left on the device (equal to ``to_device`` of it) for the next frame's warp."""
    frame = _compiled()[3](image)
    return ops.convert_to_numpy(frame), to_device(frame)


@cache
def _compiled():
    def unit(frame):
        return ops.cast(frame, "float32") / 127.5 - 1.0

    def warp(image, transform, missing_x, missing_y):
        out = ops.image.affine_transform(image[None], transform[None], interpolation="bilinear",
                                         fill_mode="reflect")[0]
        for axis, missing in ((1, missing_x), (0, missing_y)):  # as motion.warp_evenly, x then y
            padded = ops.pad(out, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="reflect")
            size = out.shape[axis]
            before, after = (ops.take(padded, ops.arange(k, k + size), axis=axis) for k in (0, 2))
            out = out + missing * (0.25 * before + 0.25 * after - 0.5 * out)
        return out

    def match(image, ref_mean, ref_std, strength):
        mean = ops.mean(image, axis=(0, 1))
        std = ops.std(image, axis=(0, 1)) + 1e-6
        ratio = ref_std / std
        gain = 1.0 + strength * (ratio - 1.0)
        offset = strength * (ref_mean - mean * ratio)
        return ops.clip(image * gain + offset, -1.0, 1.0)

    def levels(image):
        return ops.cast(ops.clip(ops.round((image + 1.0) * 127.5), 0.0, 255.0), "uint8")

    return tuple(backend.compile_function(fn) for fn in (unit, warp, match, levels))
