"""Upload bytes per box, enforced by the server, not only by the browser.

Streamlit checks a ``file_uploader``'s ``max_upload_size`` in the browser only. Its server takes
any PUT to ``/_stcore/upload_file/<session>/<file_id>`` up to ``server.maxUploadSize`` (400 MB
here, for model uploads), for any file id, and keeps the bytes until the session ends: six
40 MB PUTs next to a 1 MB box were all accepted and held.

The guard wraps the server's upload manager (``MemoryUploadedFileManager``, Streamlit's own
object, in place: the upload route calls its methods) and keeps its books there, per session:

- **Issued ids only.** The browser asks for one file id per file before uploading
  (``get_upload_urls``); a PUT to an id this session was not given, or given and already used,
  is refused (HTTP 403).
- **The page's largest box.** Every box declares its limit as the page draws it
  (:func:`upload_box`); a PUT larger than every box of the session's current page is refused
  (HTTP 413). A file larger than *its own* box (possible when a bigger box shares the page) is
  dropped from the server's memory as soon as the box receives it, with one line saying why.
- **Files no box holds.** A file is held by a box from the run that draws the box with it
  until the box is drawn with another file (or none) or the browser deletes it. Files no box
  holds are "in flight": at most the largest box's limit plus
  :data:`~attribution_core.limits.OTHER_UPLOADS_MB` of them per session, each dropped
  :data:`UNCLAIMED_SECONDS` after it arrived.

"Runs" here are runs that drew at least one box: on a loaded server a run is often stopped by
the next upload's rerun before it reaches the boxes, and such runs must neither release a file
its box still shows nor take the boxes off the page (a user's model file was dropped that way
while the browser still showed it).

So what a session holds is bounded by the boxes it has been shown, whatever a client sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from attribution_core.limits import OTHER_UPLOADS_MB

GUARD_ATTRIBUTE = "_ig_upload_guard"
# Long enough for the run that draws a file's box to reach it on a loaded 2-core server; the
# in-flight bytes are bounded whatever this is.
UNCLAIMED_SECONDS = 120.0
ISSUED_SECONDS = 600.0
MAX_ISSUED_PER_SESSION = 64
IN_FLIGHT_SLACK_BYTES = OTHER_UPLOADS_MB * 2**20


def _refuse(status: int, detail: str) -> Exception:
    from starlette.exceptions import HTTPException

    return HTTPException(status_code=status, detail=detail)


@dataclass
class _SessionBooks:
    """One session's uploads: ids issued, boxes drawn (limit, run), files held and by whom."""

    issued: dict[str, float] = field(default_factory=dict)
    boxes: dict[str, tuple[int, int]] = field(default_factory=dict)
    held: dict[str, tuple[str, ...]] = field(default_factory=dict)  # box -> its file ids
    arrived: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (bytes, time)
    run: int = 0  # runs that drew a box (module docstring)
    run_begun: bool = False  # a run began and has drawn no box yet

    def put_limit(self) -> int:
        """The largest box of the current page (this run and the one before: a PUT can arrive
        while a rerun is drawing the page again)."""
        return max((limit for limit, run in self.boxes.values() if run >= self.run - 1),
                   default=0)

    def unclaimed(self) -> list[str]:
        held = {file_id for file_ids in self.held.values() for file_id in file_ids}
        return [file_id for file_id in self.arrived if file_id not in held]


class UploadGuard:
    """The books and the wrapped methods of one upload manager (see the module docstring)."""

    def __init__(self, manager: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._manager = manager
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _SessionBooks] = {}
        self._originals = {name: getattr(manager, name) for name in (
            "get_upload_urls", "add_file", "remove_file", "remove_session_files")}

    def install(self) -> None:
        for name in self._originals:
            setattr(self._manager, name, getattr(self, name))
        setattr(self._manager, GUARD_ATTRIBUTE, self)

    def _books(self, session_id: str) -> _SessionBooks:
        return self._sessions.setdefault(session_id, _SessionBooks())

    # -- the manager's methods, as the server calls them --------------------------------------

    def get_upload_urls(self, session_id: str, file_names: Sequence[str]) -> Any:
        infos = self._originals["get_upload_urls"](session_id, file_names)
        now = self._clock()
        with self._lock:
            books = self._books(session_id)
            for info in infos:
                books.issued[info.file_id] = now
            expired = [i for i, at in books.issued.items() if now - at > ISSUED_SECONDS]
            for file_id in expired + list(books.issued)[:-MAX_ISSUED_PER_SESSION]:
                books.issued.pop(file_id, None)
        return infos

    def add_file(self, session_id: str, file: Any) -> None:
        size, now = len(file.data), self._clock()
        with self._lock:
            books = self._sessions.get(session_id)
            if books is None or books.issued.pop(file.file_id, None) is None:
                raise _refuse(403, "This file id was not issued to this session.")
            allowed = books.put_limit()
            if size > allowed:
                raise _refuse(413, f"File too large: {size:,} bytes; the largest upload box on "
                                   f"this page takes {allowed:,}.")
            stale = [i for i in books.unclaimed() if now - books.arrived[i][1] > UNCLAIMED_SECONDS]
            for file_id in stale:
                books.arrived.pop(file_id, None)
            in_flight = sum(books.arrived[i][0] for i in books.unclaimed())
            if in_flight + size > allowed + IN_FLIGHT_SLACK_BYTES:
                raise _refuse(413, "Too many uploads at once for this session.")
            books.arrived[file.file_id] = (size, now)
        for file_id in stale:
            self._originals["remove_file"](session_id, file_id)
        self._originals["add_file"](session_id=session_id, file=file)

    def remove_file(self, session_id: str, file_id: str) -> None:
        with self._lock:
            books = self._sessions.get(session_id)
            if books is not None:
                books.arrived.pop(file_id, None)
                books.held = {box: tuple(i for i in ids if i != file_id)
                              for box, ids in books.held.items()}
        self._originals["remove_file"](session_id, file_id)

    def remove_session_files(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
        self._originals["remove_session_files"](session_id)

    # -- what the script tells it ------------------------------------------------------------

    def begin_run(self, session_id: str) -> None:
        with self._lock:
            self._books(session_id).run_begun = True

    def declare_box(self, session_id: str, key: str, limit_bytes: int,
                    file_ids: Sequence[str]) -> None:
        with self._lock:
            books = self._books(session_id)
            if books.run_begun:  # the run's first box: it counts from now on
                books.run += 1
                books.run_begun = False
            books.boxes[key] = (int(limit_bytes), books.run)
            books.held[key] = tuple(file_ids)

    def held_bytes(self, session_id: str) -> int:
        """Bytes of this session's files the manager holds (what the books know of)."""
        with self._lock:
            books = self._sessions.get(session_id)
            return sum(size for size, _ in books.arrived.values()) if books else 0


def install(manager: Any) -> UploadGuard:
    """The guard of ``manager``, installed once (every later call returns it)."""
    existing = getattr(manager, GUARD_ATTRIBUTE, None)
    if isinstance(existing, UploadGuard):
        return existing
    guard = UploadGuard(manager)
    guard.install()
    return guard


def _guard() -> tuple[UploadGuard, str] | None:
    """This server's guard and the session's id (None outside a server: AppTest adds its files
    to its own manager directly, without asking for ids)."""
    ctx = get_script_run_ctx()
    guard = getattr(getattr(ctx, "uploaded_file_mgr", None), GUARD_ATTRIBUTE, None)
    return (guard, ctx.session_id) if isinstance(guard, UploadGuard) and ctx else None


def begin_run() -> None:
    """Called once per script run (the router): installs the guard on the running server's
    upload manager (once), and boxes drawn from now on belong to this run."""
    from streamlit.runtime import Runtime

    if Runtime.exists():
        install(Runtime.instance().uploaded_file_mgr)
    found = _guard()
    if found is not None:
        found[0].begin_run(found[1])


def upload_box(label: str, *, key: str, limit_mb: int, type: Sequence[str] | None = None,
               help: str | None = None, disabled: bool = False) -> UploadedFile | None:
    """``st.file_uploader`` whose ``limit_mb`` the server enforces too: the file, or None (no
    file, or one over this box's limit, which is then dropped from the server's memory and
    refused in one line)."""
    upload = st.file_uploader(label, type=list(type) if type else None, key=key, help=help,
                              max_upload_size=limit_mb, disabled=disabled)
    found = _guard()
    file = upload if isinstance(upload, UploadedFile) else None
    if found is not None:
        found[0].declare_box(found[1], key, limit_mb * 2**20,
                             [file.file_id] if file is not None else [])
    if file is not None and file.size > limit_mb * 2**20:
        ctx = get_script_run_ctx()
        if ctx is not None:  # the bytes leave the server's memory now, not with the session
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, file.file_id)
        st.error(f"{file.name} is {file.size / 2**20:.1f} MB; this box takes files of at most "
                 f"{limit_mb} MB.")
        return None
    return file
