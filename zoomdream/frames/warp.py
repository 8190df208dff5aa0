"""The per-frame camera transform of the infinite zoom: the 2x3 map of zoom, rotation and translation, and the
warps that apply it (reflecting at the borders, or evenly sharp where a zoom out uncovers new pixels), with
``warp_evenly_on_device``, the even warp's device twin.
"""
from __future__ import annotations

import math
from functools import cache, lru_cache

import cv2
import numpy as np

from zoomdream import backend
from zoomdream.errors import ZoomdreamError

def transform_matrix(
    width: int,
    height: int,
    *,
    zoom: float = 1.0,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """The 2x3 forward affine map (source pixel -> output pixel) for cv2.warpAffine: zoom and rotate about
    ``center``, then translate.

    ``angle`` is counter-clockwise in degrees as seen on screen (y points down), like cv2.getRotationMatrix2D.
    """
    if width <= 0 or height <= 0:
        raise ZoomdreamError(f"frame size must be positive (got {width}x{height})")
    if not (math.isfinite(zoom) and zoom > 0):
        raise ZoomdreamError(f"zoom must be a positive number (got {zoom}); use values near 1, such as 1.02")
    if not all(math.isfinite(v) for v in (angle, tx, ty)):
        raise ZoomdreamError(f"angle and translation must be finite numbers (got {angle}, {tx}, {ty})")
    cx, cy = ((width - 1) / 2.0, (height - 1) / 2.0) if center is None else (float(center[0]), float(center[1]))
    theta = math.radians(angle)
    a, b = zoom * math.cos(theta), zoom * math.sin(theta)
    return np.array(
        [
            [a, b, (1 - a) * cx - b * cy + tx],
            [-b, a, b * cx + (1 - a) * cy + ty],
        ],
        dtype=np.float64,
    )


def transform_frame(
    img: np.ndarray,
    *,
    zoom: float = 1.0,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Zoom, rotate and shift an HxWxC frame in one bilinear resample, reflecting at the borders so that
    zooming out never leaves black corners. Returns the same dtype and shape; identity returns a copy."""
    if img.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"transform_frame supports uint8, float32 and float64 images, got {img.dtype}")
    if zoom == 1 and angle == 0 and tx == 0 and ty == 0:
        return img.copy()
    height, width = img.shape[:2]
    return warp_affine(img, as_3x3(transform_matrix(width, height, zoom=zoom, angle=angle, tx=tx, ty=ty,
                                                    center=center)))


def as_3x3(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine map as 3x3, so maps compose by matrix product."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def warp_affine(img: np.ndarray, matrix: np.ndarray, *, reflect: bool = True) -> np.ndarray:
    """Apply a 3x3 forward affine map (source pixel -> output pixel) to an HxW(xC) frame, bilinear, dtype and
    shape kept; ``reflect`` False leaves zeros where the map brings nothing in (use it for validity masks)."""
    height, width = img.shape[:2]
    border = cv2.BORDER_REFLECT_101 if reflect else cv2.BORDER_CONSTANT
    out = cv2.warpAffine(np.ascontiguousarray(img), matrix[:2], (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=border)
    return out.reshape(img.shape)


def warp_evenly(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``warp_affine``, then each pixel blurred along x and y by what its bilinear weights left out, so every
    pixel gets the blur of a half-pixel offset (variance 1/4 per axis; a ``[1/4, 1/2, 1/4]`` kernel has 1/2).

    Bilinear resampling blurs by ``f * (1 - f)`` for a sample ``f`` past a whole pixel: on the row and column
    through the zoom's fixed point ``f`` stays near 0 frame after frame, so the feedback kept their detail and
    faint lines crossed the centre of long zooms (``scripts/zoom_health.py``'s centre-line ratio; figures: the
    Benchmarks page)."""
    out = warp_affine(np.asarray(image, np.float32), matrix)
    channels = image.shape[2] if image.ndim == 3 else 0
    for kernel, missing in zip(EVEN_DIFFERENCES, _missing_blur(image.shape[:2], _key(matrix), channels)):
        # out + missing * (blur(out) - out), in two OpenCV passes (numpy's four cost a frame far more)
        cv2.accumulateProduct(cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT_101), missing, out)
    return out


EVEN_KERNELS = (np.array([[0.25, 0.5, 0.25]], np.float32), np.array([[0.25], [0.5], [0.25]], np.float32))
EVEN_DIFFERENCES = tuple(kernel - (kernel == 0.5) for kernel in EVEN_KERNELS)  # blur(out) - out, in one kernel


def missing_blur(shape: tuple[int, int], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the share of ``EVEN_KERNELS``' blur along x and along y that bilinear sampling under
    ``matrix`` left out (see ``warp_evenly``). Cached: a zoom's motion is mostly the same every frame, and
    these maps cost more than the warp."""
    return _missing_blur(tuple(shape), _key(matrix))


def _key(matrix: np.ndarray) -> bytes:
    return np.asarray(matrix, np.float64).tobytes()


@lru_cache(maxsize=4)  # the maps and their 3-channel copies, for the last two motions
def _missing_blur(shape: tuple[int, int], matrix: bytes, channels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The maps, repeated over ``channels`` (OpenCV's per-pixel products take them at the image's shape)."""
    if channels:
        return tuple(np.repeat(m[..., None], channels, axis=2) for m in _missing_blur(shape, matrix))
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(np.float32)
    back = np.linalg.inv(np.frombuffer(matrix).reshape(3, 3))
    maps = []
    for axis in (0, 1):  # x, then y
        source = back[axis, 0] * x + back[axis, 1] * y + back[axis, 2]
        f = source - np.floor(source)
        maps.append((2.0 * (0.25 - f * (1.0 - f))).astype(np.float32))
    return tuple(maps)


def warp_evenly_on_device(image, matrix: np.ndarray):
    """``warp_evenly`` on a tensor: the 3x3 forward map (source pixel -> output pixel), bilinear, then the blur
    bilinear weights left out added per pixel. Borders are mirrored repeating the edge pixel, where OpenCV's
    BORDER_REFLECT_101 does not (Keras offers only this one on every backend); the two differ only where the
    map reaches outside the frame."""
    inverse = np.linalg.inv(matrix)  # affine_transform takes the map from output pixels back to the source
    transform = np.array([*inverse[0], *inverse[1], 0.0, 0.0], np.float32)
    shape = tuple(image.shape[:2])
    return _device_warp()(image, transform, *_missing_blur_on_device(shape, _key(matrix)))


@lru_cache(maxsize=2)
def _missing_blur_on_device(shape: tuple[int, int], matrix: bytes):
    """``missing_blur``'s maps, on the device for as long as the motion stays the same."""
    from keras import ops

    return tuple(ops.convert_to_tensor(m[..., None]) for m in _missing_blur(shape, matrix))


@cache
def _device_warp():
    from keras import ops

    def warp(image, transform, missing_x, missing_y):
        out = ops.image.affine_transform(image[None], transform[None], interpolation="bilinear",
                                         fill_mode="reflect")[0]
        for axis, missing in ((1, missing_x), (0, missing_y)):  # as warp_evenly, x then y
            padded = ops.pad(out, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="reflect")
            size = out.shape[axis]
            before, after = (ops.take(padded, ops.arange(k, k + size), axis=axis) for k in (0, 2))
            out = out + missing * (0.25 * before + 0.25 * after - 0.5 * out)
        return out

    return backend.compile_function(warp)
