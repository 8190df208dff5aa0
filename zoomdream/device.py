"""A zoom frame's per-frame arithmetic on the backend's device: the warp, the colour match and the 8-bit
conversion, in Keras ops. On a GPU the dream takes 0.03-0.05 s a frame; doing these on the CPU (and moving
the frame across and back for them) cost as much again. So where the backend has an accelerator, a frame goes
to the device once as uint8 and comes back once as uint8, to be kept. OpenCV does the same on a CPU.

The maps match ``motion.warp_affine`` (bilinear, mirrored borders), ``zoom.color_match`` and
``ascent.to_uint8`` to float rounding, so a frame differs from the CPU path's by at most a level here and there.
"""
from __future__ import annotations

import numpy as np
from keras import ops


def to_device(frame: np.ndarray):
    """A uint8 frame as a [-1, 1] float32 tensor on the device."""
    return ops.convert_to_tensor(frame, "float32") / 127.5 - 1.0


def warp_affine(image, matrix: np.ndarray):
    """``motion.warp_affine`` on a tensor: the 3x3 forward map (source pixel -> output pixel), bilinear,
    borders mirrored (repeating the edge pixel, where OpenCV's BORDER_REFLECT_101 does not: Keras offers only
    this one on every backend; the two differ only where the map reaches outside the frame)."""
    inverse = np.linalg.inv(matrix)  # affine_transform takes the map from output pixels back to the source
    transform = np.array([*inverse[0], *inverse[1], 0.0, 0.0], np.float32)
    return ops.image.affine_transform(image[None], transform[None], interpolation="bilinear",
                                      fill_mode="reflect")[0]


def color_match(image, reference: tuple[np.ndarray, np.ndarray], strength: float):
    """``zoom.color_match`` on a tensor: each channel's mean and standard deviation moved toward the
    reference's by ``strength``, clipped to [-1, 1]."""
    if strength <= 0:
        return image
    mean = ops.mean(image, axis=(0, 1))
    std = ops.std(image, axis=(0, 1)) + 1e-6
    ref_mean, ref_std = (ops.convert_to_tensor(np.asarray(v, np.float32)) for v in reference)
    ratio = ref_std / std
    gain = 1.0 + strength * (ratio - 1.0)
    offset = strength * (ref_mean - mean * ratio)
    return ops.clip(image * gain + offset, -1.0, 1.0)


def to_host(image) -> tuple[np.ndarray, object]:
    """``ascent.to_uint8`` on the device: the uint8 frame, brought back once to be kept, and the same frame as
    a [-1, 1] tensor left on the device (equal to ``to_device`` of it) for the next frame's warp."""
    levels = ops.clip(ops.round((image + 1.0) * 127.5), 0.0, 255.0)
    return ops.convert_to_numpy(ops.cast(levels, "uint8")), levels / 127.5 - 1.0
