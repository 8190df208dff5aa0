"""Tests for keyframe schedules, the safe expression parser, text schedules and the zoom transform."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from zoomdream.errors import ZoomdreamError
from zoomdream.frames.warp import transform_frame, transform_matrix
from zoomdream.schedules import Schedule, TextSchedule, compile_expression, parse_schedule, parse_text_schedule

# ---------------------------------------------------------------------------------------------------------
# Number schedules
# ---------------------------------------------------------------------------------------------------------


def test_keys_are_parsed_and_sorted():
    schedule = parse_schedule("120:(1.05), 0:(1.02)")
    assert schedule.keys == ((0, "1.02"), (120, "1.05"))


def test_linear_interpolation_between_keys():
    schedule = parse_schedule("0:(0), 60:(1.5)")
    assert schedule.at(0) == 0.0
    assert schedule.at(20) == pytest.approx(0.5)
    assert schedule.at(30) == pytest.approx(0.75)
    assert schedule.at(60) == 1.5


def test_linear_interpolation_across_three_keys():
    schedule = parse_schedule("10:(1), 20:(3), 40:(-1)")
    assert schedule.at(15) == pytest.approx(2.0)
    assert schedule.at(25) == pytest.approx(2.0)  # 3 + (-1 - 3) * 5/20
    assert schedule.at(35) == pytest.approx(0.0)


def test_values_hold_before_first_and_after_last_key():
    schedule = parse_schedule("10:(2), 20:(4)")
    assert schedule.at(0) == 2.0
    assert schedule.at(9) == 2.0
    assert schedule.at(21) == 4.0
    assert schedule.at(10_000) == 4.0


def test_constant_and_python_numbers_apply_to_every_frame():
    for value in ("1.02", " 1.02 ", 1.02):
        schedule = parse_schedule(value)
        assert schedule.at(0) == pytest.approx(1.02)
        assert schedule.at(500) == pytest.approx(1.02)
    assert parse_schedule(3).at(7) == 3.0


def test_bare_expression_applies_to_every_frame():
    schedule = parse_schedule("1.02+0.01*sin(t/20)")
    for t in (0, 10, 31, 400):
        assert schedule.at(t) == pytest.approx(1.02 + 0.01 * math.sin(t / 20))


def test_expression_is_evaluated_at_the_current_frame():
    schedule = parse_schedule("0:(t*2)")
    assert schedule.at(5) == 10.0
    assert schedule.at(0) == 0.0


def test_expression_keys_interpolate_with_t_at_the_current_frame():
    # At t=5 the first key is t = 5 and the second is 100, so halfway: 5 + (100 - 5) * 0.5.
    schedule = parse_schedule("0:(t), 10:(100)")
    assert schedule.at(5) == pytest.approx(52.5)


def test_nested_parentheses_and_whitespace():
    schedule = parse_schedule("  0 :  ( sin((t+1)/2) ) ,\n 30: (max(1, min(2, 3)))  ")
    assert schedule.keys == ((0, "sin((t+1)/2)"), (30, "max(1, min(2, 3))"))
    assert schedule.at(0) == pytest.approx(math.sin(0.5))
    assert schedule.at(30) == 2.0
    assert parse_schedule("0: (1.02+0.01*sin(t/20))").at(40) == pytest.approx(1.02 + 0.01 * math.sin(2))


def test_plain_numbers_may_skip_parentheses():
    schedule = parse_schedule("0:1.02, 10:1.5")
    assert schedule.keys == ((0, "1.02"), (10, "1.5"))
    assert schedule.at(5) == pytest.approx(1.26)


def test_trailing_comma_is_accepted():
    assert parse_schedule("0:(1), 10:(2),").keys == ((0, "1"), (10, "2"))


def test_series_matches_at():
    schedule = parse_schedule("0:(0), 4:(2)")
    series = schedule.series(6)
    assert series.dtype == np.float64
    np.testing.assert_allclose(series, [0.0, 0.5, 1.0, 1.5, 2.0, 2.0])


def test_cubic_passes_through_keys():
    schedule = parse_schedule("0:(1), 10:(3), 25:(2), 40:(5)", interpolation="cubic")
    for frame, value in ((0, 1), (10, 3), (25, 2), (40, 5)):
        assert schedule.at(frame) == pytest.approx(value)


def test_cubic_eases_between_two_keys():
    # Flat tangents at the ends give smoothstep: 3u^2 - 2u^3.
    schedule = parse_schedule("0:(0), 10:(1)", interpolation="cubic")
    assert schedule.at(5) == pytest.approx(0.5)
    assert schedule.at(2) == pytest.approx(0.104)
    assert schedule.at(8) == pytest.approx(0.896)


def test_cubic_does_not_overshoot_between_keys():
    schedule = parse_schedule("0:(1), 10:(1), 12:(2), 40:(2)", interpolation="cubic")
    values = schedule.series(41)
    assert values.min() >= 1.0 - 1e-12
    assert values.max() <= 2.0 + 1e-12
    assert np.all(np.diff(values) >= -1e-12)


def test_schedule_equality_and_direct_construction():
    assert parse_schedule("0:(1), 5:(2)") == Schedule(((0, "1"), (5, "2")))
    with pytest.raises(ZoomdreamError, match="interpolation"):
        Schedule(((0, "1"),), "bezier")
    with pytest.raises(ZoomdreamError, match="increasing order"):
        Schedule(((5, "1"), (0, "2")))


# ---------------------------------------------------------------------------------------------------------
# Errors point at the problem
# ---------------------------------------------------------------------------------------------------------


def test_missing_colon_reports_name_and_position():
    with pytest.raises(ZoomdreamError) as info:
        parse_schedule("0:(1), 10 (2)", name="--zoom")
    message = str(info.value)
    assert message.startswith("--zoom: expected ':' after frame number at position 10")
    assert '"0:(1), 10 (2)"' in message
    assert "\n" not in message


def test_unbalanced_paren_reports_position():
    with pytest.raises(ZoomdreamError, match=r"--angle: unclosed '\(' at position 2"):
        parse_schedule("0:(1, 10:(2)", name="--angle")


def test_unmatched_closing_paren_reports_position():
    with pytest.raises(ZoomdreamError, match=r"unmatched '\)' at position 5"):
        parse_schedule("0:(1)), 10:(2)", name="--zoom")


def test_duplicate_frame_reports_position():
    with pytest.raises(ZoomdreamError, match=r"--zoom: frame 10 appears twice at position 15"):
        parse_schedule("0:(1), 10:(2), 10:(3)", name="--zoom")


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_schedule_is_an_error(text):
    with pytest.raises(ZoomdreamError, match="--zoom: the schedule is empty"):
        parse_schedule(text, name="--zoom")


def test_empty_value_reports_position():
    with pytest.raises(ZoomdreamError, match="--zoom: empty expression at position 11"):
        parse_schedule("0:(1), 10:()", name="--zoom")


def test_syntax_error_inside_a_key_reports_position_in_the_whole_text():
    with pytest.raises(ZoomdreamError, match=r"--zoom: invalid expression .* at position 14 in"):
        parse_schedule("0:(1), 10:(1 +* 2)", name="--zoom")


def test_value_needing_parentheses_is_an_error():
    with pytest.raises(ZoomdreamError, match="needs parentheses at position 2"):
        parse_schedule("0:sin(t)", name="--zoom")


def test_missing_comma_between_keys():
    with pytest.raises(ZoomdreamError, match="expected ',' between keyframes at position 6"):
        parse_schedule("0:(1) 10:(2)")


def test_non_finite_number_is_an_error():
    with pytest.raises(ZoomdreamError, match="finite"):
        parse_schedule(float("nan"))


# ---------------------------------------------------------------------------------------------------------
# Safe expressions
# ---------------------------------------------------------------------------------------------------------


def test_expression_functions_and_constants():
    f = compile_expression(
        "clamp(t, 0, 10) + pi - tau/2 + abs(-e) - e + atan2(0, 1) + floor(2.7) + 2**3 + 7 // 2 + 7 % 4"
    )
    assert f(3) == pytest.approx(3 + 0 + 0 + 2 + 8 + 3 + 3)
    assert f(50) == pytest.approx(10 + 2 + 8 + 3 + 3)
    assert compile_expression("log(8, 2)")(0) == pytest.approx(3.0)
    assert compile_expression("-(-t)")(4) == 4.0


@pytest.mark.parametrize(
    "text, culprit",
    [
        ("__import__('os')", "__import__"),
        ("t.__class__", "t.__class__"),
        ("().__class__", "().__class__"),
        ("open('x')", "open"),
        ("lambda: 1", "lambda: 1"),
        ("[1][0]", "[1][0]"),
        ('"a"', '"a"'),
        ("os", "os"),
        ("sin", "sin"),
        ("t > 1", "t > 1"),
        ("sin(x=1)", "sin(x=1)"),
        ("True", "True"),
        ("[x for x in (1,)]", "[x for x in (1,)]"),
    ],
)
def test_unsafe_expressions_are_rejected(text, culprit):
    with pytest.raises(ZoomdreamError) as info:
        compile_expression(text, name="--zoom")
    message = str(info.value)
    assert message.startswith(f"--zoom: '{culprit}' is not allowed")
    assert "\n" not in message


def test_unsafe_expression_inside_a_schedule_is_rejected():
    with pytest.raises(ZoomdreamError, match=r"'__import__\('os'\).system' is not allowed at position 11"):
        parse_schedule("0:(1), 10:(__import__('os').system('true'))", name="--zoom")


def test_wrong_argument_count_is_rejected():
    with pytest.raises(ZoomdreamError, match="sin takes 1 arguments, got 2"):
        compile_expression("sin(1, 2)")


def test_huge_power_fails_promptly():
    f = compile_expression("9**9**9", name="--zoom")
    start = time.monotonic()
    with pytest.raises(ZoomdreamError, match=r"--zoom: cannot evaluate .* at frame t=0: exponent"):
        f(0)
    assert time.monotonic() - start < 1.0


def test_evaluation_errors_name_the_frame():
    with pytest.raises(ZoomdreamError, match=r"--zoom: cannot evaluate \"log\(t-5\)\" at frame t=5"):
        compile_expression("log(t-5)", name="--zoom")(5)
    with pytest.raises(ZoomdreamError, match=r"at frame t=3"):
        compile_expression("1/(t-3)", name="--zoom")(3)
    with pytest.raises(ZoomdreamError, match="at frame t=12"):
        parse_schedule("0:(1), 10:(1/(t-12))", name="--zoom").at(12)
    with pytest.raises(ZoomdreamError, match="not a finite number"):
        compile_expression("1e308*10")(0)


def test_negative_base_fractional_power_is_an_error_not_complex():
    with pytest.raises(ZoomdreamError, match="cannot evaluate"):
        compile_expression("(-8)**(1/3)")(0)


def test_syntax_error_reports_column():
    with pytest.raises(ZoomdreamError, match="at position 4"):
        compile_expression("1 + * 2")


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(ZoomdreamError):
        compile_expression("-" * 100_000 + "1")


# ---------------------------------------------------------------------------------------------------------
# Text schedules
# ---------------------------------------------------------------------------------------------------------


def test_text_schedule_blend_weights():
    schedule = parse_text_schedule("0:(mixed3), 200:(mixed5)")
    assert schedule.keys == ((0, "mixed3"), (200, "mixed5"))
    assert schedule.blend_at(0) == (("mixed3", 1.0),)
    assert schedule.blend_at(100) == (("mixed3", 0.5), ("mixed5", 0.5))
    assert schedule.blend_at(150) == (("mixed3", 0.25), ("mixed5", 0.75))
    assert schedule.blend_at(200) == (("mixed5", 1.0),)
    assert schedule.blend_at(999) == (("mixed5", 1.0),)


def test_text_schedule_holds_before_first_key():
    schedule = parse_text_schedule("50:(a), 100:(b)")
    assert schedule.blend_at(0) == (("a", 1.0),)
    assert schedule.blend_at(75) == (("a", 0.5), ("b", 0.5))


def test_text_schedule_values_may_hold_commas_and_colons():
    schedule = parse_text_schedule("0:(block10:1.0,block12:0.5), 100:(block12)")
    assert schedule.keys == ((0, "block10:1.0,block12:0.5"), (100, "block12"))
    assert schedule.blend_at(25) == (("block10:1.0,block12:0.5", 0.75), ("block12", 0.25))


def test_constant_layer_spec_stays_one_value():
    schedule = parse_text_schedule("block10:1.0,block12:0.5")
    assert schedule == TextSchedule(((0, "block10:1.0,block12:0.5"),))
    assert schedule.blend_at(0) == (("block10:1.0,block12:0.5", 1.0),)
    assert schedule.blend_at(500) == (("block10:1.0,block12:0.5", 1.0),)
    assert parse_text_schedule("mixed4").keys == ((0, "mixed4"),)


def test_text_schedule_merges_equal_neighbours():
    schedule = parse_text_schedule("0:(a), 10:(a), 20:(b)")
    assert schedule.blend_at(5) == (("a", 1.0),)


def test_text_schedule_errors():
    with pytest.raises(ZoomdreamError, match=r"--layers: expected '\(' after ':' at position 14"):
        parse_text_schedule("0:(mixed3), 9:mixed5", name="--layers")
    with pytest.raises(ZoomdreamError, match="--layers: empty value at position 3"):
        parse_text_schedule("0:(), 9:(mixed5)", name="--layers")
    with pytest.raises(ZoomdreamError, match="frame 0 appears twice"):
        parse_text_schedule("0:(a), 0:(b)", name="--layers")
    with pytest.raises(ZoomdreamError, match="empty"):
        parse_text_schedule("  ", name="--layers")


# ---------------------------------------------------------------------------------------------------------
# Frame transform
# ---------------------------------------------------------------------------------------------------------

SIZE = 101
CENTRE = (SIZE - 1) / 2


def blob(x: float, y: float, sigma: float = 2.0, size: int = SIZE) -> np.ndarray:
    """A smooth Gaussian spot on black, as an HxWx3 float32 image."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    spot = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat(spot[..., None], 3, axis=2).astype(np.float32)


def centroid(img: np.ndarray) -> tuple[float, float]:
    weights = img[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


def test_zoom_scales_offsets_from_the_centre():
    dx, dy = 12.0, -8.0
    out = transform_frame(blob(CENTRE + dx, CENTRE + dy), zoom=1.25)
    x, y = centroid(out)
    assert x - CENTRE == pytest.approx(dx * 1.25, abs=0.5)
    assert y - CENTRE == pytest.approx(dy * 1.25, abs=0.5)


def test_zoom_about_a_given_centre():
    cx, cy = 30.0, 60.0
    out = transform_frame(blob(cx + 10, cy), zoom=2.0, center=(cx, cy))
    x, y = centroid(out)
    assert x == pytest.approx(cx + 20, abs=0.5)
    assert y == pytest.approx(cy, abs=0.5)


def test_translation_is_sub_pixel():
    img = blob(CENTRE, CENTRE)
    x0, y0 = centroid(img)
    x, y = centroid(transform_frame(img, tx=3.5, ty=-2.0))
    assert x - x0 == pytest.approx(3.5, abs=0.1)
    assert y - y0 == pytest.approx(-2.0, abs=0.1)


def test_rotation_is_counter_clockwise_on_screen():
    dx = 20.0
    out = transform_frame(blob(CENTRE + dx, CENTRE), angle=90)
    x, y = centroid(out)
    assert x == pytest.approx(CENTRE, abs=0.5)
    assert y == pytest.approx(CENTRE - dx, abs=0.5)


def test_zoom_out_reflects_instead_of_leaving_black_corners():
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    img = np.repeat((0.5 + 0.5 * (xs + ys) / (2 * SIZE))[..., None], 3, axis=2).astype(np.float32)
    out = transform_frame(img, zoom=0.8)
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert corner.min() > 0.4


def test_identity_returns_an_identical_array():
    img = np.random.default_rng(0).random((17, 23, 3)).astype(np.float32)
    out = transform_frame(img)
    assert out.dtype == img.dtype
    assert np.array_equal(out, img)
    assert out is not img


def test_uint8_stays_uint8_and_shape_is_kept():
    img = (np.random.default_rng(1).random((40, 60, 3)) * 255).astype(np.uint8)
    out = transform_frame(img, zoom=1.1, angle=5)
    assert out.dtype == np.uint8
    assert out.shape == img.shape
    single = transform_frame(img[..., :1].copy(), zoom=1.1)
    assert single.shape == (40, 60, 1)


def test_transform_matrix_maps_the_centre_to_itself_plus_shift():
    matrix = transform_matrix(101, 51, zoom=1.3, angle=37, tx=2, ty=-1)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    x, y = matrix @ np.array([50.0, 25.0, 1.0])
    assert (x, y) == pytest.approx((52.0, 24.0))


def test_transform_matrix_rejects_bad_zoom():
    with pytest.raises(ZoomdreamError, match="zoom must be a positive number"):
        transform_matrix(10, 10, zoom=0)
