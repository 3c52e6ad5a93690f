"""emojivoto, as in Linkerd's demo: ``python app.py web|emoji|voting|vote-bot``.

Kept from the original: voting for the doughnut fails with a 500 from ``voting``, so ``web``
is never at 100 % success. As in Linkerd's demo, ``voting`` has one method per emoji —
``POST /emojivoto.v1.VotingService/VoteDoughnut`` — so ``meshdojo top`` and ``routes`` single
out the failing one.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Reply, Request, fetch, serve, setting, trace_context

EMOJI = {
    ":joy:": "😂", ":sunglasses:": "😎", ":doughnut:": "🍩", ":stuck_out_tongue_winking_eye:": "😜",
    ":money_mouth_face:": "🤑", ":flushed:": "😳", ":mask:": "😷", ":nerd_face:": "🤓", ":ghost:": "👻",
    ":skull_and_crossbones:": "☠️", ":heart_eyes_cat:": "😻", ":hear_no_evil:": "🙉", ":see_no_evil:": "🙈",
    ":speak_no_evil:": "🙊", ":boy:": "👦", ":girl:": "👧", ":man:": "👨", ":woman:": "👩", ":older_man:": "👴",
    ":policeman:": "👮", ":guardsman:": "💂", ":construction_worker:": "👷", ":prince:": "🤴", ":princess:": "👸",
    ":100:": "💯", ":rocket:": "🚀", ":champagne:": "🍾", ":taco:": "🌮", ":pizza:": "🍕", ":cat:": "🐈",
}


def emoji_routes() -> dict:
    def list_all(_r: Request) -> Reply:
        return Reply.json([{"shortcode": k, "unicode": v} for k, v in EMOJI.items()])

    def find(r: Request) -> Reply:
        code = r.query.get("shortcode", "")
        if code not in EMOJI:
            return Reply.json({"error": f"no emoji {code}"}, 404)
        return Reply.json({"shortcode": code, "unicode": EMOJI[code]})

    return {"/api/list": list_all, "/api/find": find}


VOTING = "/emojivoto.v1.VotingService/"


def method_name(shortcode: str) -> str:
    """``:stuck_out_tongue_winking_eye:`` -> ``VoteStuckOutTongueWinkingEye`` (Linkerd's method names)."""
    return "Vote" + "".join(part.capitalize() for part in shortcode.strip(":").split("_"))


METHODS = {method_name(code): code for code in EMOJI}


def voting_routes() -> dict:
    votes: Counter[str] = Counter()
    lock = threading.Lock()

    def vote_method(r: Request) -> Reply:
        method = r.path.removeprefix(VOTING)
        if method == "Results":
            return results(r)
        if method not in METHODS:
            return Reply.json({"error": f"unknown method {method}"}, 404)
        return vote_for(METHODS[method])

    def vote(r: Request) -> Reply:
        return vote_for(r.query.get("choice", ""))

    def vote_for(choice: str) -> Reply:
        if choice == ":doughnut:":  # the classic bug, kept on purpose
            return Reply.json({"error": "ERROR: voting for the doughnut is broken"}, 500)
        if choice not in EMOJI:
            return Reply.json({"error": f"unknown choice {choice}"}, 400)
        with lock:
            votes[choice] += 1
        return Reply.json({"voted": choice})

    def results(_r: Request) -> Reply:
        with lock:
            return Reply.json([{"shortcode": k, "votes": n} for k, n in votes.most_common()])

    return {VOTING: vote_method, "/api/vote": vote, "/api/results": results}


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>emojivoto</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}} a{{font-size:2em;text-decoration:none}}</style></head>
<body><h1>🗳 emojivoto</h1><p>Vote for your favourite emoji (served through the mesh).</p>{links}
<p><a style="font-size:1em" href="/leaderboard">leaderboard</a></p></body></html>"""


def web_routes() -> dict:
    emoji_url = f"http://{setting('EMOJI_ADDR', 'emoji:8080')}"
    voting_url = f"http://{setting('VOTING_ADDR', 'voting:8080')}"

    def upstream(url: str, r: Request, method: str = "GET") -> tuple[int, object]:
        try:  # the trace's headers passed on: each call is part of the request it serves
            return fetch(url, 5, trace_context(r), method=method)
        except OSError as exc:
            return 502, {"error": f"upstream unavailable: {exc}"}

    def index(r: Request) -> Reply:
        status, emojis = upstream(f"{emoji_url}/api/list", r)
        if status != 200:
            return Reply.json(emojis, 502)
        links = " ".join(f'<a href="/api/vote?choice={e["shortcode"]}" title="{e["shortcode"]}">{e["unicode"]}</a>' for e in emojis)
        return Reply.html(PAGE.format(links=links))

    def api_list(r: Request) -> Reply:
        status, body = upstream(f"{emoji_url}/api/list", r)
        return Reply.json(body, status)

    def api_vote(r: Request) -> Reply:
        choice = r.query.get("choice", "")
        status, found = upstream(f"{emoji_url}/api/find?shortcode={choice}", r)
        if status != 200:
            return Reply.json(found, status)
        status, body = upstream(f"{voting_url}{VOTING}{method_name(choice)}", r, "POST")
        return Reply.json(body, status)

    def leaderboard(r: Request) -> Reply:
        status, results = upstream(f"{voting_url}{VOTING}Results", r, "POST")
        if status != 200:
            return Reply.json(results, status)
        return Reply.json([{**r, "unicode": EMOJI.get(r["shortcode"], "?")} for r in results])

    return {"/": index, "/api/list": api_list, "/api/vote": api_vote, "/api/leaderboard": leaderboard, "/leaderboard": leaderboard}


def vote_bot() -> None:
    web_url = f"http://{setting('WEB_HOST', 'web:80')}"
    rate = float(setting("REQUESTS_PER_SECOND", "2"))  # each tick is two requests: list, then vote
    rng = random.Random()
    codes = [c for c in EMOJI if c != ":doughnut:"]
    while True:
        choice = ":doughnut:" if rng.random() < 0.15 else rng.choice(codes)
        for path in ("/api/list", f"/api/vote?choice={choice}"):
            try:
                fetch(web_url + path, 10)
            except OSError as exc:  # keep voting whatever happens: this is a load generator
                print(f"vote-bot: {path}: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(1 / rate)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    routes = {"web": web_routes, "emoji": emoji_routes, "voting": voting_routes}
    if role in routes:
        serve(routes[role]())
    elif role == "vote-bot":
        vote_bot()
    else:
        sys.exit("usage: app.py web|emoji|voting|vote-bot")
