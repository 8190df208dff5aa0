"""Still images in and out as uint8 HxWx3 RGB: alpha composited over white (the colour under transparent
pixels is often garbage), 16 bit scaled to 8, JPEG EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import (
    PathArg, atomic_write_bytes, existing_file, make_output_folder, output_extension, show,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def check_frame(img, what: str = "image") -> np.ndarray:
    """Programming errors (wrong dtype/shape) are TypeError/ValueError, not user errors."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(
            f"{what} must be uint8, got {img.dtype} (convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{what} must be HxWx3 RGB, got shape {img.shape}")
    return img


def read_image(path: PathArg) -> np.ndarray:
    """Load any common still image as uint8 HxWx3 RGB (alpha over white, 16 bit scaled, first GIF frame)."""
    p = existing_file(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ZoomdreamError(f"cannot read '{show(p)}': {e.strerror or e} (check file permissions)") from None
    data = np.frombuffer(raw, np.uint8)
    img = None
    try:
        # JPEG cannot carry alpha, and IMREAD_COLOR is the mode that applies EXIF orientation.
        flags = cv2.IMREAD_COLOR if raw[:3] == b"\xff\xd8\xff" else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is not None:
        if img.ndim == 3 and img.shape[2] == 3:
            img = img[:, :, ::-1]
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, [2, 1, 0, 3]]
    else:
        # OpenCV builds without GIF (or other) support: let imageio/Pillow try; it returns RGB(A) already.
        try:
            img = np.asarray(iio.imread(raw, index=0, plugin="pillow"))
        except Exception:
            raise ZoomdreamError(
                f"cannot read '{show(p)}': not a readable image (use PNG, JPEG, WEBP, BMP, TIFF or GIF)"
            ) from None
    return _to_rgb8(img, p)


def _to_rgb8(img: np.ndarray, p: Path) -> np.ndarray:
    """Gray/gray+alpha/RGB/RGBA of any depth -> uint8 RGB, alpha composited over white."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.size == 0:
        raise ZoomdreamError(
            f"cannot read '{show(p)}': unsupported image layout {img.shape} (save it as RGB PNG)"
        )
    if img.dtype == np.uint8:
        top = 255.0
    elif img.dtype == np.uint16:
        top = 65535.0
    elif img.dtype == np.bool_:
        img, top = img.astype(np.uint8), 1.0
    elif np.issubdtype(img.dtype, np.floating):
        img, top = np.clip(np.nan_to_num(img), 0.0, 1.0), 1.0
    else:
        raise ZoomdreamError(
            f"cannot read '{show(p)}': unsupported pixel type {img.dtype} (save it as 8-bit PNG)"
        )

    channels = img.shape[2]
    color = img[:, :, :3] if channels >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    if channels in (2, 4):
        alpha = img[:, :, -1:].astype(np.float32) / top
        out = color.astype(np.float32) * alpha + top * (1.0 - alpha)
    elif img.dtype == np.uint8:
        return np.ascontiguousarray(color)
    else:
        out = color.astype(np.float32)
    return np.clip(np.rint(out * (255.0 / top)), 0, 255).astype(np.uint8)


def write_image(path: PathArg, img: np.ndarray) -> None:
    """Save uint8 HxWx3 RGB; the format follows the extension and the file appears only when complete."""
    p = Path(path)
    ext = output_extension(p, IMAGE_EXTENSIONS, "image")
    check_frame(img)
    make_output_folder(p)
    params = {
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
    }.get(ext, [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img[:, :, ::-1]), params)
    if not ok:
        raise ZoomdreamError(f"cannot write '{show(p)}': OpenCV could not encode {ext} (try .png)")
    atomic_write_bytes(p, buf.tobytes())


def fitted_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """The (width, height) ``fit_max_size`` makes of a ``width`` x ``height`` image: known before reading it."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_max_size(img: np.ndarray, max_size: int | None) -> np.ndarray:
    """Downscale so the longest side is at most ``max_size`` (never upscale)."""
    size = fitted_size(img.shape[1], img.shape[0], max_size)
    if size == (img.shape[1], img.shape[0]):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
