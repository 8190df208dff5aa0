"""Optical flow for temporally coherent video dreaming, and the warping-error flicker metric.

Dreaming each frame of a video independently flickers: the network hallucinates different detail every
frame. Instead, frame t starts from the previous *dreamed* frame O_{t-1}, moved onto the geometry of the
new source frame S_t. Flow is always measured between *source* frames, because dreamed frames are full of
invented texture that would fool the flow estimator.

Direction conventions (this is where bugs hide):

* Images are indexed ``img[y, x]``; flow fields are float32 ``H x W x 2`` with ``flow[..., 0]`` the x (column)
  offset and ``flow[..., 1]`` the y (row) offset, in pixels.
* Every flow here is a *backward* flow, defined on the grid of the frame you want to produce:
  ``flow_between(prev, curr)`` gives, for each pixel (x, y) of ``curr``, the point of ``prev`` it came from,
  ``(x + flow[y, x, 0], y + flow[y, x, 1])``. If the scene moves 3 px right and 2 px up between ``prev`` and
  ``curr``, every such flow vector is (-3, +2).
* ``warp(img, flow)`` samples ``img`` at ``grid + flow``, so ``warp(prev, flow_between(prev, curr))`` looks like
  ``curr``. No forward splatting happens anywhere, so the result has no holes; pixels with no true source
  (newly revealed, or from outside the frame) get *some* colour, which is why the consistency mask exists.
* ``flow_between(curr, prev)`` is the opposite flow, defined on ``prev``'s grid (prev -> curr). The
  forward-backward check follows a pixel of ``curr`` to ``prev`` and back; where it does not come home, the
  pixel is occluded or newly revealed and the warped value there is junk.
"""
from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Iterable

import cv2
import numpy as np

from zoomdream.errors import ZoomdreamError

METHODS = ("dis", "farneback", "none")


PHOTOMETRIC = 50.0  # Lai et al.'s alpha, on [0, 1] colour values
ALPHA, BETA = 0.01, 0.5  # the forward-backward check's tolerance (consistency_mask)


_per_thread = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    """One DIS object per thread: creating it allocates buffers, and calc() keeps no state between calls, but
    it works in those buffers, so two threads sharing one (the flow computed ahead) corrupted each other's."""
    if not hasattr(_per_thread, "dis"):
        _per_thread.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _per_thread.dis


def _check_method(method: str, *, allow_none: bool) -> None:
    valid = METHODS if allow_none else METHODS[:2]
    if method not in valid:
        names = ", ".join(f'"{m}"' for m in valid)
        raise ZoomdreamError(f'unknown optical flow method "{method}"; use one of {names}')


def _check_frame(name: str, img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ZoomdreamError(
            f"{name} must be a uint8 HxWx3 RGB frame, got {img.dtype} with shape {img.shape}; convert it first"
        )


def _check_same_size(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ZoomdreamError(
            f"{a_name} is {a.shape[1]}x{a.shape[0]} but {b_name} is {b.shape[1]}x{b.shape[0]}; "
            "resize the frames to one size"
        )


def flow_between(
    prev: np.ndarray, curr: np.ndarray, *, method: str = "dis", max_side: int | None = None
) -> np.ndarray:
    """Backward flow that warps ``prev`` onto ``curr``: pixel (x, y) of curr came from (x, y) + flow[y, x] in prev.

    Computed on grayscale. ``max_side`` estimates the flow on a copy shrunk so its longer side is at most that
    many pixels, then scales the field (and its vectors) back up: much faster on big frames, a little blurrier.
    """
    _check_method(method, allow_none=False)
    _check_frame("prev", prev)
    _check_frame("curr", curr)
    _check_same_size("prev", prev, "curr", curr)
    height, width = curr.shape[:2]
    prev_gray = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY)
    curr_gray = cv2.cvtColor(curr, cv2.COLOR_RGB2GRAY)

    scale = 1.0
    if max_side is not None:
        if max_side < 8:
            raise ZoomdreamError(f"max_side {max_side} is too small to estimate flow; use at least 8 or None")
        scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        prev_gray = cv2.resize(prev_gray, size, interpolation=cv2.INTER_AREA)
        curr_gray = cv2.resize(curr_gray, size, interpolation=cv2.INTER_AREA)

    # OpenCV's calc(a, b) returns flow on a's grid pointing into b, so asking for (curr, prev) yields
    # exactly the curr -> prev backward flow we want.
    if method == "dis":
        flow = _dis().calc(curr_gray, prev_gray, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(
            curr_gray, prev_gray, None,
            pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0,
        )

    if flow.shape[:2] != (height, width):
        flow = stretched(flow, (width, height))
    return np.ascontiguousarray(flow, dtype=np.float32)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp: out[y, x] = img sampled at (x, y) + flow[y, x], bilinear, edges replicated; dtype kept."""
    if img.shape[:2] != flow.shape[:2] or flow.ndim != 3 or flow.shape[2] != 2:
        raise ZoomdreamError(
            f"cannot warp a {img.shape} image with a {flow.shape} flow; the flow must be HxWx2 for the same HxW"
        )
    return _remap(img, sample_points(flow))


def sample_points(flow: np.ndarray) -> np.ndarray:
    """Where each pixel samples: its own (x, y) plus the flow, HxWx2 float32 (OpenCV's map for ``remap``)."""
    return cv2.add(_grid(flow.shape[:2]), np.asarray(flow, np.float32))


@functools.lru_cache(maxsize=4)
def _grid(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    y, x = np.mgrid[:height, :width].astype(np.float32)
    grid = np.dstack([x, y])
    grid.flags.writeable = False
    return grid


def _remap(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    def remap(part: np.ndarray) -> np.ndarray:
        return cv2.remap(part, points, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    if img.ndim == 2 or img.shape[2] <= 4:
        return remap(img).reshape(img.shape)
    # cv2.remap handles at most 4 channels; wider arrays go through in chunks.
    height, width = points.shape[:2]
    return np.concatenate([remap(img[..., i:i + 4]).reshape(height, width, -1)
                           for i in range(0, img.shape[2], 4)], axis=2)


def pull(frame: np.ndarray, toward: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``frame + weight * (toward - frame)``, rounded to uint8: ``frame`` uint8 HxWx3, ``toward`` float32
    HxWx3, ``weight`` HxWx1 in 0..1. One OpenCV blend per pixel, where numpy's passes cost a big frame far more."""
    # blendLinear divides by w1 + w2 + 1e-5: with weights of 1024 (a power of 2, so still exact) that 1e-5 is
    # lost in float32 rounding, and halves round to even as numpy's rint did, rather than all down.
    weight = np.float32(1024) * np.ascontiguousarray(weight.reshape(weight.shape[:2]), np.float32)
    if toward.dtype == np.uint8:  # a uint8 carry (``carried_fast``): one blend in uint8, no float copies
        return cv2.blendLinear(frame, toward, np.float32(1024) - weight, weight)
    return cv2.convertScaleAbs(cv2.blendLinear(np.float32(frame), toward, np.float32(1024) - weight, weight))


def carried(frame: np.ndarray, motion: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A frame carried along ``motion_between``'s flow, float32: what ``coherent_init`` and
    ``temporal_blend`` pull toward (a video's previous dream, warped once for both)."""
    return warp(np.float32(frame), motion[0])


def carry_maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sample_points(flow)`` as OpenCV's fixed-point maps (1/32 px), made once where the flow is made (a live
    frame's second thread), for ``carried_fast``."""
    return cv2.convertMaps(sample_points(flow), None, cv2.CV_16SC2)


def carried_fast(frame: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``carried`` in uint8 along ``carry_maps``: 0.2 levels off it on average (4 at most on hard edges), in
    70% of its time (a live 720p frame's carry is on the dream's critical path); ``pull`` takes it as it is."""
    return cv2.remap(frame, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(
    flow_back: np.ndarray, flow_fwd: np.ndarray, *, alpha: float = ALPHA, beta: float = BETA
) -> np.ndarray:
    """Which pixels of curr can trust the warp: 1 reliable, 0 occluded / newly revealed / from outside the frame.

    ``flow_back`` is curr -> prev (``flow_between(prev, curr)``); ``flow_fwd`` is prev -> curr
    (``flow_between(curr, prev)``). Forward-backward check of Sundaram et al. 2010 as used by Ruder et al.
    2016: with w_b the backward flow and w~_f the forward flow sampled where w_b lands, a pixel is reliable when
    |w_b + w~_f|^2 < alpha * (|w_b|^2 + |w~_f|^2) + beta. Pixels whose w_b points outside prev fail too.

    The hard mask is then eroded by one pixel (flow is least trustworthy on the rim of an occlusion) and
    blurred with a 3x3 Gaussian, so blending with it leaves no hard seam; far from occlusions it stays exactly 1.
    """
    if flow_back.shape != flow_fwd.shape or flow_back.ndim != 3 or flow_back.shape[2] != 2:
        raise ZoomdreamError(
            f"flows of shape {flow_back.shape} and {flow_fwd.shape} cannot be compared; both must be HxWx2, same size"
        )
    flow_back = np.asarray(flow_back, np.float32)
    return _consistency(flow_back, flow_fwd, sample_points(flow_back), alpha, beta)


def _consistency(flow_back: np.ndarray, flow_fwd: np.ndarray, points: np.ndarray, alpha: float,
                 beta: float) -> np.ndarray:
    """``consistency_mask`` given ``sample_points(flow_back)``, which ``motion_between`` also warps with."""
    # OpenCV passes throughout: numpy's took as long as the flow itself (figures: the Benchmarks page).
    fwd_at_back = _remap(np.asarray(flow_fwd, np.float32), points)
    round_trip = cv2.add(flow_back, fwd_at_back)
    lengths = cv2.add(cv2.multiply(flow_back, flow_back), cv2.multiply(fwd_at_back, fwd_at_back))
    excess = cv2.subtract(_channel_sum(cv2.multiply(round_trip, round_trip)), _channel_sum(lengths, alpha))
    reliable = cv2.compare(excess, beta, cv2.CMP_LT)
    height, width = flow_back.shape[:2]
    inside = cv2.inRange(points, (0.0, 0.0), (width - 1.0, height - 1.0))  # w_b lands inside prev
    reliable = cv2.erode(cv2.bitwise_and(reliable, inside), np.ones((3, 3), np.uint8),
                         borderType=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(np.float32(reliable) / np.float32(255), (3, 3), 0, borderType=cv2.BORDER_REPLICATE)


def _channel_sum(img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``scale`` times the sum over an HxWxC float32 array's channels, HxW."""
    return cv2.transform(img, np.full((1, img.shape[2]), scale, np.float32)).reshape(img.shape[:2])


def motion_between(
    source_prev: np.ndarray, source_curr: np.ndarray, *, method: str = "dis", max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The backward flow curr -> prev and the HxWx1 reliability mask, computed once per frame and shared by
    the start image and the temporal blend.

    A pixel is reliable when the flow passes the forward-backward check and the source itself did not
    change there: ``exp(-PHOTOMETRIC * |S_t - warp(S_{t-1})|^2)`` (Lai et al.'s visibility weight), so
    content that changes in place, such as a ticking timecode or a flash, is dreamed afresh, not ghosted.
    """
    flow_back = flow_between(source_prev, source_curr, method=method, max_side=max_side)
    flow_fwd = flow_between(source_curr, source_prev, method=method, max_side=max_side)
    points = sample_points(flow_back)  # one map for the source's warp and the consistency check
    difference = cv2.subtract(np.float32(source_curr), np.float32(_remap(source_prev, points)))
    # exp(-PHOTOMETRIC * the mean over channels of the squared difference, colours in 0..1)
    visible = cv2.exp(_channel_sum(cv2.multiply(difference, difference), -PHOTOMETRIC / 3 / 255.0 ** 2))
    reliable = _consistency(flow_back, flow_fwd, points, ALPHA, BETA)
    return flow_back, cv2.multiply(reliable, visible)[..., None]


def shrunk(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """``frame`` shrunk so its longer side is ``max_side`` at most, where the live loop measures motion: at
    1280x720 with 320, checking the flow at full size took 27 of its 41 ms, and the mask is a soft one anyway.
    None, or a frame no bigger: the frame itself."""
    height, width = frame.shape[:2]
    scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return frame
    return cv2.resize(frame, (max(8, round(width * scale)), max(8, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def upscaled(motion: tuple[np.ndarray, np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``motion_between``'s (flow, mask) measured on ``shrunk`` frames, scaled up to frames of ``size``."""
    flow, mask = motion
    width, height = size
    if flow.shape[:2] == (height, width):
        return motion
    return stretched(flow, size), cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]


def stretched(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flow measured on smaller frames, resized to ``size`` (width, height) with its vectors scaled to match."""
    scale = (size[0] / flow.shape[1], size[1] / flow.shape[0], 0.0, 0.0)  # per channel: OpenCV's, 20x numpy's
    return cv2.multiply(cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR), scale)


def composed(first: tuple[np.ndarray, np.ndarray], then: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
    """The motion (``motion_between``'s flow and mask) over two steps, a -> b (``first``) then b -> c
    (``then``): a pixel of c follows ``then`` into b, then ``first`` into a; reliable where both are."""
    points = sample_points(then[0])
    flow = cv2.add(then[0], _remap(first[0], points))
    return flow, cv2.multiply(then[1], _remap(first[1], points).reshape(then[1].shape))


def coherent_init(
    dreamed_prev: np.ndarray,
    source_prev: np.ndarray,
    source_curr: np.ndarray,
    *,
    blend: float = 0.5,
    method: str = "dis",
    max_side: int | None = None,
    motion: tuple[np.ndarray, np.ndarray] | None = None,
    carry: np.ndarray | None = None,
) -> np.ndarray:
    """Starting image for dreaming frame t: the previous dream carried along the motion, mixed into the new frame.

    Where the flow is reliable: ``blend * warp(dreamed_prev) + (1 - blend) * source_curr``. Where it is not
    (occluded or newly revealed), plain ``source_curr``, so new regions are dreamed afresh instead of being
    smeared from whatever the warp dragged in; the soft mask cross-fades between the two. ``method="none"``
    skips flow and blends ``dreamed_prev`` in place everywhere, as older tools do. ``motion`` is
    ``motion_between``'s result and ``carry`` ``carried(dreamed_prev, motion)``, when the caller already has
    them. Returns rounded uint8.
    """
    _check_method(method, allow_none=True)
    for name, img in (("dreamed_prev", dreamed_prev), ("source_prev", source_prev), ("source_curr", source_curr)):
        _check_frame(name, img)
        _check_same_size(name, img, "source_curr", source_curr)
    if not 0.0 <= blend <= 1.0:
        raise ZoomdreamError(f"blend {blend} is out of range; use a value from 0 to 1")

    if method == "none":
        return pull(source_curr, np.float32(dreamed_prev), np.full(source_curr.shape[:2], blend, np.float32))
    motion = motion or motion_between(source_prev, source_curr, method=method, max_side=max_side)
    # mask * (blend * carried + (1 - blend) * curr) + (1 - mask) * curr
    return pull(source_curr, carried(dreamed_prev, motion) if carry is None else carry, blend * motion[1])


def temporal_blend(dreamed: np.ndarray, output_prev: np.ndarray, motion: tuple[np.ndarray, np.ndarray],
                   amount: float, carry: np.ndarray | None = None) -> np.ndarray:
    """Pull a dreamed frame toward the previous output carried along the flow, where the flow is reliable:
    an exponential moving average along motion paths. It removes the step-to-step jitter that dreaming
    adds on top of the carried dream; occluded regions are left as dreamed. ``carry``: ``carried(output_prev,
    motion)``, when the caller already has it. Returns rounded uint8."""
    if not 0.0 <= amount < 1.0:
        raise ZoomdreamError(f"smoothing {amount} is out of range; use a value from 0 to below 1")
    return pull(dreamed, carried(output_prev, motion) if carry is None else carry, amount * motion[1])


def warping_error(
    outputs: Iterable[np.ndarray],
    sources: Iterable[np.ndarray],
    *,
    method: str = "dis",
    max_side: int | None = None,
) -> float:
    """Flicker of a processed video: the warping error of Lai et al., ECCV 2018 (lower is steadier).

    For each consecutive pair, flow and occlusion mask M come from the *source* frames (the processed ones
    may be full of invented texture), and E_t = sum(M * d) / sum(M) with d the per-pixel mean over channels of
    |O_t - warp(O_{t-1})|, values scaled to [0, 1]. Returns the mean of E_t over t = 1..T-1. This is an L1
    variant: Lai et al.'s released code squares the difference, so numbers are not comparable with theirs.
    Streams the frames, holding only one pair at a time. Pairs with no reliable pixel (a scene cut) are skipped.
    """
    _check_method(method, allow_none=False)
    errors = []
    pairs = 0
    prev_out = prev_src = None
    for index, (out, src) in enumerate(itertools.zip_longest(outputs, sources)):
        if out is None or src is None:
            raise ZoomdreamError(
                "the output and source videos have different frame counts; pass the same number of frames"
            )
        _check_frame(f"output frame {index}", out)
        _check_frame(f"source frame {index}", src)
        _check_same_size(f"output frame {index}", out, f"source frame {index}", src)
        if prev_src is not None:
            _check_same_size(f"source frame {index}", src, f"source frame {index - 1}", prev_src)
            pairs += 1
            flow_back = flow_between(prev_src, src, method=method, max_side=max_side)
            flow_fwd = flow_between(src, prev_src, method=method, max_side=max_side)
            mask = consistency_mask(flow_back, flow_fwd)
            carried = warp(prev_out.astype(np.float32), flow_back)
            diff = np.abs(out.astype(np.float32) - carried).mean(axis=2) / 255.0
            weight = float(mask.sum())
            if weight > 0:
                errors.append(float((mask * diff).sum()) / weight)
        prev_out, prev_src = out, src
    if pairs == 0:
        raise ZoomdreamError("warping error needs at least 2 frames; pass a longer video")
    if not errors:
        raise ZoomdreamError("no pixel could be tracked between any two source frames; check the source video")
    return float(np.mean(errors))
