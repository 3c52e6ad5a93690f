"""`meshdojo serve` (the UI in a browser for a room) and `meshdojo room` (the instructor's view):
the token, the attendee's sandbox, the session cap — and the page driven by headless Chromium."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from textual_serve.app_service import AppService

from sandbox import room
from sandbox.lessons import model, progress
from sandbox.serve import RoomServer, session_command
from tests.meshkit import eventually

TOKEN = "room-token-for-the-test"


@pytest.fixture
async def served(tmp_path, monkeypatch) -> AsyncIterator[tuple[RoomServer, str]]:
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))  # the sessions' UIs find (no) sandboxes here
    server = RoomServer(TOKEN, max_sessions=1)
    runner = web.AppRunner(await server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_a_session_runs_the_attendees_ui_as_its_own_process():
    assert session_command("alice", "/venv/bin/python") == "exec /venv/bin/python -m sandbox.cli tui --name alice"


async def test_the_token_guards_the_page_and_the_websocket(served):
    server, url = served
    async with aiohttp.ClientSession() as http:
        for query in ("", "?token=wrong", "?attendee=alice"):
            async with http.get(f"{url}/{query}") as rsp:
                assert rsp.status == 403 and "needs its token" in await rsp.text()
        async with http.get(f"{url}/?token={TOKEN}") as rsp:  # no name yet: a form asks for one
            assert rsp.status == 200 and "name=attendee" in await rsp.text()
        async with http.get(f"{url}/?token={TOKEN}&attendee=Not_A_Name") as rsp:
            assert rsp.status == 400 and "cannot name a sandbox" in await rsp.text()
        async with http.get(f"{url}/?token={TOKEN}&attendee=alice") as rsp:
            page = await rsp.text()
            assert rsp.status == 200 and f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/ws/{TOKEN}/alice" in page
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/ws/wrong/alice?width=80&height=24")
        assert refused.value.status == 403
        async with http.get(f"{url}/static/js/textual.js") as rsp:  # the page's script is public
            assert rsp.status == 200


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed (apt-get install chromium); .ci/run installs it"
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_chromium_opens_the_room_and_a_key_reaches_the_ui(served):
    from playwright.async_api import async_playwright

    server, url = served
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            elsewhere: list[str] = []  # the page must fetch nothing but from the room's server

            async def only_the_room(route):
                if route.request.url.startswith(url):
                    await route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    await route.abort()

            await page.route("**/*", only_the_room)
            await page.goto(f"{url}/?token={TOKEN}&attendee=alice")
            # the page connects its websocket: the attendee's UI starts (no sandbox yet: the start screen)
            await eventually(lambda: _async(server.sessions), lambda s: list(s.values()) == ["alice"], "alice's session", 30)
            assert "meshdojo — alice" in await page.content()  # the page names the session
            # a second browser is over this room's cap of one: refused, the first session untouched
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                    await http.ws_connect(f"{url}/ws/{TOKEN}/bob?width=80&height=24")
                assert full.value.status == 503
            # a key typed in the page reaches the UI: q on the start screen quits it, and the session ends
            await eventually(lambda: _async(server.drawn), lambda d: d.get("alice", 0) > 2000, "alice's UI to draw", 30)
            await page.mouse.click(640, 500)  # the terminal takes the keyboard's focus, as a learner's click gives it
            await page.keyboard.press("q")
            await eventually(lambda: _async(server.sessions), lambda s: not s, "the session to end after q", 30)
            assert elsewhere == [], elsewhere
        finally:
            await browser.close()


async def test_a_sessions_ui_process_is_reaped_when_the_session_ends():
    from textual_serve.download_manager import DownloadManager

    from sandbox.serve import _reap

    async def nowhere(*_args) -> None:
        return None

    for command, exited_with in (("exec true", 0), ("exec sleep 30", -9)):  # a UI that ignores quit is killed
        service = AppService(command, write_bytes=nowhere, write_str=nowhere, close=nowhere,
                             download_manager=DownloadManager(), debug=False)
        process = await service._open_app_process()
        await _reap(service, grace=0.5)
        assert process.returncode == exited_with


async def _async(value):
    return value


def test_the_room_shows_each_attendee_at_their_lesson_and_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
    (tmp_path / ".room-token").write_text("x")  # not an attendee
    lesson = model.find(2)
    progress.save("alice", progress.Progress(2, 1, time.time() - 75, [1]))
    found = room.rows()
    assert [r["attendee"] for r in found] == ["alice", "bob"]
    alice, bob = found
    assert (alice["lesson"], alice["step"], alice["steps"], alice["step_title"]) == (2, 2, len(lesson.steps), lesson.steps[1].title)
    assert 75 <= alice["seconds_on_step"] < 80 and alice["running"] is False
    assert bob["lesson"] is None
    lines = room.table(found)
    assert lines[1][0] == "alice" and lines[1][2] == f"02 {lesson.title}" and lines[1][4].startswith("1m1")
    assert lines[2][3] == "not started"


def test_the_access_log_never_prints_the_token():
    import logging

    RoomServer(TOKEN).initialize_logging()
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() >= logging.WARNING  # its lines carry the URLs
