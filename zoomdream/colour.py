"""The zoom's colour match on the CPU: each channel's statistics pulled toward a reference (frame 0's), so long
feedback loops do not drift. ``device.color_match`` is its twin on an accelerator."""
from __future__ import annotations

import cv2
import numpy as np


def color_match(img: np.ndarray, reference_stats: tuple[np.ndarray, np.ndarray], strength: float) -> np.ndarray:
    """Move each channel's mean and std toward the reference's: long feedback loops otherwise drift to
    grey or to one saturated colour. One per-channel multiply-add, ``img * gain + offset``, in one OpenCV pass
    (numpy's took 21 ms a 1280x720 frame). Not clipped: values may leave [-1, 1] by a little, and ``to_uint8``
    saturates them as a clip would (a pass fewer between two dreams)."""
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
