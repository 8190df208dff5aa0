"""The one exception type users see: its message is a single line naming the problem and the fix."""
import traceback


class ZoomdreamError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


class Stopped(Exception):
    """A render stopped on request (the studio's Stop): like Ctrl-C, its kept frames stay and it resumes."""


def one_line(text: str) -> str:
    """A message stays one line whatever a user's file or setting held (newlines, control characters)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def os_error_text(error: OSError, fix: str) -> str:
    """An OSError as its reason, the file it names and ``fix``: what a user can act on, without Python's errno."""
    where = f" ('{error.filename}')" if error.filename else ""
    return f"{error.strerror or error}{where} ({fix})"


def first_line(error: BaseException) -> str:
    """The first line of an error's message, else its type's name: a foreign library's error kept to one line."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def error_line(error: BaseException) -> str:
    """The one line a user sees for an error of their input or machine (the CLI and the studio alike). Any other
    error is a bug: it is named, and its traceback printed, so the report can say where it happened."""
    if isinstance(error, OSError):  # a disk that fills up or a path that vanishes mid-render: kept frames stay
        text = os_error_text(error, "check the path, permissions and free disk space; zoom and video renders "
                                    "continue with --resume")
    elif isinstance(error, MemoryError):
        text = "out of memory (use a smaller --size, --max-size or --tile)"
    elif isinstance(error, ZoomdreamError):
        text = str(error)
    else:
        traceback.print_exception(error)
        text = f"unexpected {type(error).__name__}: {error} (please report it, with the job file)"
    return f"zoomdream: error: {shortened(one_line(text))}"


MAX_LINE = 1000  # characters of an error line: a 10 MB setting is named, not echoed


def shortened(text: str) -> str:
    """``text`` cut in its middle to MAX_LINE characters, so the fix, which ends the line, is kept."""
    if len(text) <= MAX_LINE:
        return text
    cut = len(text) - MAX_LINE + 5
    return f"{text[:600]} ... {text[600 + cut:]}"
