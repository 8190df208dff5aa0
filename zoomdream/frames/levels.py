"""8-bit conversion between uint8 RGB frames and the engine's float32 images in [-1, 1]: ``to_unit`` and
``to_uint8`` on the CPU, ``to_device`` and ``to_host`` their twins on an accelerator."""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from zoomdream import backend


def to_unit(img_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1], the engine's image convention, in one OpenCV pass: numpy's three cost
    a good part of a GPU's dream (figures: the Benchmarks page)."""
    img = np.ascontiguousarray(img_uint8)
    return cv2.addWeighted(img, 1 / 127.5, img, 0.0, -1.0, dtype=cv2.CV_32F).reshape(img.shape)


def to_uint8(img) -> np.ndarray:
    """[-1, 1] -> uint8 RGB, rounded and saturated, in one OpenCV pass where numpy needs five (figures: the
    Benchmarks page)."""
    if not isinstance(img, np.ndarray):
        from keras import ops

        img = ops.convert_to_numpy(img)
    arr = np.ascontiguousarray(img, dtype=np.float32)
    return cv2.addWeighted(arr, 127.5, arr, 0.0, 127.5, dtype=cv2.CV_8U).reshape(arr.shape)


def to_device(frame):
    """``to_unit`` on the device: a uint8 frame (an array here, or a tensor on the device) as a [-1, 1] float32
    tensor there. One compiled program for both, so a frame kept and read back on resume gives the bits of the
    frame left on the device."""
    return _device_levels()[0](frame)


def to_host(image) -> tuple[np.ndarray, object]:
    """``to_uint8`` on the device: the uint8 frame, brought back once to be kept, and the same frame as a
    [-1, 1] tensor left on the device (equal to ``to_device`` of it) for the next frame's warp."""
    from keras import ops

    frame = _device_levels()[1](image)
    return ops.convert_to_numpy(frame), to_device(frame)


@cache
def _device_levels():
    from keras import ops

    def unit(frame):
        return ops.cast(frame, "float32") / 127.5 - 1.0

    def levels(image):
        return ops.cast(ops.clip(ops.round((image + 1.0) * 127.5), 0.0, 255.0), "uint8")

    return backend.compile_function(unit), backend.compile_function(levels)
