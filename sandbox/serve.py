"""``meshdojo serve``: the terminal UI in a browser, for a room (textual-serve).

Each browser session runs ``meshdojo tui --name ATTENDEE`` in a process of its own, driven
through a websocket: one sandbox per attendee (with no sandbox running, the UI opens on its start
screen). Access needs the room's token (``?token=...``, or in the websocket's path): without it
the page and the websocket answer 403. The server binds 127.0.0.1 unless ``--host`` says
otherwise, and refuses sessions beyond ``--max-sessions``.

    GET /?token=T&attendee=NAME      the page (no attendee: a form asking for one)
    GET /ws/T/NAME?width=&height=    the session's websocket (what the page opens)
    GET /static/...                  textual-serve's JavaScript and fonts (public)
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from controlplane.spiffe import is_dns_label

log = logging.getLogger("meshdojo.serve")
# textual-serve's page asks Google for a font; a room may be offline, and nothing should leave it
REMOTE_STYLESHEET = re.compile(r"<link\s[^>]*href=\"https?://[^\"]*\"[^>]*>", re.S)
REFUSED = ("This room needs its token: open the URL your instructor gave you "
           "(it ends with ?token=...), or ask for it.")


def session_command(attendee: str, python: str = sys.executable) -> str:
    """The shell command a session runs (``exec``: the UI is the session's process itself)."""
    return f"exec {shlex.quote(python)} -m sandbox.cli tui --name {shlex.quote(attendee)}"


class RoomServer(Server):
    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 8000, max_sessions: int = 30,
                 public_url: str | None = None) -> None:
        super().__init__("meshdojo tui", host=host, port=port, title="meshdojo", public_url=public_url)
        self.token = token
        self.max_sessions = max_sessions
        self.sessions: dict[int, str] = {}  # id(websocket) -> attendee
        self.drawn: dict[str, int] = {}  # attendee -> bytes its UI sent to the browser (it is up once this grows)

    def initialize_logging(self) -> None:
        super().initialize_logging()
        # aiohttp's access log would print every URL, and the room's token is in them: our own lines say who, never it
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    def _token_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    async def _make_app(self) -> web.Application:
        app = web.Application()
        aiohttp_jinja2.setup(app, loader=jinja2.FunctionLoader(lambda name: _local_only(self.templates_path / name)))
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws/{token}/{attendee}", self.handle_websocket, name="websocket"),
            web.static("/static", self.statics_path, name="static"),
        ])
        app.on_startup.append(self.on_startup)
        return app

    async def on_startup(self, app: web.Application) -> None:
        log.info("serving meshdojo's UI on %s (at most %d sessions)", self.public_url, self.max_sessions)

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        if not self._token_ok(request.query.get("token")):
            return web.Response(status=403, text=REFUSED)
        attendee = request.query.get("attendee", "")
        if not attendee:
            return web.Response(content_type="text/html", text=_ask_name(self.token))
        if not is_dns_label(attendee):
            return web.Response(status=400, content_type="text/html",
                                text=_ask_name(self.token, f"{attendee!r} cannot name a sandbox: lowercase letters, digits and -"))
        # the address the browser used (the server may listen on 0.0.0.0)
        ws = f"{'wss' if request.secure else 'ws'}://{request.host}/ws/{quote(self.token)}/{attendee}"
        context: dict[str, Any] = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": ws,
            "config": {"static": {"url": f"{request.scheme}://{request.host}/static/"}},
            "application": {"name": f"meshdojo — {attendee}"},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        attendee = request.match_info["attendee"]
        if not self._token_ok(request.match_info["token"]) or not is_dns_label(attendee):
            raise web.HTTPForbidden(text=REFUSED)
        if len(self.sessions) >= self.max_sessions:
            raise web.HTTPServiceUnavailable(text=f"this room is full ({self.max_sessions} sessions): ask your instructor")
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        self.sessions[id(websocket)] = attendee
        self.drawn[attendee] = 0
        log.info("%s's session started (%d of at most %d)", attendee, len(self.sessions), self.max_sessions)

        async def to_browser(data: bytes) -> None:
            self.drawn[attendee] = self.drawn.get(attendee, 0) + len(data)
            await websocket.send_bytes(data)

        service = AppService(session_command(attendee), write_bytes=to_browser, write_str=websocket.send_str,
                             close=websocket.close, download_manager=self.download_manager, debug=False)
        try:
            await service.start(to_int(request.query.get("width", "80"), 80), to_int(request.query.get("height", "24"), 24))
            await self._process_messages(websocket, service)
        except Exception:  # one session's trouble is logged, never the room's end
            log.exception("session of %s", attendee)
        finally:
            try:
                await service.stop()
                await _reap(service)
            finally:  # the session counts until its UI process is gone
                self.sessions.pop(id(websocket), None)
            log.info("%s's session ended", attendee)
        return websocket

    async def app(self) -> web.Application:
        """The aiohttp application (tests run it on a port of their own)."""
        return await self._make_app()


async def _reap(service: AppService, grace: float = 5.0) -> None:
    """Wait for the session's UI process to exit (killed after ``grace`` seconds): textual-serve
    never waits for it, so its pipes' transport outlived the session and was only closed, with a
    ResourceWarning, when garbage-collected."""
    process = service._process  # textual-serve keeps the process private
    if process is None:
        return
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


def _local_only(template: Path) -> str | None:
    """textual-serve's page template without its remote stylesheet (the terminal uses a local font)."""
    try:
        return REMOTE_STYLESHEET.sub("", template.read_text(encoding="utf-8"))
    except OSError:
        return None


def _ask_name(token: str, problem: str = "") -> str:
    warn = f"<p style='color:#b33'>{html.escape(problem)}</p>" if problem else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>meshdojo room</title></head>"
            "<body style='font-family:system-ui;max-width:36em;margin:4em auto'><h1>meshdojo</h1>"
            "<p>Your name gives you a sandbox of your own (lowercase letters, digits and -).</p>" + warn +
            f"<form method=get action='/'><input type=hidden name=token value='{html.escape(token, quote=True)}'>"
            "<input name=attendee pattern='[a-z0-9]([-a-z0-9]*[a-z0-9])?' required autofocus> "
            "<button>Start</button></form></body></html>")
