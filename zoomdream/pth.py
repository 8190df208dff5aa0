"""Read legacy-format PyTorch ``.pth`` checkpoints into numpy arrays, without torch.

The legacy format (before PyTorch 1.6) is a stream of pickles: a magic number, the protocol version, system
info, the object itself (whose tensors point at storages through ``persistent_load``), the list of storage
keys, then each storage's raw bytes prefixed by its element count. A restricted unpickler only admits the few
globals such a file needs, so a checkpoint cannot run code on load.
"""
from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])

class _TensorRef:
    """A tensor's view of a storage, resolved once the storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def resolve(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        key, dtype = self.storage
        flat = arrays[key]
        item = dtype.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        ).copy()

def _rebuild_tensor_v2(storage, offset, size, stride, *_unused):
    return _TensorRef(storage, offset, size, stride)

class _Unpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    }

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed") from None

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        _, storage_type, key, _location, _numel = pid[:5]
        return (str(key), storage_type.dtype)

class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint header")

def load_legacy_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Return the state dict of a legacy PyTorch checkpoint as ``{name: ndarray}``."""
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != MAGIC_NUMBER:
            raise ValueError(f"{path} is not a legacy PyTorch checkpoint (bad magic number)")
        _PlainUnpickler(f).load()  # protocol version
        sys_info = _PlainUnpickler(f).load()
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path} was saved big-endian, which is not supported")
        refs = _Unpickler(f).load()
        keys = _PlainUnpickler(f).load()
        dtypes = {}
        for ref in refs.values():
            if isinstance(ref, _TensorRef):
                dtypes[ref.storage[0]] = ref.storage[1]
        arrays = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = dtypes[key]
            arrays[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    return {name: ref.resolve(arrays) for name, ref in refs.items() if isinstance(ref, _TensorRef)}
