"""The server-side upload guard on Streamlit's own upload manager (no server needed: the upload
route calls exactly these methods). A PUT is refused when its file id was not issued to the
session, when it is larger than every box of the session's page, or when files that no box holds
would exceed the in-flight budget; a stale unheld file is dropped."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec

from dashboard.widgets import upload_guard

MB = 2**20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server(clock: Clock | None = None) -> tuple[MemoryUploadedFileManager,
                                                 upload_guard.UploadGuard]:
    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    guard = upload_guard.UploadGuard(manager, clock or Clock())
    guard.install()
    return manager, guard


def _put(manager: MemoryUploadedFileManager, session: str, file_id: str, size: int) -> None:
    """What the upload route does after reading a PUT's body."""
    manager.add_file(session_id=session, file=UploadedFileRec(
        file_id=file_id, name="f.bin", type="application/octet-stream", data=b"\0" * size))


def _issue(manager: MemoryUploadedFileManager, session: str, count: int = 1) -> list[str]:
    return [info.file_id for info in manager.get_upload_urls(session, ["f.bin"] * count)]


def _status(call: object) -> int:
    with pytest.raises(HTTPException) as caught:
        call()  # type: ignore[operator]
    return int(caught.value.status_code)


def _held(manager: MemoryUploadedFileManager, session: str) -> int:
    return sum(len(f.data) for f in manager.file_storage.get(session, {}).values())


def test_made_up_and_reused_file_ids_are_refused() -> None:
    manager, guard = _server()
    guard.declare_box("s1", "box", 4 * MB, [])
    assert _status(lambda: _put(manager, "s1", "made-up-id", 1000)) == 403, "not issued"
    (issued,) = _issue(manager, "s1")
    assert _status(lambda: _put(manager, "s2", issued, 1000)) == 403, "another session's id"
    _put(manager, "s1", issued, 1000)
    assert _status(lambda: _put(manager, "s1", issued, 1000)) == 403, "an id is used once"
    assert _held(manager, "s1") == 1000 and _held(manager, "s2") == 0, "only the good PUT kept"


def test_six_40_mb_puts_next_to_a_1_mb_box_are_all_refused() -> None:
    manager, guard = _server()
    guard.declare_box("s1", "txt_upload", 1 * MB, [])
    statuses = [_status(lambda i=i: _put(manager, "s1", i, 40 * MB))
                for i in _issue(manager, "s1", 6)]
    assert statuses == [413] * 6, f"each larger than every box on the page: {statuses}"
    assert _held(manager, "s1") == 0, "nothing held"


def test_the_page_s_largest_box_sets_the_put_limit_for_this_run_and_the_one_before() -> None:
    manager, guard = _server()
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [])
    guard.declare_box("s1", "names", 1 * MB, [])
    first, second = _issue(manager, "s1", 2)
    _put(manager, "s1", first, 6 * MB)  # fits the model box
    guard.begin_run("s1")  # the page is drawn again without the model box...
    guard.declare_box("s1", "names", 1 * MB, [first])
    guard.begin_run("s1")  # ... and once more: the model box is no longer on the page
    guard.declare_box("s1", "names", 1 * MB, [first])
    assert _status(lambda: _put(manager, "s1", second, 6 * MB)) == 413, "only 1 MB boxes now"


def test_files_no_box_holds_are_bounded_and_dropped_when_stale(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_guard, "IN_FLIGHT_SLACK_BYTES", 0)
    clock = Clock()
    manager, guard = _server(clock)
    guard.declare_box("s1", "box", 2 * MB, [])
    a, refused, b, c = _issue(manager, "s1", 4)
    _put(manager, "s1", a, 2 * MB)
    assert _status(lambda: _put(manager, "s1", refused, 1 * MB)) == 413, "2 MB in flight"
    guard.declare_box("s1", "box", 2 * MB, [a])  # the box now holds the first file
    _put(manager, "s1", b, 1 * MB)
    clock.now += upload_guard.UNCLAIMED_SECONDS + 1
    _put(manager, "s1", c, 1 * MB)  # b was never held by a box: dropped now
    held = set(manager.file_storage["s1"])
    assert held == {a, c}, f"the stale unheld file left the server's memory: {held}"


def test_a_session_s_books_go_with_it() -> None:
    manager, guard = _server()
    guard.declare_box("s1", "box", 1 * MB, [])
    (issued,) = _issue(manager, "s1")
    _put(manager, "s1", issued, 1000)
    manager.remove_session_files("s1")
    assert guard.held_bytes("s1") == 0 and _held(manager, "s1") == 0, "books and bytes gone"
    assert _status(lambda: _put(manager, "s1", issued, 10)) == 403, "its ids are gone too"


def test_installing_twice_keeps_one_guard() -> None:
    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    first = upload_guard.install(manager)
    assert upload_guard.install(manager) is first, "one set of books per manager"


def test_runs_stopped_before_any_box_neither_release_files_nor_empty_the_page() -> None:
    """On a loaded server each upload's rerun can stop the run before it before that run draws
    a box; the model file its box still shows must stay (the old books, counting every begun
    run, dropped it and refused the next upload)."""
    clock = Clock()
    manager, guard = _server(clock)
    weights, config = _issue(manager, "s1", 2)
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [])
    _put(manager, "s1", weights, 3 * MB)
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [weights])  # the box shows the file
    for _ in range(3):  # runs stopped by the next rerun before they reach the boxes
        guard.begin_run("s1")
    clock.now += upload_guard.UNCLAIMED_SECONDS + 1
    _put(manager, "s1", config, 1 * MB)  # the page's boxes are still the model box's 8 MB
    held = set(manager.file_storage["s1"])
    assert held == {weights, config}, f"the model file its box holds stays: {held}"


def test_a_box_drawn_with_another_file_releases_the_first() -> None:
    clock = Clock()
    manager, guard = _server(clock)
    first, second, third = _issue(manager, "s1", 3)
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [])
    _put(manager, "s1", first, 1 * MB)
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [first])
    _put(manager, "s1", second, 1 * MB)
    guard.begin_run("s1")
    guard.declare_box("s1", "model", 8 * MB, [second])  # the user replaced the file
    clock.now += upload_guard.UNCLAIMED_SECONDS + 1
    _put(manager, "s1", third, 1 * MB)
    held = set(manager.file_storage["s1"])
    assert held == {second, third}, f"the replaced file left the server's memory: {held}"
    assert guard.held_bytes("s1") == 2 * MB, f"books agree: {guard.held_bytes('s1')}"


def test_a_file_removed_by_the_browser_leaves_its_box() -> None:
    manager, guard = _server()
    (only,) = _issue(manager, "s1")
    guard.declare_box("s1", "model", 8 * MB, [])
    _put(manager, "s1", only, 1 * MB)
    guard.declare_box("s1", "model", 8 * MB, [only])
    manager.remove_file("s1", only)
    assert guard.held_bytes("s1") == 0 and _held(manager, "s1") == 0, "bytes and books gone"
