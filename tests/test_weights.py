"""A weights file that is damaged, crafted or simply the wrong file is a one-line error, never a crash.

The legacy .pth files here are written by hand, as the pickle stream PyTorch < 1.6 wrote: stand-ins for
torch's globals are pickled and then renamed to them, so no torch is needed.
"""
import collections
import io
import os
import pickle
import random
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoomdream.errors import ZoomdreamError
from zoomdream.models import load_model
from zoomdream.pth import MAGIC_NUMBER, load_legacy_pth

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


class FloatStorage:
    """Stand-in, pickled as the global torch.FloatStorage."""


def _rebuild_tensor_v2(*args):
    """Stand-in, pickled as the global torch._utils._rebuild_tensor_v2."""


class Storage:
    """Pickles as the persistent id ``pid``, as torch's storages do."""

    def __init__(self, pid):
        self.pid = pid


class Tensor:
    """Pickles as torch's legacy tensor: _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return _rebuild_tensor_v2, self.args


TORCH_GLOBALS = {FloatStorage: b"torch\nFloatStorage", _rebuild_tensor_v2: b"torch._utils\n_rebuild_tensor_v2"}


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def tensor(key, size, stride=None, offset=0, numel=1):
    """A float tensor viewing storage ``key``; contiguous unless ``stride`` is given."""
    if stride is None:
        stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
    return Tensor(Storage(("storage", FloatStorage, key, "cpu", numel, None)), offset, size, stride)


def legacy_pth(state, storages, *, magic=MAGIC_NUMBER, protocol=1001, sys_info=SYS_INFO, keys=None, counts=None):
    """The bytes of a legacy checkpoint of ``state`` ({name: tensor(...)}, or a pickle's bytes) over
    ``storages`` ({key: float32 array}); each keyword replaces one field of a valid file."""
    out = io.BytesIO()
    for header in (magic, protocol, sys_info):
        pickle.dump(header, out, protocol=2)
    if isinstance(state, bytes):  # a hand-written pickle
        out.write(state)
    else:
        _Pickler(out, protocol=2).dump(collections.OrderedDict(state) if isinstance(state, dict) else state)
    pickle.dump(list(storages) if keys is None else keys, out, protocol=2)
    for key, array in storages.items():
        count = array.size if counts is None else counts[key]
        out.write(struct.pack("<q", count) + np.asarray(array, np.float32).tobytes())
    data = out.getvalue()
    for stand_in, real in TORCH_GLOBALS.items():  # GLOBAL opcodes: b"c" module "\n" name "\n"
        data = data.replace(f"c{__name__}\n{stand_in.__name__}\n".encode(), b"c" + real + b"\n")
    assert __name__.encode() not in data
    return data


STORAGE = np.arange(24, dtype=np.float32)
BIAS = np.array([0.5, -1.5, 2.5], np.float32)


def valid_state():
    return {
        "conv.weight": tensor("0", (2, 3, 4), numel=24),
        "conv.weight_t": tensor("0", (4, 6), stride=(1, 4), numel=24),  # a transposed view of the same storage
        "tail": tensor("0", (2, 2), stride=(2, 1), offset=20, numel=24),  # ends on the storage's last element
        "bias": tensor("1", (3,), numel=3),
        "empty": tensor("1", (0, 3), numel=3),
    }


def valid_pth(**fields):
    return legacy_pth(valid_state(), {"0": STORAGE, "1": BIAS}, **fields)


def write(tmp_path, data, name="model.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_valid_checkpoint_loads_back(tmp_path):
    state = load_legacy_pth(write(tmp_path, valid_pth()))
    np.testing.assert_array_equal(state["conv.weight"], STORAGE.reshape(2, 3, 4))
    np.testing.assert_array_equal(state["conv.weight_t"], STORAGE.reshape(6, 4).T)
    np.testing.assert_array_equal(state["tail"], [[20, 21], [22, 23]])
    np.testing.assert_array_equal(state["bias"], BIAS)
    assert state["empty"].shape == (0, 3) and all(a.dtype == np.float32 for a in state.values())


CHILD = """
import resource, sys
from zoomdream.pth import load_legacy_pth
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # nor may a crafted file take the machine's memory
try:
    load_legacy_pth(sys.argv[1])
except ValueError as e:
    print(e)
    sys.exit(3)
"""


def load_in_subprocess(path):
    """Load ``path`` in a child process, so that a crash fails this test instead of killing pytest; returns
    the ValueError's message."""
    child = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60)
    assert child.returncode >= 0, f"the loader was killed by signal {-child.returncode}"
    assert child.returncode == 3, f"expected ValueError, got:\n{child.stderr}"
    return child.stdout.strip()


ONE = {"0": np.ones(1, np.float32)}
TOO_BIG = "does not fit its storage"
CRAFTED = {  # name: (state, storages, other fields, message)
    "stride past storage": ({"w": tensor("0", (10**7,), stride=(10**6,))}, ONE, {}, TOO_BIG),
    "offset past storage": ({"w": tensor("0", (1,), offset=1)}, ONE, {}, TOO_BIG),
    "one past the end": ({"w": tensor("0", (2, 2), stride=(2, 1), offset=21)}, {"0": STORAGE}, {}, TOO_BIG),
    "huge broadcast": ({"w": tensor("0", (10**6, 10**6), stride=(0, 0))}, ONE, {}, TOO_BIG),
    "negative offset": ({"w": tensor("0", (1,), offset=-4)}, ONE, {}, "negative"),
    "negative size": ({"w": tensor("0", (-1,))}, ONE, {}, "negative"),
    "negative stride": ({"w": tensor("0", (2,), stride=(-1,))}, ONE, {}, "negative"),
    "float offset": ({"w": tensor("0", (1,), offset=0.5)}, ONE, {}, "malformed"),
    "size as list": ({"w": tensor("0", [1])}, ONE, {}, "malformed"),
    "size of strings": ({"w": tensor("0", ("1",), stride=(1,))}, ONE, {}, "malformed"),
    "stride too short": ({"w": tensor("0", (1, 1), stride=(1,))}, ONE, {}, "malformed"),
    "unknown storage key": ({"w": tensor("9", (1,)), "v": tensor("0", (1,))}, ONE, {"keys": ["0"]},
                            "refers to a storage the file does not hold"),
    "storage not in the list": ({"w": tensor("0", (1,))}, ONE, {"keys": ["0", "7"]}, "storage list"),
    "huge storage count": ({"w": tensor("0", (1,))}, ONE, {"counts": {"0": 10**15}}, "more than the file holds"),
    "negative storage count": ({"w": tensor("0", (1,))}, ONE, {"counts": {"0": -1}}, "more than the file holds"),
    "int storage key": ({"w": Tensor(Storage(("storage", FloatStorage, 0, "cpu", 1, None)), 0, (1,), (1,))}, ONE,
                        {"keys": [0]}, "malformed storage reference"),
    "storage view": ({"w": Tensor(Storage(("storage", FloatStorage, "0", "cpu", 1, ("0", 0, 1))), 0, (1,), (1,))},
                     ONE, {}, "storage views are not supported"),
    "storage not a reference": ({"w": Tensor(("0", 1), 0, (1,), (1,))}, ONE, {"keys": []}, "refers to a storage"),
    # Pickles that crash CPython's own unpickler: hashing a key nested a million deep overflows the C stack;
    # a memo index of 4 billion makes the C memo array that long.
    "deeply nested key": (b"\x80\x02})" + b"\x85" * 10**6 + b"K\x01s.", ONE, {"keys": []}, "nested more than"),
    "huge memo index": (b"\x80\x02}r\xf0\xff\xff\xff.", ONE, {"keys": []}, "LONG_BINPUT 4294967280"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_checkpoint_is_a_value_error_not_a_crash(tmp_path, case):
    state, storages, fields, message = CRAFTED[case]
    assert message in load_in_subprocess(write(tmp_path, legacy_pth(state, storages, **fields)))


def _zip_checkpoint():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
    return out.getvalue()


NOT_A_CHECKPOINT = {  # name: (bytes, message)
    "empty file": (b"", "empty"),
    "random bytes": (random.Random(0).randbytes(4096), "not a legacy PyTorch checkpoint"),
    "text": (b"version https://git-lfs.github.com/spec/v1\n", "not a legacy PyTorch checkpoint"),
    "zip format": (_zip_checkpoint(), "a zip-format"),
    "pickle of something else": (pickle.dumps([1, 2, 3], protocol=2), "bad magic number"),
    "truncated header": (valid_pth()[:30], "not a legacy PyTorch checkpoint"),
    "truncated state dict": (valid_pth()[:200], "unreadable state dict"),
    "truncated storage": (valid_pth()[:-4], "truncated checkpoint: storage 1 declares 3 elements"),
    "storages cut off": (valid_pth()[:-20], "truncated checkpoint: storage 1 is missing"),
    "wrong protocol": (valid_pth(protocol=1000), "protocol version"),
    "sys info not a dict": (valid_pth(sys_info=[1]), "system info"),
    "big endian": (valid_pth(sys_info={"little_endian": False}), "big-endian"),
    "state dict is a list": (legacy_pth([1, 2], {}), "not a state dict: the checkpoint holds a list"),
    "names not strings": (legacy_pth({1: tensor("0", (1,))}, ONE), "not a state dict"),
    "code in the pickle": (valid_pth().replace(b"ccollections\nOrderedDict\n", b"cos\nsystem\n"), "not allowed"),
}


@pytest.mark.parametrize("case", NOT_A_CHECKPOINT)
def test_not_a_checkpoint_is_a_one_line_value_error(tmp_path, case):
    data, message = NOT_A_CHECKPOINT[case]
    with pytest.raises(ValueError, match=message) as e:
        load_legacy_pth(write(tmp_path, data))
    assert "\n" not in str(e.value)


# Derandomized like tests/test_fuzz.py, so CI runs the same cases; ZOOMDREAM_FUZZ_EXAMPLES=20000 hunts afresh.
EXAMPLES = int(os.environ.get("ZOOMDREAM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="ZOOMDREAM_FUZZ_EXAMPLES" not in os.environ,
                database=None, suppress_health_check=[HealthCheck.too_slow])


def _load_or_value_error(path, data):
    path.write_bytes(data)
    try:
        state = load_legacy_pth(path)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        assert all(isinstance(a, np.ndarray) for a in state.values())


def test_fuzz_random_bytes(tmp_path):
    path = tmp_path / "fuzz.pth"

    @FUZZ
    @given(st.binary(max_size=600))
    def check(data):
        _load_or_value_error(path, data)

    check()


def test_fuzz_mutated_checkpoints(tmp_path):
    path = tmp_path / "fuzz.pth"
    valid = valid_pth()

    @FUZZ
    @given(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=4),
           st.integers(1, len(valid)))
    def check(edits, length):
        data = bytearray(valid)
        for position, byte in edits:
            data[position] = byte
        _load_or_value_error(path, bytes(data[:length]))

    check()


WRONG_WEIGHTS = {  # name: (model, file name, bytes, the reason given)
    "lite garbage": ("efficientnet-lite0", "lite0.pth", random.Random(1).randbytes(3000), "not a legacy PyTorch"),
    "lite zip format": ("efficientnet-lite0", "lite0.pth", _zip_checkpoint(), "a zip-format"),
    "lite other network": ("efficientnet-lite0", "lite0.pth", valid_pth(), "not an EfficientNet-Lite checkpoint"),
    "lite truncated": ("efficientnet-lite0", "lite0.pth", valid_pth()[:300], "not a legacy PyTorch checkpoint"),
    "keras garbage h5": ("vgg16", "vgg16.h5", random.Random(2).randbytes(3000), ""),
    "keras garbage .keras": ("vgg16", "vgg16.keras", random.Random(3).randbytes(3000), ""),
    "keras zip not keras": ("vgg16", "vgg16.keras", _zip_checkpoint(), ""),
    "keras .pth": ("vgg16", "vgg16.pth", valid_pth(), ""),
}


@pytest.mark.parametrize("case", WRONG_WEIGHTS)
def test_wrong_weights_file_is_one_zoomdream_error(tmp_path, case):
    model, name, data, reason = WRONG_WEIGHTS[case]
    path = write(tmp_path, data, name)
    with pytest.raises(ZoomdreamError) as e:
        load_model(model, weights=str(path))
    message = str(e.value)
    assert message.startswith(f"cannot load {model} weights from '{path}': {reason}")
    assert message.endswith(" (is it the right file?)") and "\n" not in message
