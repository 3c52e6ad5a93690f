"""bookinfo, as in Istio's sample: ``python app.py productpage|details|reviews|ratings|traffic``.

Timeouts as in the sample, so Istio's fault-injection lesson reproduces: productpage calls
reviews with a 3 s timeout and one retry; reviews v2 calls ratings with a 10 s timeout and
v3 with 2.5 s. A 7 s delay on ratings therefore breaks the page after about 6 s. The
``end-user`` header is propagated for header-based routing.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import ClientError, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import client, run_forever, serve, setting

PROPAGATE = ("end-user", "x-request-id")


def forwarded(request: web.Request) -> dict[str, str]:
    return {h: request.headers[h] for h in PROPAGATE if h in request.headers}


async def get_json(url: str, timeout: float, headers: dict[str, str], attempts: int = 1):
    """(status, body) or (None, reason) after ``attempts`` tries."""
    reason = ""
    for _ in range(attempts):
        try:
            async with client(timeout) as session, session.get(url, headers=headers) as rsp:
                return rsp.status, await rsp.json(content_type=None)
        except (TimeoutError, ClientError, ValueError) as exc:
            reason = f"{type(exc).__name__} after {timeout:g}s" if isinstance(exc, TimeoutError) else repr(exc)
    return None, reason


def productpage_app() -> web.Application:
    details = f"http://{setting('DETAILS_ADDR', 'details:9080')}"
    reviews = f"http://{setting('REVIEWS_ADDR', 'reviews:9080')}"

    async def product(request: web.Request) -> dict:
        headers = forwarded(request)
        (d_status, d_body), (r_status, r_body) = await asyncio.gather(
            get_json(f"{details}/details/0", 3, headers),
            get_json(f"{reviews}/reviews/0", 3, headers, attempts=2),  # 3 s timeout, one retry
        )
        return {
            "product": {"id": 0, "title": "The Comedy of Errors"},
            "details": d_body if d_status == 200 else {"error": f"Sorry, product details are currently unavailable ({d_body})"},
            "reviews": r_body if r_status == 200 else {"error": f"Sorry, product reviews are currently unavailable ({r_body})"},
            "user": request.headers.get("end-user"),
        }

    async def api_product(request: web.Request) -> web.Response:
        return web.json_response(await product(request))

    async def page(request: web.Request) -> web.Response:
        data = await product(request)
        reviews_html = ""
        if "error" in data["reviews"]:
            reviews_html = f"<p style='color:#b00'>{data['reviews']['error']}</p>"
        else:
            for review in data["reviews"]["reviews"]:
                stars = review.get("rating", {})
                star_html = "" if not stars else f"<span style='color:{stars.get('color', 'black')}'>{'★' * stars.get('stars', 0)}</span>"
                reviews_html += f"<blockquote>{review['text']}<br><small>— {review['reviewer']}</small> {star_html}</blockquote>"
            reviews_html += f"<p><small>reviews served by {data['reviews'].get('podname', '?')}</small></p>"
        details = data["details"]
        details_html = (f"<p style='color:#b00'>{details['error']}</p>" if "error" in details
                        else "<ul>" + "".join(f"<li>{k}: {v}</li>" for k, v in details.items() if k != "id") + "</ul>")
        html = (f"<!doctype html><html><head><meta charset='utf-8'><title>bookinfo</title></head>"
                f"<body style='font-family:sans-serif;max-width:50em;margin:2em auto'><h1>{data['product']['title']}</h1>"
                f"<p>user: {data['user'] or '(anonymous — send an end-user header to be jason)'}</p>"
                f"<h2>Details</h2>{details_html}<h2>Reviews</h2>{reviews_html}</body></html>")
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/", page), web.get("/productpage", page), web.get("/api/v1/products/0", api_product)])
    return app


def details_app() -> web.Application:
    async def details(_r: web.Request) -> web.Response:
        return web.json_response({"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                                  "pages": 200, "publisher": "PublisherA", "language": "English"})

    app = web.Application()
    app.add_routes([web.get("/details/{id}", details)])
    return app


def reviews_app() -> web.Application:
    version = setting("VERSION", "v1")
    ratings = f"http://{setting('RATINGS_ADDR', 'ratings:9080')}"
    timeout = {"v2": 10.0, "v3": 2.5}.get(version)
    color = {"v2": "black", "v3": "red"}.get(version)
    pod = setting("POD_NAME", f"reviews-{version}")

    async def reviews(request: web.Request) -> web.Response:
        reviewers = [("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
                     ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.")]
        body = {"id": 0, "podname": pod, "version": version, "reviews": [{"reviewer": r, "text": t} for r, t in reviewers]}
        if timeout is not None:
            status, scores = await get_json(f"{ratings}/ratings/0", timeout, forwarded(request))
            for review in body["reviews"]:
                if status == 200:
                    review["rating"] = {"stars": scores["ratings"].get(review["reviewer"], 0), "color": color}
                else:
                    review["rating"] = {"error": "Ratings service is currently unavailable"}
        return web.json_response(body)

    app = web.Application()
    app.add_routes([web.get("/reviews/{id}", reviews)])
    return app


def ratings_app() -> web.Application:
    async def ratings(_r: web.Request) -> web.Response:
        return web.json_response({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})

    app = web.Application()
    app.add_routes([web.get("/ratings/{id}", ratings)])
    return app


async def traffic() -> None:
    url = f"http://{setting('PRODUCTPAGE_ADDR', 'productpage:9080')}/productpage"
    interval = 1 / float(setting("REQUESTS_PER_SECOND", "1"))
    while True:
        try:
            async with client(15) as session, session.get(url) as rsp:
                await rsp.read()
        except Exception as exc:  # a load generator keeps going
            print(f"traffic: {exc!r}", file=sys.stderr)
        await asyncio.sleep(interval)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    apps = {"productpage": productpage_app, "details": details_app, "reviews": reviews_app, "ratings": ratings_app}
    if role in apps:
        serve(apps[role]())
    elif role == "traffic":
        run_forever(traffic())
    else:
        sys.exit("usage: app.py productpage|details|reviews|ratings|traffic")
