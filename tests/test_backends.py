"""The JAX path (for GPUs without TensorFlow) runs the same engine: checked on CPU in a child process,
since Keras picks its backend once per process."""
import json
import os
import subprocess
import sys

import numpy as np

from zoomdream.ascent import DreamSettings

JAX_SCRIPT = r"""
import json, sys
import numpy as np
from zoomdream.ascent import Dreamer, DreamSettings
from zoomdream.models import load_model
from zoomdream.objective import make_objective
from zoomdream import backend
assert backend.name() == "jax"
photo = np.load(sys.argv[1])
dreamer = Dreamer(load_model("efficientnet-lite0", precision="float32"), make_objective("block5:1,block8:1"), tile=64)
stepped, before = dreamer.step(photo, np.array([5, 9]), 0.02)
climbed = dreamer.ascend(photo, 4, 0.02, np.random.default_rng(0))
_, after = dreamer.step(climbed, np.zeros(2, np.int32), 0.0)
out = dreamer.dream(photo, DreamSettings(octaves=2, steps=2), seed=0)
np.save(sys.argv[2], np.asarray(stepped))

# The zoom's device path as a GPU runs it (jax.jit), against the CPU's OpenCV path, on a frame and a motion.
from zoomdream.frames.colour import color_match, color_match_on_device, stats
from zoomdream.frames.levels import to_device, to_host, to_uint8, to_unit
from zoomdream.frames.warp import as_3x3, transform_matrix, warp_evenly, warp_evenly_on_device
frame = to_uint8(photo)
matrix = as_3x3(transform_matrix(96, 64, zoom=1.05, angle=3.0, tx=1.5, ty=-2.0, center=None))
reference = stats(to_unit(frame) * 0.7)
kept, _ = to_host(color_match_on_device(warp_evenly_on_device(to_device(frame), matrix), reference, 0.7))
on_cpu = to_uint8(color_match(warp_evenly(to_unit(frame), matrix), reference, 0.7))
inside = np.abs(kept.astype(int) - on_cpu)[4:-4, 4:-4]  # borders mirror differently
print(json.dumps({"before": float(before), "after": float(after), "shape": list(out.shape),
                  "device": [int(inside.max()), float(inside.mean())]}))
"""


def test_jax_backend_matches_tensorflow(tmp_path, dreamer, photo):
    np.save(tmp_path / "photo.npy", photo)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    child = subprocess.run([sys.executable, "-c", JAX_SCRIPT, tmp_path / "photo.npy", tmp_path / "step.npy"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["after"] > result["before"]
    assert result["device"][0] <= 1 and result["device"][1] < 0.05  # the compiled warp and colours: rounding
    tf_out = dreamer.dream(photo, DreamSettings(octaves=2, steps=2), seed=0)
    assert result["shape"] == list(tf_out.shape)
    tf_step, _ = dreamer.step(photo, np.array([5, 9]), 0.02)
    jax_step = np.load(tmp_path / "step.npy")
    assert np.abs(jax_step - np.asarray(tf_step)).mean() < 1e-3
