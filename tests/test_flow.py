"""Optical flow, warping, occlusion masks and the warping-error metric on small synthetic frames."""
import cv2
import numpy as np
import pytest

from zoomdream.errors import ZoomdreamError
from zoomdream.flow import coherent_init, consistency_mask, flow_between, warp, warping_error

H, W = 96, 128
DX, DY = 3, -2  # the scene moves 3 px right and 2 px up each frame
INNER = (slice(16, -16), slice(16, -16))  # interior, away from the rolled-in borders


def texture(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """Smooth colour noise: coarse random values blown up and blurred, so flow has texture everywhere."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4, width // 4, 3)).astype(np.float32)
    img = cv2.GaussianBlur(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return np.rint(img * 255).astype(np.uint8)


def shifted(img: np.ndarray, steps: int = 1) -> np.ndarray:
    """curr[y, x] = prev[y - DY, x - DX]: the content moves by (DX, DY)."""
    return np.roll(img, (DY * steps, DX * steps), axis=(0, 1))


def occluder_scene(x0: int) -> np.ndarray:
    """Static background with a textured 32x32 square whose left edge is at column x0."""
    img = texture(1)
    img[30:62, x0:x0 + 32] = texture(2)[30:62, 40:72]
    return img


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_between_points_from_curr_back_to_prev(method):
    prev = texture(0)
    flow = flow_between(prev, shifted(prev), method=method)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    # Pixel (x, y) of curr came from (x - 3, y + 2) in prev.
    assert flow[INNER][..., 0].mean() == pytest.approx(-DX, abs=0.3)
    assert flow[INNER][..., 1].mean() == pytest.approx(-DY, abs=0.3)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_between_max_side_rescales_vectors(method):
    prev = texture(0)
    flow = flow_between(prev, shifted(prev), method=method, max_side=96)
    assert flow.shape == (H, W, 2)
    assert flow[INNER][..., 0].mean() == pytest.approx(-DX, abs=0.3)
    assert flow[INNER][..., 1].mean() == pytest.approx(-DY, abs=0.3)


def test_flow_between_opposite_order_gives_opposite_flow():
    prev = texture(0)
    flow = flow_between(shifted(prev), prev)
    assert flow[INNER][..., 0].mean() == pytest.approx(DX, abs=0.3)
    assert flow[INNER][..., 1].mean() == pytest.approx(DY, abs=0.3)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_warp_with_flow_reproduces_curr(method):
    prev = texture(0)
    curr = shifted(prev)
    warped = warp(prev, flow_between(prev, curr, method=method))
    assert warped.dtype == np.uint8 and warped.shape == prev.shape
    err_warped = np.abs(warped.astype(float) - curr)[INNER].mean()
    err_prev = np.abs(prev.astype(float) - curr)[INNER].mean()
    assert err_warped < 0.3 * err_prev


def test_warp_exact_integer_shift_and_zero_flow():
    img = texture(3).astype(np.float32)
    flow = np.zeros((H, W, 2), np.float32)
    np.testing.assert_array_equal(warp(img, flow), img)
    flow[..., 0], flow[..., 1] = -DX, -DY
    np.testing.assert_allclose(warp(img, flow)[INNER], shifted(img)[INNER])


def test_warp_keeps_many_channels():
    img = np.random.default_rng(0).random((H, W, 6)).astype(np.float32)
    flow = np.full((H, W, 2), 1.0, np.float32)
    out = warp(img, flow)
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[:-1, :-1], img[1:, 1:])


def test_consistency_mask_pure_shift_is_reliable_inside():
    prev = texture(0)
    curr = shifted(prev)
    mask = consistency_mask(flow_between(prev, curr), flow_between(curr, prev))
    assert mask.shape == (H, W) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[INNER].min() > 0.99


def test_consistency_mask_rejects_inconsistent_flows():
    back = np.zeros((H, W, 2), np.float32)
    back[..., 0] = -5.0
    fwd = np.zeros_like(back)  # forward flow says nothing moved: the round trip does not come home
    assert consistency_mask(back, fwd)[INNER].max() == 0.0
    fwd[..., 0] = 5.0
    assert consistency_mask(back, fwd)[INNER].min() == 1.0


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_consistency_mask_flags_revealed_background(method):
    prev, curr = occluder_scene(40), occluder_scene(50)  # the square moves 10 px right over a still background
    mask = consistency_mask(flow_between(prev, curr, method=method), flow_between(curr, prev, method=method))
    revealed = mask[30:62, 40:50]  # background in curr that the square hid in prev
    assert revealed.min() < 0.5
    far = np.ones((H, W), bool)
    far[22:70, 32:90] = False
    assert (mask[far] > 0.5).mean() > 0.85


def test_coherent_init_none_is_plain_blend():
    dreamed, prev, curr = texture(5), texture(0), shifted(texture(0))
    out = coherent_init(dreamed, prev, curr, blend=0.3, method="none")
    expected = np.rint(0.3 * dreamed.astype(np.float32) + 0.7 * curr.astype(np.float32)).astype(np.uint8)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("method", ["dis", "farneback", "none"])
def test_coherent_init_blend_zero_is_source(method):
    prev = texture(0)
    curr = shifted(prev)
    np.testing.assert_array_equal(coherent_init(texture(5), prev, curr, blend=0.0, method=method), curr)


def test_coherent_init_carries_dream_along_the_motion():
    prev = texture(0)
    curr = shifted(prev)
    dreamed = 255 - prev  # a stand-in dream that is easy to predict after the shift
    flow = flow_between(prev, curr)
    mask = consistency_mask(flow, flow_between(curr, prev))
    out = coherent_init(dreamed, prev, curr, blend=1.0)
    reliable = mask == 1.0
    reliable[:16] = reliable[-16:] = reliable[:, :16] = reliable[:, -16:] = False
    assert reliable.sum() > 0.9 * (H - 32) * (W - 32)
    expected = np.rint(warp(dreamed.astype(np.float32), flow))
    assert np.abs(out.astype(int) - expected)[reliable].max() <= 1
    # ... and that really is the dream moved with the scene, not left in place.
    assert np.abs(out.astype(int) - (255 - curr.astype(int)))[reliable].mean() < 2
    assert np.abs(out.astype(int) - dreamed.astype(int))[reliable].mean() > 20


def test_coherent_init_occluded_regions_take_the_source():
    prev, curr = occluder_scene(40), occluder_scene(50)
    mask = consistency_mask(flow_between(prev, curr), flow_between(curr, prev))
    out = coherent_init(np.zeros_like(prev), prev, curr, blend=1.0)
    occluded = mask == 0.0
    assert occluded.any()
    np.testing.assert_array_equal(out[occluded], curr[occluded])


def video(frames: int = 5) -> list[np.ndarray]:
    first = texture(0)
    return [shifted(first, t) for t in range(frames)]


def test_warping_error_small_for_the_sources_themselves():
    sources = video()
    assert warping_error(iter(sources), iter(sources)) < 0.02


def test_warping_error_sees_flicker_but_not_consistent_stylization():
    sources = video()
    rng = np.random.default_rng(7)
    noisy = [np.clip(s.astype(int) + rng.integers(-40, 41, s.shape), 0, 255).astype(np.uint8) for s in sources]
    inverted = [255 - s for s in sources]
    clean = warping_error(sources, sources)
    flicker = warping_error(noisy, sources)
    stylized = warping_error(inverted, sources)
    assert stylized < 0.02
    assert flicker > 0.05 and flicker > 5 * max(clean, stylized)


def test_warping_error_farneback_agrees():
    sources = video(3)
    assert warping_error(sources, sources, method="farneback") < 0.02


def test_warping_error_input_errors():
    frame = texture(0)
    with pytest.raises(ZoomdreamError, match="at least 2 frames"):
        warping_error([frame], [frame])
    with pytest.raises(ZoomdreamError, match="frame counts"):
        warping_error([frame, frame], [frame, frame, frame])
    with pytest.raises(ZoomdreamError, match="one size"):
        warping_error([frame, frame[:64]], [frame, frame[:64]])
    with pytest.raises(ZoomdreamError, match="one size"):
        warping_error([frame, frame[:, :100]], [frame, frame])


def test_unknown_method_is_a_user_error():
    frame = texture(0)
    with pytest.raises(ZoomdreamError, match='"dis", "farneback"'):
        flow_between(frame, frame, method="raft")
    with pytest.raises(ZoomdreamError, match="unknown optical flow method"):
        coherent_init(frame, frame, frame, method="raft")
    with pytest.raises(ZoomdreamError, match="unknown optical flow method"):
        warping_error([frame, frame], [frame, frame], method="raft")


def test_bad_frames_are_user_errors():
    frame = texture(0)
    with pytest.raises(ZoomdreamError, match="uint8 HxWx3"):
        flow_between(frame.astype(np.float32), frame)
    with pytest.raises(ZoomdreamError, match="blend"):
        coherent_init(frame, frame, frame, blend=1.5)


def test_motion_on_shrunk_frames_upscaled_is_the_motion_at_the_frames_size():
    from zoomdream.flow import composed, motion_between, shrunk, upscaled

    rng = np.random.default_rng(0)
    field = cv2.resize(rng.integers(0, 255, (60, 110, 3), dtype=np.uint8), (440, 240), interpolation=cv2.INTER_CUBIC)
    prev, curr, later = field[:, 0:400], field[:, 8:408], field[:, 20:420]  # moving 8 px left, then 12
    small = prev[:120, :200].copy()
    assert shrunk(small, 200) is small and shrunk(small, None) is small  # no smaller: the frame itself
    motion = motion_between(small, curr[:120, :200].copy())
    assert upscaled(motion, (200, 120)) is motion
    coarse = [motion_between(shrunk(a, 100), shrunk(b, 100)) for a, b in ((prev, curr), (curr, later))]
    for (flow, mask), moved in ((upscaled(coarse[0], (400, 240)), 8), (upscaled(composed(*coarse), (400, 240)), 20)):
        assert flow.shape == (240, 400, 2) and mask.shape == (240, 400, 1)
        inner = flow[40:-40, 40:-40]  # curr's pixels came from x + 8 in prev; later's from x + 20
        assert abs(np.median(inner[..., 0]) - moved) < 1 and abs(np.median(inner[..., 1])) < 1
        assert mask[40:-40, 40:-40].mean() > 0.8


def test_a_fast_uint8_carry_is_within_a_few_levels_and_pull_takes_it_as_the_float_one():
    from zoomdream.flow import carried, carried_fast, carry_maps, pull

    rng = np.random.default_rng(1)
    frame = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
    flow = np.dstack([np.full((48, 64), 2.3, np.float32), np.full((48, 64), -1.6, np.float32)])
    mask = rng.random((48, 64, 1)).astype(np.float32)
    fast, exact = carried_fast(frame, carry_maps(flow)), carried(frame, (flow, mask))
    assert fast.dtype == np.uint8 and np.abs(fast - exact).max() <= 2 and np.abs(fast - exact).mean() < 0.6
    assert np.array_equal(pull(frame, fast, mask), pull(frame, np.float32(fast), mask))
