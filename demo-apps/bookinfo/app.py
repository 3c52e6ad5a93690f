"""bookinfo, as in Istio's sample: ``python app.py productpage|details|reviews|ratings|traffic``.

Timeouts as in the sample, so Istio's fault-injection lesson reproduces: productpage calls
reviews with a 3 s timeout and one retry; reviews v2 calls ratings with a 10 s timeout and
v3 with 2.5 s. A 7 s delay on ratings therefore breaks the page after about 6 s. The
``end-user`` header is propagated for header-based routing.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Reply, Request, fetch, serve, setting

PROPAGATE = ("end-user", "x-request-id")
POOL = ThreadPoolExecutor(max_workers=16)


def forwarded(request: Request) -> dict[str, str]:
    return {h: request.headers[h] for h in PROPAGATE if h in request.headers}


def get_json(url: str, timeout: float, headers: dict[str, str], attempts: int = 1):
    """(status, body) or (None, reason) after ``attempts`` tries."""
    reason = ""
    for _ in range(attempts):
        try:
            return fetch(url, timeout, headers)
        except (OSError, ValueError) as exc:
            reason = f"timed out after {timeout:g}s" if "timed out" in str(exc) else repr(exc)
    return None, reason


def productpage_routes() -> dict:
    details = f"http://{setting('DETAILS_ADDR', 'details:9080')}"
    reviews = f"http://{setting('REVIEWS_ADDR', 'reviews:9080')}"

    def product(request: Request) -> dict:
        headers = forwarded(request)
        d = POOL.submit(get_json, f"{details}/details/0", 3, headers)
        r = POOL.submit(get_json, f"{reviews}/reviews/0", 3, headers, 2)  # 3 s timeout, one retry
        (d_status, d_body), (r_status, r_body) = d.result(), r.result()
        return {
            "product": {"id": 0, "title": "The Comedy of Errors"},
            "details": d_body if d_status == 200 else {"error": f"Sorry, product details are currently unavailable ({d_body})"},
            "reviews": r_body if r_status == 200 else {"error": f"Sorry, product reviews are currently unavailable ({r_body})"},
            "user": request.headers.get("end-user"),
        }

    def api_product(request: Request) -> Reply:
        return Reply.json(product(request))

    def page(request: Request) -> Reply:
        data = product(request)
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
        return Reply.html(f"<!doctype html><html><head><meta charset='utf-8'><title>bookinfo</title></head>"
                          f"<body style='font-family:sans-serif;max-width:50em;margin:2em auto'><h1>{data['product']['title']}</h1>"
                          f"<p>user: {data['user'] or '(anonymous — send an end-user header to be jason)'}</p>"
                          f"<h2>Details</h2>{details_html}<h2>Reviews</h2>{reviews_html}</body></html>")

    return {"/": page, "/productpage": page, "/api/v1/products/0": api_product}


def details_routes() -> dict:
    def details(_r: Request) -> Reply:
        return Reply.json({"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                           "pages": 200, "publisher": "PublisherA", "language": "English"})

    return {"/details/": details}


def reviews_routes() -> dict:
    version = setting("VERSION", "v1")
    ratings = f"http://{setting('RATINGS_ADDR', 'ratings:9080')}"
    timeout = {"v2": 10.0, "v3": 2.5}.get(version)
    color = {"v2": "black", "v3": "red"}.get(version)
    pod = setting("POD_NAME", f"reviews-{version}")

    def reviews(request: Request) -> Reply:
        reviewers = [("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
                     ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.")]
        body = {"id": 0, "podname": pod, "version": version, "reviews": [{"reviewer": r, "text": t} for r, t in reviewers]}
        if timeout is not None:
            status, scores = get_json(f"{ratings}/ratings/0", timeout, forwarded(request))
            for review in body["reviews"]:
                if status == 200:
                    review["rating"] = {"stars": scores["ratings"].get(review["reviewer"], 0), "color": color}
                else:
                    review["rating"] = {"error": "Ratings service is currently unavailable"}
        return Reply.json(body)

    return {"/reviews/": reviews}


def ratings_routes() -> dict:
    def ratings(_r: Request) -> Reply:
        return Reply.json({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})

    return {"/ratings/": ratings}


def traffic() -> None:
    url = f"http://{setting('PRODUCTPAGE_ADDR', 'productpage:9080')}/productpage"
    interval = 1 / float(setting("REQUESTS_PER_SECOND", "1"))
    while True:
        try:
            fetch(url, 15)
        except (OSError, ValueError) as exc:  # a load generator keeps going
            print(f"traffic: {exc!r}", file=sys.stderr, flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    routes = {"productpage": productpage_routes, "details": details_routes, "reviews": reviews_routes, "ratings": ratings_routes}
    if role in routes:
        serve(routes[role]())
    elif role == "traffic":
        traffic()
    else:
        sys.exit("usage: app.py productpage|details|reviews|ratings|traffic")
