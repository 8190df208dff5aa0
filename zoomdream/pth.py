"""Read legacy-format PyTorch ``.pth`` checkpoints into numpy arrays, without torch.

The legacy format (before PyTorch 1.6) is a stream of pickles: a magic number, the protocol version, system
info, the object itself (whose tensors point at storages through ``persistent_load``), the list of storage
keys, then each storage's raw bytes prefixed by its element count. A restricted unpickler only admits the few
globals such a file needs, so a checkpoint cannot run code on load; and every number the file declares is
checked against what the file holds before it is used, so a damaged or crafted file is a ValueError, never
a crash or a huge allocation.
"""
from __future__ import annotations

import collections
import math
import mmap
import pickle
import pickletools
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

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

MAX_DEPTH = 64  # how deeply a pickle's objects may nest; a state dict nests about 5 deep

# What unpickling arbitrary bytes raises (the pickle docs: "not necessarily limited to" the first few);
# MemoryError comes from an opcode that declares a huge length.
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError, TypeError, ValueError,
                  OverflowError, MemoryError)


class _StorageType(str):
    """A storage type's name. A str without ``__dict__``, so a pickle's BUILD opcode cannot change it."""

    __slots__ = ()


class _TensorRef(NamedTuple):
    """A tensor's view of a storage, as the file declares it: checked only once the storages are read.
    A tuple, so a pickle's BUILD opcode cannot change it after it is made."""

    storage: object
    offset: object
    size: object
    stride: object


def _rebuild_tensor_v2(storage, offset, size, stride, *_unused):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Admits the globals a state dict needs; records each storage key's dtype in ``dtypes``."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    }

    def __init__(self, f):
        super().__init__(f)
        self.dtypes: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed") from None

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]) -> key
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError("malformed storage reference")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        key, dtype = pid[2], np.dtype(STORAGE_DTYPES[pid[1]])
        if self.dtypes.setdefault(key, dtype) != dtype:
            raise pickle.UnpicklingError(f"storage {key} is declared with two types")
        return key


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint header")


def _scan(f) -> None:
    """Walk one pickle's opcodes, building nothing, to refuse what makes CPython's unpickler crash instead of
    raise: a memo index far past the pickle's size (the C memo is an array: the index alone allocates
    gigabytes) and objects nested deeper than MAX_DEPTH (hashing a deeply nested tuple overflows the C
    stack). Tracks each stack item's nesting depth by pickletools' stack effect of each opcode."""
    stack, memo = [], {}  # nesting depth of each stack item; None stands for a MARK
    for op, arg, pos in pickletools.genops(f):
        before, after = op.stack_before, op.stack_after
        if pickletools.markobject in before:  # the items above the last MARK, and those listed below it
            if None not in stack:
                raise ValueError(f"{op.name} without a MARK")
            mark = len(stack) - 1 - stack[::-1].index(None)
            start = mark - before.index(pickletools.markobject)
            popped = stack[start:mark] + stack[mark + 1:]
        else:
            start = len(stack) - len(before)
            popped = stack[start:]
        if start < 0 or None in popped:
            raise ValueError(f"{op.name} on too short a stack")
        del stack[start:]
        if before and after and after[0] is before[0]:  # changed in place: APPEND, SETITEMS, BUILD, REDUCE...
            depth = max([popped[0]] + [1 + d for d in popped[1:]])
        else:  # a new object holding what it consumed
            depth = max((1 + d for d in popped), default=0)
        if "GET" in op.name:
            depth = memo.get(arg, 0)
        if depth > MAX_DEPTH:
            raise ValueError(f"objects nested more than {MAX_DEPTH} deep")
        stack.extend(None if item is pickletools.markobject else depth for item in after)
        if "PUT" in op.name or op.name == "MEMOIZE":
            if not stack or stack[-1] is None or (arg or 0) > pos:  # each memoized object took a byte or more
                raise ValueError(f"{op.name} {arg} at byte {pos}")
            memo[len(memo) if arg is None else arg] = stack[-1]


def _unpickle(f, unpickler: pickle.Unpickler, what: str):
    """The next pickle in ``f``, scanned first; anything wrong with it is a one-line ValueError."""
    start = f.tell()
    try:
        _scan(f)
        f.seek(start)
        return unpickler.load()
    except _PICKLE_ERRORS as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"not a legacy PyTorch checkpoint: unreadable {what} ({reason})") from None


def _read_storages(f, keys, dtypes: dict[str, np.dtype]) -> dict[str, np.ndarray]:
    """Each storage is an 8-byte element count, then its bytes: a count is checked against the bytes the
    file has left before anything is allocated for it."""
    if not (isinstance(keys, list) and all(isinstance(key, str) and key in dtypes for key in keys)):
        raise ValueError("corrupt checkpoint: the storage list does not match the tensors")
    arrays = {}
    for key in keys:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"truncated checkpoint: storage {key} is missing")
        (count,) = struct.unpack("<q", head)
        nbytes = count * dtypes[key].itemsize
        if count < 0 or nbytes > f.size() - f.tell():
            raise ValueError(f"truncated checkpoint: storage {key} declares {count} elements, "
                             f"more than the file holds")
        arrays[key] = np.frombuffer(f.read(nbytes), dtypes[key])
    return arrays


def _is_ints(value) -> bool:
    return isinstance(value, tuple) and all(type(v) is int for v in value)


def _view(name: str, ref: _TensorRef, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor as an array, once its view is checked to lie inside its storage: ``as_strided`` reads
    whatever memory the numbers point at."""
    if not (type(ref.offset) is int and _is_ints(ref.size) and _is_ints(ref.stride)
            and len(ref.size) == len(ref.stride)):
        raise ValueError(f"corrupt checkpoint: tensor {name!r} has a malformed offset, size or stride")
    flat = arrays.get(ref.storage) if isinstance(ref.storage, str) else None
    if flat is None:
        raise ValueError(f"corrupt checkpoint: tensor {name!r} refers to a storage the file does not hold")
    if ref.offset < 0 or min(ref.size + ref.stride, default=0) < 0:
        raise ValueError(f"corrupt checkpoint: tensor {name!r} has a negative offset, size or stride")
    if 0 in ref.size:
        return np.zeros(ref.size, flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= flat.size or math.prod(ref.size) > flat.size:  # the second: no huge broadcast views either
        raise ValueError(f"corrupt checkpoint: tensor {name!r} (offset {ref.offset}, size {ref.size}, "
                         f"stride {ref.stride}) does not fit its storage of {flat.size} elements")
    strides = [s * flat.itemsize if n > 1 else 0 for n, s in zip(ref.size, ref.stride)]
    return np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.size, strides).copy()


def load_legacy_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Return the state dict of a legacy PyTorch checkpoint as ``{name: ndarray}``.

    Anything else, damaged or crafted, raises ValueError with a one-line reason: the file comes from the
    user, so a bad one must be an error they can read, not a crash.
    """
    # Read through an mmap: a length the file declares past its end is then a short read, not an allocation.
    with open(path, "rb") as file:
        if not file.read(4):
            raise ValueError("not a legacy PyTorch checkpoint: the file is empty")
        f = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    with f:
        if f[:4] == b"PK\x03\x04":
            raise ValueError("a zip-format PyTorch checkpoint (torch >= 1.6), which is not supported: re-save "
                             "it with torch.save(..., _use_new_zipfile_serialization=False)")
        if _unpickle(f, _PlainUnpickler(f), "header") != MAGIC_NUMBER:
            raise ValueError("not a legacy PyTorch checkpoint: bad magic number")
        if _unpickle(f, _PlainUnpickler(f), "header") != PROTOCOL_VERSION:
            raise ValueError("not a legacy PyTorch checkpoint: unsupported protocol version")
        sys_info = _unpickle(f, _PlainUnpickler(f), "header")
        if not isinstance(sys_info, dict):
            raise ValueError("not a legacy PyTorch checkpoint: malformed system info")
        if not sys_info.get("little_endian", True):
            raise ValueError("the checkpoint was saved big-endian, which is not supported")
        unpickler = _Unpickler(f)
        state = _unpickle(f, unpickler, "state dict")
        if not (isinstance(state, dict) and all(isinstance(name, str) for name in state)):
            raise ValueError(f"not a state dict: the checkpoint holds a {type(state).__name__}")
        arrays = _read_storages(f, _unpickle(f, _PlainUnpickler(f), "storage list"), unpickler.dtypes)
    return {name: _view(name, ref, arrays) for name, ref in state.items() if isinstance(ref, _TensorRef)}
