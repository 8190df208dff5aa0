"""Paths: one-line errors for bad inputs and outputs, writes that appear only when complete, and the
numbered frame folders renders keep (the frame naming lives here and nowhere else)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading
import re
from pathlib import Path
from typing import TypeVar, Union

from zoomdream.errors import ZoomdreamError

PathArg = Union[str, "os.PathLike[str]"]  # what every path argument accepts
FRAME_PATTERN = re.compile(r"^frame_(\d{8,})\.png$")
_Closing = TypeVar("_Closing", bound="ClosesOrAborts")


class ClosesOrAborts:
    """A writer usable with ``with``: ``close()`` when the block ends, ``abort()`` when it raises (Ctrl-C
    too), so a file is finished whole or not left at all."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Closing) -> _Closing:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class WriteFailed(ZoomdreamError):
    """A write the machine refused (a full disk, a read-only or vanished folder): one line, with the ``errno``
    and ``filename`` of the OSError behind it, so a render can say what to free or fix."""

    def __init__(self, message: str, errno: int | None, filename: PathArg):
        super().__init__(message)
        self.errno, self.filename = errno, filename


def show(path) -> str:
    """A path as it goes inside a one-line message."""
    return str(path).replace("\n", "\\n").replace("\r", "\\r")


def temp_sibling(path: Path, tag: str = "part") -> Path:
    """Hidden temporary name next to `path`, real extension last: out.mp4 -> .out.part.mp4."""
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


def own_temp(path: Path, tag: str = "part") -> Path:
    """``temp_sibling`` under a name of this writer's own (process and thread): two writers of one file, or a
    writer and the leftover of a killed one, never write into each other's temporary file."""
    return temp_sibling(path, f"{tag}-{os.getpid()}-{threading.get_ident()}")


def remove_dead_temps(path: Path) -> list[Path]:
    """Remove the temporary files (``own_temp``) of ``path`` that writers killed outright left behind: those
    whose process is gone. A later render of the same output calls it once its output is complete. Returns
    what it removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.[\w.]+-(\d+)-\d+{re.escape(path.suffix)}$")
    removed = []
    for entry in path.parent.glob(f".{glob_escape(path.stem)}.*"):
        found = pattern.match(entry.name)
        if found and not _alive(int(found.group(1))):
            remove_quietly(entry)
            removed.append(entry)
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own writers are done with the output by now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def remove_quietly(path: Path | None) -> None:
    if path is not None:
        try:
            os.remove(path)
        except OSError:
            pass


def existing_file(path, what: str = "read") -> Path:
    """Turn the usual ways a user-given input path can be wrong into one-line errors."""
    p = Path(path)
    if not p.exists():
        raise ZoomdreamError(f"cannot {what} '{show(p)}': file not found (check the path)")
    if p.is_dir():
        raise ZoomdreamError(f"cannot {what} '{show(p)}': it is a folder, not a file (give a file path)")
    try:
        info = p.stat()
    except OSError as e:
        raise ZoomdreamError(f"cannot {what} '{show(p)}': {e.strerror} (check file permissions)") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO, socket or device: no size to check, and a read may never end
        raise ZoomdreamError(f"cannot {what} '{show(p)}': it is not a regular file (a pipe, socket or device; save "
                             f"it to a file first)")
    if info.st_size == 0:
        raise ZoomdreamError(f"cannot {what} '{show(p)}': the file is empty (re-export or re-download it)")
    return p


def output_extension(p: Path, supported: tuple[str, ...], kind: str) -> str:
    """p's lower-case extension, or a one-line error listing the supported ones."""
    ext = p.suffix.lower()
    if ext not in supported:
        raise ZoomdreamError(
            f"cannot write '{show(p)}': unsupported {kind} type '{ext or '(none)'}' "
            f"(use one of {' '.join(supported)})"
        )
    return ext


def check_output_target(p: Path) -> None:
    """Fail before any work when the output can obviously not be written. A missing folder is fine where it
    can be made (``make_output_folder`` makes it): every command creates its output's folder, checks alike."""
    if p.is_dir():
        raise ZoomdreamError(f"cannot write '{show(p)}': it is a folder (give a file name)")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:  # the nearest folder that exists makes the rest
        parent = parent.parent
    if not parent.is_dir():
        raise ZoomdreamError(f"cannot write '{show(p)}': '{show(parent)}' is a file, not a folder (choose another "
                             f"output folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ZoomdreamError(f"cannot write '{show(p)}': folder '{show(parent)}' is read-only (make it writable, "
                             f"or choose an output in another folder)")


def make_output_folder(p: Path) -> Path:
    """Check ``p`` as an output (``check_output_target``) and create its folder, with its parents."""
    p = Path(p)
    check_output_target(p)
    make_folder(p.parent)
    return p


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (existing: by inode; else by resolved path)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def atomic_write_bytes(p: Path, data) -> None:
    """Write to a temp sibling then rename, so a kill never leaves a truncated file under the real name. The
    temp name is this writer's own (process and thread), so two writers of one file never share it, and it lies
    beside the target, so the rename never crosses file systems. A failure removes the temp file and raises
    ``WriteFailed``."""
    _atomically(p, lambda tmp: tmp.write_bytes(data))


def atomic_copy(source: Path, p: Path) -> None:
    """Copy ``source`` to ``p`` as ``atomic_write_bytes`` writes, without holding the file in memory."""
    _atomically(p, lambda tmp: shutil.copyfile(source, tmp))


def _atomically(p: Path, fill) -> None:
    tmp = own_temp(p)
    try:
        fill(tmp)
        os.replace(tmp, p)
    except OSError as e:
        raise WriteFailed(f"cannot write '{show(p)}': {e.strerror or e} (check free disk space and folder "
                          f"permissions)", e.errno, p) from None
    finally:
        remove_quietly(tmp)  # gone already once renamed into place


def file_digest(path: PathArg) -> str:
    """SHA-256 of a file's bytes (hex), read 1 MB at a time so a long video is never held whole in memory
    (``hashlib.file_digest`` does this from Python 3.11 on; 3.10 is supported)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_path(directory: PathArg, index: int) -> Path:
    """The one place the frame naming lives: frame_00000000.png, 8 digits so names sort far past 9,999."""
    if index < 0:
        raise ValueError(f"frame index must be >= 0, got {index}")
    return Path(directory) / f"frame_{index:08d}.png"


def list_frames(directory: PathArg) -> list[Path]:
    """Complete frames in index order (temporary files are skipped); [] when the folder does not exist."""
    d = Path(directory)
    if not d.exists():
        return []
    if not d.is_dir():
        raise ZoomdreamError(f"cannot list frames in '{show(d)}': it is a file, not a folder (give a folder)")
    found = []
    for entry in os.scandir(d):
        m = FRAME_PATTERN.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    return [p for _, p in sorted(found)]


def make_folder(directory: PathArg) -> Path:
    """Create a folder (and its parents) for frames or render state; a one-line error names the fix."""
    p = Path(directory)
    if p.exists() and not p.is_dir():
        raise ZoomdreamError(f"cannot keep frames in '{show(p)}': it is a file (give a folder)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ZoomdreamError(f"cannot create folder '{show(p)}': its folder is read-only (make it writable, or "
                                 f"choose an output or --frames-dir in another folder)") from None
        raise ZoomdreamError(
            f"cannot create folder '{show(p)}': {e.strerror or e} (check the path and permissions)"
        ) from None
    return p
