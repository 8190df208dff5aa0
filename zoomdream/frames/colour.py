"""The zoom's colour match: each channel's statistics pulled toward a reference (frame 0's), so long feedback
loops do not drift. ``color_match`` on the CPU, ``color_match_on_device`` its twin on an accelerator."""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from zoomdream import backend


def color_match(img: np.ndarray, reference_stats: tuple[np.ndarray, np.ndarray], strength: float) -> np.ndarray:
    """Move each channel's mean and std toward the reference's: long feedback loops otherwise drift to
    grey or to one saturated colour. One per-channel multiply-add, ``img * gain + offset``, in one OpenCV pass
    (numpy's several cost far more; figures: the Benchmarks page). Not clipped: values may leave [-1, 1] by a
    little, and ``to_uint8`` saturates them as a clip would (a pass fewer between two dreams)."""
    if strength <= 0:
        return img
    mean, std = stats(img)
    ref_mean, ref_std = reference_stats
    ratio = ref_std / std
    gain = 1.0 + strength * (ratio - 1.0)
    offset = strength * (ref_mean - mean * ratio)
    return cv2.transform(np.ascontiguousarray(img, np.float32), np.c_[np.diag(gain), offset])  # one pass


def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (OpenCV's single pass, far faster than numpy's here)."""
    mean, std = cv2.meanStdDev(np.ascontiguousarray(img, dtype=np.float32))
    return mean.ravel(), std.ravel() + 1e-6


def color_match_on_device(image, reference: tuple[np.ndarray, np.ndarray], strength: float):
    """``color_match`` on a tensor: each channel's mean and standard deviation moved toward the reference's by
    ``strength``, clipped to [-1, 1]."""
    if strength <= 0:
        return image
    ref_mean, ref_std = (np.asarray(v, np.float32) for v in reference)
    return _device_match()(image, ref_mean, ref_std, np.float32(strength))


@cache
def _device_match():
    from keras import ops

    def match(image, ref_mean, ref_std, strength):
        mean = ops.mean(image, axis=(0, 1))
        std = ops.std(image, axis=(0, 1)) + 1e-6
        ratio = ref_std / std
        gain = 1.0 + strength * (ratio - 1.0)
        offset = strength * (ref_mean - mean * ratio)
        return ops.clip(image * gain + offset, -1.0, 1.0)

    return backend.compile_function(match)
