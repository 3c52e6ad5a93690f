"""emojivoto, as in Linkerd's demo: ``python app.py web|emoji|voting|vote-bot``.

Kept from the original: voting for the doughnut fails with a 500 from ``voting``, so ``web``
is never at 100 % success.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import client, run_forever, serve, setting

EMOJI = {
    ":joy:": "😂", ":sunglasses:": "😎", ":doughnut:": "🍩", ":stuck_out_tongue_winking_eye:": "😜",
    ":money_mouth_face:": "🤑", ":flushed:": "😳", ":mask:": "😷", ":nerd_face:": "🤓", ":ghost:": "👻",
    ":skull_and_crossbones:": "☠️", ":heart_eyes_cat:": "😻", ":hear_no_evil:": "🙉", ":see_no_evil:": "🙈",
    ":speak_no_evil:": "🙊", ":boy:": "👦", ":girl:": "👧", ":man:": "👨", ":woman:": "👩", ":older_man:": "👴",
    ":policeman:": "👮", ":guardsman:": "💂", ":construction_worker:": "👷", ":prince:": "🤴", ":princess:": "👸",
    ":100:": "💯", ":rocket:": "🚀", ":champagne:": "🍾", ":taco:": "🌮", ":pizza:": "🍕", ":cat:": "🐈",
}


def emoji_app() -> web.Application:
    async def list_all(_r: web.Request) -> web.Response:
        return web.json_response([{"shortcode": k, "unicode": v} for k, v in EMOJI.items()])

    async def find(r: web.Request) -> web.Response:
        code = r.query.get("shortcode", "")
        if code not in EMOJI:
            return web.json_response({"error": f"no emoji {code}"}, status=404)
        return web.json_response({"shortcode": code, "unicode": EMOJI[code]})

    app = web.Application()
    app.add_routes([web.get("/api/list", list_all), web.get("/api/find", find)])
    return app


def voting_app() -> web.Application:
    votes: Counter[str] = Counter()

    async def vote(r: web.Request) -> web.Response:
        choice = r.query.get("choice", "")
        if choice == ":doughnut:":  # the classic bug, kept on purpose
            return web.json_response({"error": "ERROR: voting for the doughnut is broken"}, status=500)
        if choice not in EMOJI:
            return web.json_response({"error": f"unknown choice {choice}"}, status=400)
        votes[choice] += 1
        return web.json_response({"voted": choice})

    async def results(_r: web.Request) -> web.Response:
        return web.json_response([{"shortcode": k, "votes": n} for k, n in votes.most_common()])

    app = web.Application()
    app.add_routes([web.route("*", "/api/vote", vote), web.get("/api/results", results)])
    return app


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>emojivoto</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}} a{{font-size:2em;text-decoration:none}}</style></head>
<body><h1>🗳 emojivoto</h1><p>Vote for your favourite emoji (served through the mesh).</p>{links}
<p><a style="font-size:1em" href="/leaderboard">leaderboard</a></p></body></html>"""


def web_app() -> web.Application:
    emoji_url = f"http://{setting('EMOJI_ADDR', 'emoji:8080')}"
    voting_url = f"http://{setting('VOTING_ADDR', 'voting:8080')}"

    async def upstream_json(url: str):
        async with client(5) as session, session.get(url) as rsp:
            return rsp.status, await rsp.json(content_type=None)

    async def index(_r: web.Request) -> web.Response:
        status, emojis = await upstream_json(f"{emoji_url}/api/list")
        if status != 200:
            return web.Response(status=502, text="emoji service unavailable")
        links = " ".join(f'<a href="/api/vote?choice={e["shortcode"]}" title="{e["shortcode"]}">{e["unicode"]}</a>' for e in emojis)
        return web.Response(text=PAGE.format(links=links), content_type="text/html")

    async def api_list(_r: web.Request) -> web.Response:
        status, body = await upstream_json(f"{emoji_url}/api/list")
        return web.json_response(body, status=status)

    async def api_vote(r: web.Request) -> web.Response:
        choice = r.query.get("choice", "")
        status, found = await upstream_json(f"{emoji_url}/api/find?shortcode={choice}")
        if status != 200:
            return web.json_response(found, status=status)
        status, body = await upstream_json(f"{voting_url}/api/vote?choice={choice}")
        return web.json_response(body, status=status)

    async def leaderboard(_r: web.Request) -> web.Response:
        status, results = await upstream_json(f"{voting_url}/api/results")
        if status != 200:
            return web.json_response(results, status=status)
        return web.json_response([{**r, "unicode": EMOJI.get(r["shortcode"], "?")} for r in results])

    app = web.Application()
    app.add_routes([web.get("/", index), web.get("/api/list", api_list), web.get("/api/vote", api_vote),
                    web.get("/api/leaderboard", leaderboard), web.get("/leaderboard", leaderboard)])
    return app


async def vote_bot() -> None:
    web_url = f"http://{setting('WEB_HOST', 'web:80')}"
    rate = float(setting("REQUESTS_PER_SECOND", "2"))  # each tick is two requests: list, then vote
    rng = random.Random()
    codes = [c for c in EMOJI if c != ":doughnut:"]
    async with client(10) as session:
        while True:
            for path in ("/api/list", None):
                if path is None:
                    choice = ":doughnut:" if rng.random() < 0.15 else rng.choice(codes)
                    path = f"/api/vote?choice={choice}"
                try:
                    async with session.get(web_url + path) as rsp:
                        await rsp.read()
                except Exception as exc:  # keep voting whatever happens: this is a load generator
                    print(f"vote-bot: {path}: {exc!r}", file=sys.stderr)
                await asyncio.sleep(1 / rate)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    apps = {"web": web_app, "emoji": emoji_app, "voting": voting_app}
    if role in apps:
        serve(apps[role]())
    elif role == "vote-bot":
        run_forever(vote_bot())
    else:
        sys.exit("usage: app.py web|emoji|voting|vote-bot")
