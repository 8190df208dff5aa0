"""Live controls: settings changed while `zoomdream live` runs, over OSC (a real UDP server and client), from
presets, and read by the live frame source on the next frame; schedules that read the music causally."""
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient

from conftest import wait_for
from zoomdream.config import make_job, save_job
from zoomdream.errors import ZoomdreamError
from zoomdream.live.controls import Controls
from zoomdream.loops import live as live_loop
from zoomdream.live.osc import OscControl

SAMPLE = "samples/chelsea.png"


def job(**settings):
    return make_job({"command": "live", "input": SAMPLE, "max_size": 64, "steps": 1, "octaves": 1,
                     "step_size": 0.0, **settings})


class Said(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def test_a_change_lands_whole_or_not_at_all():
    controls = Controls(job())
    controls.update({"step_size": 0.05, "octaves": 2, "layers": "block5:1"})
    look = controls.look(0)
    assert (look.dream.step_size, look.dream.octaves, look.layers) == (0.05, 2, "block5:1")
    for bad, message in [({"step_size": 11}, "--step-size 11.0 is out of range"),
                         ({"steps": "t/0"}, "cannot evaluate"),
                         ({"layers": "block99:1"}, "unknown layer 'block99'"),
                         ({"layers": "0:(block5)"}, "live takes one layer spec, not keyframes"),
                         ({"zoom": 1.05}, "zoom moves a --noise zoom"),
                         ({"colour": 1}, "unknown live setting 'colour'"),
                         ({"octaves": 2.5}, "--octaves 2.5 must be a whole number"),
                         ({"blend": 0.2, "smooth": 2}, "--smooth 2 is out of range")]:
        with pytest.raises(ZoomdreamError, match=message):
            controls.update(bad)
    look = controls.look(1)
    assert (look.dream.step_size, look.dream.octaves, look.blend, look.version) == (0.05, 2, 0.5, 1)


def test_a_noise_session_takes_motion_checked_against_its_frame():
    controls = Controls(make_job({"command": "live", "noise": True, "size": "64x48"}), zoom_size=(64, 48))
    controls.set("tx", "3*sin(t)")
    assert controls.look(2).motion["tx"] == pytest.approx(3 * np.sin(2))
    with pytest.raises(ZoomdreamError, match="--tx is 100 at frame 0, outside -64 to 64"):
        controls.set("tx", 100)


class Music:
    """The analyser's side of the seam: features of the audio heard so far."""

    def __init__(self):
        self.values = {"bass": 0.0}

    def snapshot(self) -> dict:
        return dict(self.values)


def test_schedules_read_the_music_as_heard_when_each_frame_is_taken():
    controls = Controls(job(step_size="0.01 + 0.1*bass", steps="1 + 4*smooth(bass, 0, 1.0)"))
    controls.audio = music = Music()
    assert controls.look(0, when=0.0).dream.step_size == pytest.approx(0.01)
    music.values["bass"] = 1.0  # a kick: the next frame sees it at once (no attack), and it falls back slowly
    look = controls.look(1, when=0.5)
    assert (look.dream.step_size, look.dream.steps) == (pytest.approx(0.11), 5)
    music.values["bass"] = 0.0
    assert controls.look(2, when=1.5).dream.steps == round(1 + 4 * np.exp(-1.0))  # one second of release
    assert controls.look(3, when=1.5).dream.step_size == pytest.approx(0.01)


def test_a_preset_sets_the_live_settings_it_holds_and_nothing_else(tmp_path):
    path = tmp_path / "look.job.toml"
    save_job(make_job({"command": "video", "input": "clip.mp4", "output": "out.mp4", "steps": 3, "step_size": 0.04,
                       "layers": "block8:1", "blend": 0.25}), path)
    controls = Controls(job())
    assert sorted(controls.load_preset(str(path))) == ["blend", "layers", "octave_scale", "octaves", "smooth",
                                                         "step_size", "steps"]
    look = controls.look(0)
    assert (look.dream.steps, look.dream.step_size, look.layers, look.blend) == (3, 0.04, "block8:1", 0.25)
    assert [controls.shown(name) for name in ("steps", "step_size", "layers", "blend")] == [3, 0.04, "block8:1", 0.25]
    controls.set("step_size", "0.02 + 0.01*bass")  # a control shows an expression's value at frame 0 in silence
    assert controls.shown("step_size") == 0.02
    empty = tmp_path / "empty.job.toml"
    empty.write_text('command = "image"\n')
    with pytest.raises(ZoomdreamError, match="sets none of the live settings"):
        controls.load_preset(str(empty))


def test_osc_changes_the_strength_of_the_next_frames_and_ignores_bad_messages(lite0):
    settings = live_loop.resolve(job())
    said = Said()
    controls = Controls(job(), say=said)
    osc = OscControl("127.0.0.1:0", controls, said)
    try:
        source = live_loop.Source(settings, lite0, controls)
        rng = np.random.default_rng(0)
        still = source.still.astype(np.float32)

        def change(frames) -> float:  # how far the frames are from the source: the dream's strength
            return float(np.mean([np.abs(source.frame(t, None, rng).astype(np.float32) - still).mean()
                                  for t in frames]))

        calm = change(range(3))
        client = SimpleUDPClient("127.0.0.1", osc.port)
        client.send_message("/zoomdream/step_size", 0.25)
        client.send_message("/zoomdream/steps", 4)
        wait_for(lambda: controls.version == 2, 30, "the OSC messages")
        strong = change(range(3, 6))
        client.send_message("/zoomdream/steps", "many")
        client.send_message("/zoomdream/nothing", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"not osc", ("127.0.0.1", osc.port))
        wait_for(lambda: len([line for line in said if "ignored" in line]) == 3, 30, "three bad messages said")
    finally:
        osc.close()
    assert calm < 2 and strong > 10 * max(calm, 0.5), (calm, strong)
    assert controls.version == 2
    bad = [line for line in said if "ignored" in line]
    assert bad[0].startswith("zoomdream: osc: --steps: 'many' is not allowed") and "\n" not in "".join(bad)
    assert "unknown address /zoomdream/nothing" in bad[1] and "malformed packet" in bad[2]


def test_a_layer_the_dreamer_has_changes_weights_and_a_new_one_rebuilds_it(lite0):
    controls = Controls(job(layers="block5:1,block8:1"))
    source = live_loop.Source(live_loop.resolve(job(layers="block5:1,block8:1")), lite0, controls)
    compiled = source.dreamer
    source.use_layers("block8:2")
    assert source.dreamer is compiled and source.weights.tolist() == [0.0, 2.0]
    source.use_layers("block3:1")
    assert source.dreamer is not compiled and source.dreamer.objective.layers == ["block3"]


def test_osc_on_a_port_in_use_or_out_of_range_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        for osc, message in [(f"127.0.0.1:{port}", f"cannot listen for OSC on 127.0.0.1:{port}: Address already "
                                                   f"in use (choose another --osc port)"),
                             ("99999", "--osc 99999 is out of range (give a value from 0 to 65535)"),
                             ("nine", "--osc 'nine' is not a port (give a UDP port such as 9000, or HOST:PORT)")]:
            run = subprocess.run([sys.executable, "-m", "zoomdream.cli", "live", "--noise", "--size", "64x48", "-o",
                                  str(tmp_path / "o.mp4"), "--osc", osc, "--seconds", "1"],
                                 capture_output=True, text=True, timeout=120)
            assert (run.returncode, run.stderr.strip()) == (2, f"zoomdream: error: {message}")
            assert "tensorflow" not in run.stderr.lower() and not (tmp_path / "o.mp4").exists()


def test_steps_0_is_no_dream_at_every_level_of_the_governor():
    from zoomdream.settings import DreamSettings

    assert live_loop.levels(DreamSettings(octaves=2, steps=0)) == [(2, 0, 1.0)]
    assert live_loop.levels(DreamSettings(octaves=2, steps=2))[-1] == (1, 1, 0.5)
