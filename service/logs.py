"""JSON log lines: one object per line, for people and log pipelines alike.

:func:`configure`, called once at start-up by ``python -m service`` and ``python -m service.jobs.worker``, makes
every line the process writes one JSON object with at least ``timestamp``, ``level``, ``logger`` and
``message``:

- **Python loggers**: one JSON handler on the root logger; handlers that libraries installed on their own
  loggers (uvicorn's) are removed and their records reach the root.
- **warnings** (Pillow's ``DecompressionBombWarning``, corrupt EXIF or TIFF tags): records of the logger
  ``py.warnings`` with ``source: "warnings"``, ``category`` and ``origin`` (file:line). Pillow's warnings
  are about the upload at hand, so each one is logged, not only the first of its kind.
- **uncaught exceptions** (main thread, other threads, "exception ignored"): one record each, with the
  traceback in ``exception``.
- **anything written on file descriptors 1 and 2 by other code** (libtiff, which prints through its own
  handler; onnxruntime; a stray ``print``): both descriptors are pipes read by a thread that turns each
  line into a record with ``source: "stderr"`` (level warning) or ``source: "stdout"`` (level info). The
  JSON lines themselves go to the process's original stderr. At exit the pipes are drained before the
  descriptors are restored, so the last lines are not lost; a process killed by SIGKILL loses what was
  still in the pipe (at most a few lines: the reader keeps up).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from types import TracebackType
from typing import IO, Any, Protocol

# Attributes every LogRecord has; anything else passed through ``extra`` becomes a JSON field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}

# Loggers that come with handlers of their own (or get them at import); their records go to the root.
_ADOPTED = ("uvicorn", "uvicorn.error", "uvicorn.access")
# A raw line longer than this is cut into several records, so one huge write cannot hold memory.
MAX_RAW_LINE = 16 * 1024
PIPE_SIZE = 1024 * 1024  # Linux's default ceiling for unprivileged processes; the kernel default is 64 KiB
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class LogSettings(Protocol):
    log_level: str


# Fields every line carries once the model is loaded (``model_name``, ``model_version``, ``model_digest``):
# which model a line is about is known without a request to join it with, during a rollout too.
_PROCESS_FIELDS: dict[str, str] = {}


def set_process_fields(**fields: str) -> None:
    """Fields added to every later line (a field the line sets itself wins)."""
    _PROCESS_FIELDS.update(fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        for key, value in _PROCESS_FIELDS.items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler: JSON lines on the process's real stderr.

    A failed write is dropped silently: logging's default reports it on ``sys.stderr``, which is one of
    the captured pipes, and the report would come back here as another line to write.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())

    def handleError(self, record: logging.LogRecord) -> None:
        pass


class _Capture:
    """File descriptor ``fd`` becomes the write end of a pipe; a thread logs every line read from it."""

    def __init__(self, fd: int, source: str, level: int) -> None:
        self.fd = fd
        self.source = source
        self.level = level
        self.logger = logging.getLogger(source)
        self.original = os.dup(fd)  # where fd pointed: for the JSON lines (fd 2) and to restore at exit
        read_end, write_end = os.pipe()
        with contextlib.suppress(AttributeError, OSError):
            import fcntl

            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.dup2(write_end, fd)  # inheritable, as fd 1 and 2 were: child processes write into the pipe too
        os.close(write_end)
        self.read_end = read_end
        self.thread = threading.Thread(target=self._pump, name=f"log-{source}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
            while len(pending) > MAX_RAW_LINE:
                self._emit(pending[:MAX_RAW_LINE])
                pending = pending[MAX_RAW_LINE:]
        if pending:
            self._emit(pending)
        os.close(self.read_end)

    def _emit(self, raw: bytes) -> None:
        for start in range(0, len(raw), MAX_RAW_LINE):
            self._emit_one(raw[start : start + MAX_RAW_LINE])

    def _emit_one(self, raw: bytes) -> None:
        text = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
        if not text.strip():
            return
        # Straight to the JSON handler, never through other handlers: one that wrote on fd 1 or 2 would
        # feed this pipe with its own output, forever.
        handler = _state.handler
        if handler is None or not self.logger.isEnabledFor(self.level):
            return
        record = self.logger.makeRecord(
            self.source, self.level, "(raw)", 0, text, (), None, extra={"source": self.source}
        )
        with contextlib.suppress(Exception):
            handler.handle(record)

    def restore(self, timeout: float) -> None:
        """Point fd back where it was: the pipe's last writer closes, the thread reads what is left and ends."""
        os.dup2(self.original, self.fd)
        self.thread.join(timeout)


class _State:
    def __init__(self) -> None:
        self.handler: JsonHandler | None = None
        self.stream: IO[str] | None = None
        self.captures: list[_Capture] = []
        self.original_showwarning: Any = None


_state = _State()


def configure(settings: LogSettings | str | None = None, *, capture_fds: bool = True) -> None:
    """Make every line this process writes one JSON object (see the module's docstring). Call it first thing.

    ``settings`` is the service's settings (their ``log_level``) or a level name; None means info. Calling
    it again (say once before the settings are read, then with them) changes the level and keeps the rest.
    ``capture_fds=False`` leaves file descriptors 1 and 2 alone (for a process embedding the service).
    """
    if settings is None:
        level = "info"
    elif isinstance(settings, str):
        level = settings
    else:
        level = settings.log_level
    if capture_fds and not _state.captures:
        _capture_fds()
    if _state.stream is None:
        _state.stream = sys.stderr
    handler = JsonHandler(_state.stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _state.handler = handler
    _adopt_loggers()
    # One line per request comes from the service itself; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    _capture_warnings()
    _capture_exceptions()


def _capture_fds() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        stderr = _Capture(2, "stderr", logging.WARNING)
    except OSError:
        return  # no fd 2 to take over (closed): log on sys.stderr as it is
    _state.captures.append(stderr)
    _state.stream = os.fdopen(os.dup(stderr.original), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    with contextlib.suppress(OSError):
        _state.captures.append(_Capture(1, "stdout", logging.INFO))
    # Python's own stdout is block-buffered on a pipe: lines reach the log as they are printed.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    atexit.register(_drain)


def _drain(timeout: float = 2.0) -> None:
    """At exit (before logging's own shutdown, registered earlier, runs): log what is still in the pipes."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for capture in _state.captures:
        with contextlib.suppress(OSError):
            capture.restore(timeout)
    _state.captures.clear()


def _adopt_loggers() -> None:
    """Loggers that came with stream handlers of their own hand their records to the root instead."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name in _ADOPTED:
            continue
        own = [
            h
            for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]
        if own:
            for handler in own:
                logger.removeHandler(handler)
            logger.propagate = True
    for name in _ADOPTED:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    if file is not None:  # an explicit destination is the caller's business
        _state.original_showwarning(message, category, filename, lineno, file, line)
        return
    logging.getLogger("py.warnings").warning(
        "%s", message, extra={"source": "warnings", "category": category.__name__, "origin": f"{filename}:{lineno}"}
    )


def _capture_warnings() -> None:
    """``logging.captureWarnings`` writes one formatted string; this keeps the category and place as fields."""
    if _state.original_showwarning is None:
        _state.original_showwarning = warnings.showwarning
    warnings.showwarning = _showwarning
    # Pillow warns about the upload at hand: log every occurrence, not the first of each text and place.
    warnings.filterwarnings("always", module=r"PIL(\.|$)")


def _log_exception(
    message: str, exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None, **extra: Any
) -> None:
    value = exc if exc is not None else exc_type()
    logging.getLogger("service.uncaught").critical(message, exc_info=(exc_type, value, tb), extra=extra)


def _capture_exceptions() -> None:
    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _log_exception(f"uncaught exception: {exc_type.__name__}", exc_type, exc, tb, source="excepthook")

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        _log_exception(
            f"uncaught exception in thread {name}: {args.exc_type.__name__}",
            args.exc_type, args.exc_value, args.exc_traceback, source="excepthook", thread_name=name,
        )  # fmt: skip

    def unraisablehook(unraisable: Any) -> None:
        what = unraisable.err_msg or "Exception ignored in"
        where = f"{what}: {unraisable.object!r}" if unraisable.object is not None else what
        exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
        logging.getLogger("service.uncaught").warning(
            "%s", where, exc_info=exc_info if unraisable.exc_value is not None else None,
            extra={"source": "unraisablehook"},
        )  # fmt: skip

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook


def log_from_signal(logger: logging.Logger, message: str, *args: object) -> None:
    """Log ``message`` (INFO) for a signal handler, from a thread of its own, never in the handler itself.

    A handler runs in the main thread between two bytecodes, possibly while that thread is writing a log line to
    the same buffered stream (blocked on a full pipe, say): Python refuses the reentrant write, the handler
    drops the error, and the line is lost (the service's "draining" line went missing this way under load).
    A thread waits for the handler's lock instead and writes once the interrupted line is out."""
    threading.Thread(target=logger.info, args=(message, *args), name="signal-log", daemon=True).start()
