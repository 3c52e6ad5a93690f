"""``serve`` and ``room``: a workshop room — the UI in each attendee's browser, and the
instructor's view of who is at which lesson and step."""

from __future__ import annotations

import argparse
import json
import secrets
import time

from sandbox.cli.common import fail, print_table

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve(args: argparse.Namespace) -> int:
    from sandbox.paths import home
    from sandbox.serve import RoomServer

    if not 1 <= args.max_sessions <= 500:
        return fail("--max-sessions: from 1 to 500")
    token_file = home() / ".room-token"
    token = args.token or _room_token(token_file)
    server = RoomServer(token, host=args.host, port=args.port, max_sessions=args.max_sessions)
    shown = "127.0.0.1" if args.host in LOOPBACK else "<this machine's address>"
    print(f"the room: http://{shown}:{args.port}/?token={token}&attendee=NAME   (each NAME gets a sandbox of its own)")
    if args.host not in LOOPBACK:
        print(f"listening on {args.host}: anyone who can reach it and has the token gets a UI; the token is in {token_file} (0600)")
    print("the instructor's view: meshdojo room    (Ctrl-C stops serving; the attendees' sandboxes keep running)")
    try:
        server.serve()
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); choose another --port")
    return 0


def _room_token(path) -> str:
    """The room's token: kept, so a restarted server keeps the URLs the attendees have."""
    from controlplane.statefiles import write_private

    try:
        token = path.read_text().strip()
        if token:
            return token
    except OSError:
        pass
    token = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, token)
    return token


def _room(args: argparse.Namespace) -> int:
    from sandbox import room

    found = room.rows(time.time())
    if args.output == "json":
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no sandboxes yet: attendees get one when they open the room's URL with their name (meshdojo serve)")
        return 0
    print_table(room.table(found))
    return 0


def register(sub) -> None:
    serve = sub.add_parser("serve", help="the terminal UI in a browser, for a workshop room (one sandbox per attendee)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1; 0.0.0.0 for a room)")
    serve.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    serve.add_argument("--max-sessions", type=int, default=30, help="browser sessions at once (default 30)")
    serve.add_argument("--token", help="the room's token (default: one made once and kept in meshdojo's home)")
    serve.set_defaults(handler=_serve)
    room = sub.add_parser("room", help="the instructor's view: each attendee's sandbox, lesson and step")
    room.add_argument("-o", "--output", choices=["table", "json"], default="table")
    room.set_defaults(handler=_room)
