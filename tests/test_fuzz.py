"""Property-based fuzzing (Hypothesis) of everything the tool reads: command-line settings, schedule strings,
layer specs, job files, resume state files, images and clips. Whatever comes in, the result is exit 0 or 2
with a one-line message (never a traceback), within seconds, and no input file changes.

The model is not loaded: rendering stops right after validation, which is what these inputs exercise.
Examples are derandomized, so CI runs the same cases every time; ``ZOOMDREAM_FUZZ_EXAMPLES=5000`` hunts with
fresh random ones.
"""
import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoomdream import cli, media, runner
from zoomdream.cli import main
from zoomdream.config import FIELDS, LOOPS
from zoomdream.errors import ZoomdreamError
from zoomdream.store import read_state

SAMPLES = Path(__file__).parent.parent / "samples"
EXAMPLES = int(os.environ.get("ZOOMDREAM_FUZZ_EXAMPLES", "200"))  # set it higher (and random) to hunt locally
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize="ZOOMDREAM_FUZZ_EXAMPLES" not in os.environ,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Validated(Exception):
    """Raised where the model would load: the inputs passed every check."""


@pytest.fixture
def validate_only(monkeypatch):
    def stop(*args, **kwargs):
        raise Validated

    monkeypatch.setattr(runner.jobs, "pin_machine", lambda job: job)
    monkeypatch.setattr(runner.jobs, "load_model", stop)
    # checks need no TensorFlow: its one-off start (8.7 s under load) fell in the first example and broke the
    # 5 s deadline, so the test failed on a loaded machine
    monkeypatch.setattr(cli, "_quiet_tensorflow_start", lambda: None)


def run_cli(capsys, argv) -> tuple[int, str]:
    """Exit code and stderr; a Validated stop counts as success. Anything else escaping is a failed test."""
    try:
        code = main([str(a) for a in argv])
    except Validated:
        code = 0
    except SystemExit as e:  # argparse: a flag that does not parse as its type
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), (argv, code, err)
    if code == 2 and err.startswith("zoomdream: error:"):
        assert len(err.splitlines()) == 1, err
    return code, err


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "-0", "0x10", "", " ", "1_000", "½", "9" * 400]),
)
expressions = st.one_of(
    numbers.map(str),
    st.text(alphabet=string.digits + "t+-*/(),:. sincoexpqrtabflorw", max_size=40),
    st.builds(lambda a, b, c: f"{a}:({b}), {c}:(t*{b})", st.integers(-5, 10 ** 12), numbers, st.integers(0, 99)),
)
layer_specs = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "[],:.-_ ", max_size=30),
    st.builds(lambda n, c, w: f"block{n}[{c}]:{w}", st.integers(-2, 30), st.integers(0, 10 ** 9), numbers),
)
NUMERIC = ["frames", "fps", "steps", "step_size", "octaves", "octave_scale", "tile", "seed", "noise_scale",
           "color_match", "crf", "gif_fps", "gif_width", "preview", "max_loss", "tv", "max_size"]
SCHEDULED = ["zoom", "angle", "tx", "ty", "steps", "step_size"]
VIDEO_ONLY = ["start", "duration", "every", "blend", "smooth"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@FUZZ
@given(data=st.data())
def test_zoom_settings(tmp_path, capsys, validate_only, data):
    argv = ["zoom", "--noise", "-o", tmp_path / "out.mp4"]
    for name in data.draw(st.lists(st.sampled_from(NUMERIC + ["size", "center", "layers"]), max_size=4)):
        if name in SCHEDULED:
            value = data.draw(expressions)
        elif name == "layers":
            value = data.draw(layer_specs)
        elif name in ("size", "center"):
            value = data.draw(st.builds(lambda a, b, sep: f"{a}{sep}{b}", numbers, numbers, st.sampled_from("x,")))
        else:
            value = data.draw(numbers)
        argv += [flag(name), value]
    run_cli(capsys, argv)
    assert os.listdir(tmp_path) == []


@FUZZ
@given(name=st.sampled_from(VIDEO_ONLY + ["steps", "octaves", "max_size", "seed"]), value=numbers)
def test_video_settings(tmp_path, capsys, validate_only, name, value):
    clip = Path(__file__).parent / "data" / "example.mp4"
    before = clip.read_bytes()
    run_cli(capsys, ["video", clip, "-o", tmp_path / "out.mp4", flag(name), value])
    assert clip.read_bytes() == before


toml_values = st.one_of(st.text(max_size=20), st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(), st.booleans(),
                        st.lists(st.integers(), max_size=3))
toml_keys = st.one_of(st.sampled_from([*FIELDS, "schema", "interpolation"]), st.text(min_size=1, max_size=10))


def toml_text(entries: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v))
        return json.dumps(v)

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in entries.items())


@FUZZ
@given(entries=st.dictionaries(toml_keys, toml_values, max_size=6), command=st.sampled_from(["image", *LOOPS]))
def test_job_files(tmp_path, capsys, validate_only, entries, command):
    image = tmp_path / "in.png"
    if not image.exists():
        image.write_bytes((SAMPLES / "chelsea.png").read_bytes())
    job = tmp_path / "job.toml"
    job.write_text(toml_text({"command": command, "input": str(image), "output": str(tmp_path / "out.png"),
                              **entries}))
    before = job.read_bytes(), image.read_bytes()
    run_cli(capsys, ["render", job])
    assert (job.read_bytes(), image.read_bytes()) == before


@FUZZ
@given(content=st.binary(max_size=300))
def test_job_files_of_random_bytes(tmp_path, capsys, validate_only, content):
    job = tmp_path / "job.toml"
    job.write_bytes(content)
    run_cli(capsys, ["render", job])
    assert job.read_bytes() == content


state_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=8)


@FUZZ
@given(state=st.one_of(st.dictionaries(st.sampled_from(["settings", "span", "done", "carry", "version"]),
                                       state_values), state_values))
def test_resume_state_files(tmp_path, state):
    (tmp_path / "state.json").write_text(json.dumps(state))
    try:
        read_state(tmp_path)
    except ZoomdreamError as e:
        assert "\n" not in str(e)


def png_bytes():
    rng = np.random.default_rng(0)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "zoomdream-fuzz-seed.png"
    media.write_image(path, rng.integers(0, 255, (12, 16, 3), np.uint8))
    return path.read_bytes()


SEED_PNG = png_bytes()
CLIP = (Path(__file__).parent / "data" / "example.mp4").read_bytes()[:20000]


@FUZZ
@given(cut=st.integers(0, len(SEED_PNG)), flips=st.lists(st.tuples(st.integers(0, len(SEED_PNG) - 1),
                                                                  st.integers(0, 255)), max_size=8))
def test_damaged_images(tmp_path, cut, flips):
    data = bytearray(SEED_PNG[:cut])
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    path = tmp_path / "x.png"
    path.write_bytes(bytes(data))
    try:
        img = media.read_image(path)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    except ZoomdreamError as e:
        assert "\n" not in str(e)
    assert path.read_bytes() == bytes(data)


@settings(FUZZ, max_examples=max(12, EXAMPLES // 16))
@given(cut=st.integers(0, len(CLIP)), junk=st.binary(max_size=64))
def test_damaged_clips(tmp_path, cut, junk):
    path = tmp_path / "x.mp4"
    path.write_bytes(CLIP[:cut] + junk)
    try:
        for frame in media.read_video(path):
            assert frame.dtype == np.uint8
    except ZoomdreamError as e:
        assert "\n" not in str(e)
