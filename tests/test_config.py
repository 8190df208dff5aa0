"""The job schema: saved jobs load back identical, and command-line text equals typed TOML values."""
import pytest

from zoomdream.config import Job, job_to_toml, load_toml, make_job
from zoomdream.errors import ZoomdreamError


def test_saved_job_loads_back_identical(tmp_path):
    job = make_job(dict(command="zoom", input="in.png", output="out.mp4", zoom="0:(1.02), 120:(1.05)",
                        steps="0:(5), 60:(8)", layers="block10[3,4]:1,block12:0.5", frames=10, noise=True,
                        max_loss=12.5, gif_width=320))
    path = tmp_path / "job.toml"
    path.write_text(job_to_toml(job))
    again = make_job(load_toml(path))
    assert again == job and again.settings_hash() == job.settings_hash()


def test_command_line_text_equals_toml_numbers():
    from_cli = make_job(dict(command="zoom", steps="5", step_size="0.03"))
    from_toml = make_job(dict(command="zoom", steps=5, step_size=0.03))
    assert from_cli.settings_hash() == from_toml.settings_hash()


def test_per_command_defaults():
    assert (Job().octaves, Job().steps) == (4, 20)
    assert (Job(command="zoom").octaves, Job(command="zoom").steps) == (2, 5)


@pytest.mark.parametrize("values,pattern", [
    (dict(command="paint"), "unknown command 'paint'"),
    (dict(frames="ten"), "'frames' = 'ten' has the wrong type"),
    (dict(flow="magic"), "flow = 'magic' is not one of"),
])
def test_bad_settings_are_named(values, pattern):
    with pytest.raises(ZoomdreamError, match=pattern):
        make_job(values)


def test_output_change_does_not_block_resume_but_dream_settings_do():
    base = make_job(dict(command="zoom", output="a.mp4"))
    assert make_job(dict(command="zoom", output="b.mp4", crf=23)).settings_hash() == base.settings_hash()
    assert make_job(dict(command="zoom", output="a.mp4", steps=6)).settings_hash() != base.settings_hash()
