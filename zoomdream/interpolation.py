"""Frames between two frames, so fewer frames need dreaming: each neighbour is carried to the in-between time
and the two are blended, weighted by closeness and by where each warp can be trusted.

- ``between_affine``: the motion is known exactly (a zoom's camera path).
- ``between_sources``: the source frame of that time exists (video): exact flows from it to both neighbours.
- ``between_frames``: only the two frames exist (any finished clip): flows between them, carried to the
  in-between time with the linear-motion approximation of Jiang et al. 2018 (Super SloMo, eq. 4), and
  occlusion from the forward-backward check.

No network: RIFE and FILM weights would download at run time. Frames are uint8 HxWx3 RGB in and out.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from zoomdream.flow import consistency_mask, flow_between, warp
from zoomdream.frames.warp import warp_affine

Carry = Callable[[np.ndarray], np.ndarray]  # maps an array on a frame's grid onto the in-between's
Motion = tuple[np.ndarray, np.ndarray]  # flow.motion_between's backward flow and HxWx1 trust


def blend(a: np.ndarray, b: np.ndarray, s: float, trust_a: np.ndarray | None = None,
          trust_b: np.ndarray | None = None) -> np.ndarray:
    """``(1 - s) * a + s * b`` where both are trusted; where one is not (HxWx1 masks in 0..1), the other."""
    return as_frame(mix(a, b, s, trust_a, trust_b))


def mix(a: np.ndarray, b: np.ndarray, s: float, trust_a: np.ndarray | None = None,
        trust_b: np.ndarray | None = None) -> np.ndarray:
    """``blend`` before rounding: float32."""
    wa = (1.0 - s) * (1.0 if trust_a is None else trust_a)
    wb = s * (1.0 if trust_b is None else trust_b)
    total = wa + wb
    return np.where(total > 1e-3, (wa * a + wb * b) / np.maximum(total, 1e-3), (1.0 - s) * a + s * b)


def as_frame(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def between_affine(a: np.ndarray, b: np.ndarray, s: float, a_to_t: np.ndarray, t_to_b: np.ndarray) -> np.ndarray:
    """The frame at ``s`` (0..1) from ``a`` to ``b``, given the 3x3 camera maps from a to it and from it to b:
    ``a`` is carried forward, ``b`` backward, and b counts only where its backward map brings it in."""
    back = np.linalg.inv(t_to_b)
    inside = warp_affine(np.ones(a.shape[:2] + (1,), np.float32), back, reflect=False).reshape(a.shape[:2] + (1,))
    return sharp_blend(a, b, s, lambda img: warp_affine(img, a_to_t), lambda img: warp_affine(img, back),
                       trust_b=inside)


def sharp_blend(a: np.ndarray, b: np.ndarray, s: float, carry_a: Carry, carry_b: Carry,
                trust_a: np.ndarray | None = None, trust_b: np.ndarray | None = None) -> np.ndarray:
    """``blend`` of ``a`` and ``b`` carried to the in-between time by ``carry_a`` and ``carry_b`` (each maps
    an HxW(xC) float32 array of its frame onto the in-between's grid), with the blend's pixel-scale detail
    brought back, locally, to the energy its two neighbours carry there (``keep_detail``)."""
    made = mix(carry_a(a.astype(np.float32)), carry_b(b.astype(np.float32)), s, trust_a, trust_b)
    wa = (1.0 - s) * (1.0 if trust_a is None else trust_a[..., 0])
    wb = s * (1.0 if trust_b is None else trust_b[..., 0])
    expected = (wa * carry_a(detail_energy(a)) + wb * carry_b(detail_energy(b))) / np.maximum(wa + wb, 1e-3)
    return as_frame(keep_detail(made, expected))


DETAIL_SIGMA = 1.0  # the pixel-scale band: a frame less its Gaussian blur of this sigma
ENERGY_SIGMA = 4.0  # the neighbourhood over which its energy is taken


def detail_energy(img: np.ndarray) -> np.ndarray:
    """The local mean square of the pixel-scale band of a frame's grey, HxW float32."""
    grey = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return _energy(grey - cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMA))


def _energy(band: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(band * band, (0, 0), ENERGY_SIGMA)


def keep_detail(made: np.ndarray, expected: np.ndarray, most: float = 3.0) -> np.ndarray:
    """Scale the pixel-scale band of ``made`` (float32 HxWx3 RGB) so its local energy is ``expected`` (HxW), by
    1 to ``most``. Blending two frames whose finest texture does not line up averages it away, and each
    resampling blurs it: a zoom's in-between frames held about half of their dreamed neighbours' pixel-scale
    energy (Laplacian), so the detail pulsed at every other frame. With the neighbours' own energy carried along
    the same maps they keep most of it and rebuild dreamed frames closer; the rest lies near the Nyquist
    frequency, which the bilinear resampling removes (``scripts/bench_loops.py``; figures: the Benchmarks
    page)."""
    made = np.asarray(made, dtype=np.float32)
    band = made - cv2.GaussianBlur(made, (0, 0), DETAIL_SIGMA)
    energy = _energy(cv2.cvtColor(band, cv2.COLOR_RGB2GRAY))
    gain = np.clip(np.sqrt(expected / np.maximum(energy, 1e-6)), 1.0, most) - 1.0
    band *= gain[..., None]
    band += made
    return band


def between_sources(a: np.ndarray, b: np.ndarray, s: float, motion_a: Motion, motion_b: Motion) -> np.ndarray:
    """The dreamed frame for source frame t, between dreamed ``a`` and ``b``: each carried along the source's
    flow to frame t (``motion_a``, ``motion_b``: ``motion_between`` of a's and b's source frames and frame t's),
    trusted where that flow passes its checks."""
    (flow_a, trust_a), (flow_b, trust_b) = motion_a, motion_b
    return sharp_blend(a, b, s, lambda img: warp(img, flow_a), lambda img: warp(img, flow_b), trust_a, trust_b)


def between_frames(a: np.ndarray, b: np.ndarray, s: float, method: str = "dis",
                   flows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The frame at ``s`` between ``a`` and ``b`` from the two frames alone. ``flows`` (a->b on a's grid,
    b->a on b's grid) may be passed in when several in-betweens share them (``pair_flows``)."""
    a_to_b, b_to_a = flows or pair_flows(a, b, method)
    t_to_a = -(1.0 - s) * s * a_to_b + s * s * b_to_a
    t_to_b = (1.0 - s) ** 2 * a_to_b - s * (1.0 - s) * b_to_a
    seen_a = warp(consistency_mask(a_to_b, b_to_a)[..., None], t_to_a).reshape(a.shape[:2] + (1,))
    seen_b = warp(consistency_mask(b_to_a, a_to_b)[..., None], t_to_b).reshape(a.shape[:2] + (1,))
    return sharp_blend(a, b, s, lambda img: warp(img, t_to_a), lambda img: warp(img, t_to_b), seen_a, seen_b)


def pair_flows(a: np.ndarray, b: np.ndarray, method: str = "dis",
               max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flow a->b on a's grid and b->a on b's grid (``flow_between``'s backward convention, both ways)."""
    return flow_between(b, a, method=method, max_side=max_side), flow_between(a, b, method=method, max_side=max_side)


def camera_error(a: np.ndarray, b: np.ndarray, a_to_b: np.ndarray) -> float:
    """Warping error of a pair under a known camera map (Lai et al.'s measure with the exact motion in place
    of optical flow): mean squared difference, colours in 0..1, between b and a carried to it, where a covers."""
    moved = warp_affine(a.astype(np.float32) / 255.0, a_to_b)
    covered = warp_affine(np.ones(a.shape[:2], np.float32), a_to_b, reflect=False) > 0.999
    return float(np.mean(((b.astype(np.float32) / 255.0 - moved) ** 2)[covered]))
