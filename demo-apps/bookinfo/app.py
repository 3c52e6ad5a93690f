"""bookinfo, as in Istio's sample: ``python app.py productpage|details|reviews|ratings|traffic``.

Timeouts as in the sample, so Istio's fault-injection lesson reproduces: productpage calls
reviews with a 3 s timeout and retries once on any failure (a 5xx, a timeout, a refused
connection); reviews v2 calls ratings with a 10 s timeout and v3 with 2.5 s. A 7 s delay on
ratings therefore breaks the page after about 6 s, and a 0.5 s route timeout on reviews makes
the page wait about 1 s. As in Istio's sample, a learner signs in on the product page (a
cookie), and productpage sends ``end-user: <name>`` with every call, for header-based routing.
"""

from __future__ import annotations

import html
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import TRACE_HEADERS, Reply, Request, fetch, serve, setting

PROPAGATE = ("end-user", *TRACE_HEADERS)  # as Istio's bookinfo: the user, and the trace's context
POOL = ThreadPoolExecutor(max_workers=16)


def forwarded(request: Request) -> dict[str, str]:
    return {h: request.headers[h] for h in PROPAGATE if h in request.headers}


def get_json(url: str, timeout: float, headers: dict[str, str], attempts: int = 1):
    """(status, body) of the first 200, else of the last try; (None, reason) when nothing
    answered. Any failure — a 5xx, a timeout, a refused connection — is tried again."""
    status, body = None, ""
    for _ in range(attempts):
        try:
            status, body = fetch(url, timeout, headers)
        except (OSError, ValueError) as exc:
            status, body = None, (f"timed out after {timeout:g}s" if "timed out" in str(exc) else repr(exc))
        if status == 200:
            break
    return status, body


def signed_in(request: Request) -> str | None:
    """The user of the product page: the sign-in cookie, else an end-user header (for curl)."""
    for part in request.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "user" and value:
            return value
    return request.headers.get("end-user")


SIGN_IN = ("<form method='post' action='/login' style='float:right'>"
           "<input name='username' placeholder='jason' size='8'> <button>Sign in</button></form>")


def productpage_routes() -> dict:
    details = f"http://{setting('DETAILS_ADDR', 'details:9080')}"
    reviews = f"http://{setting('REVIEWS_ADDR', 'reviews:9080')}"

    def product(request: Request) -> dict:
        headers = forwarded(request)
        user = signed_in(request)
        if user:
            headers["end-user"] = user
        d = POOL.submit(get_json, f"{details}/details/0", 3, headers)
        r = POOL.submit(get_json, f"{reviews}/reviews/0", 3, headers, 2)  # 3 s timeout, one retry
        (d_status, d_body), (r_status, r_body) = d.result(), r.result()
        return {
            "product": {"id": 0, "title": "The Comedy of Errors"},
            "details": d_body if d_status == 200 else {"error": f"Sorry, product details are currently unavailable ({d_body})"},
            "reviews": r_body if r_status == 200 else {"error": f"Sorry, product reviews are currently unavailable ({r_body})"},
            "user": user,
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
                if "error" in stars:
                    star_html = f"<span style='color:#b00'>{stars['error']}</span>"
                else:
                    star_html = "" if not stars else f"<span style='color:{stars.get('color', 'black')}'>{'★' * stars.get('stars', 0)}</span>"
                reviews_html += f"<blockquote>{review['text']}<br><small>— {review['reviewer']}</small> {star_html}</blockquote>"
            reviews_html += f"<p><small>reviews served by {data['reviews'].get('podname', '?')}</small></p>"
        details = data["details"]
        details_html = (f"<p style='color:#b00'>{details['error']}</p>" if "error" in details
                        else "<ul>" + "".join(f"<li>{k}: {v}</li>" for k, v in details.items() if k != "id") + "</ul>")
        return Reply.html(f"<!doctype html><html><head><meta charset='utf-8'><title>bookinfo</title></head>"
                          f"<body style='font-family:sans-serif;max-width:50em;margin:2em auto'>{session(data['user'])}"
                          f"<h1>{data['product']['title']}</h1>"
                          f"<h2>Details</h2>{details_html}<h2>Reviews</h2>{reviews_html}</body></html>")

    def session(user: str | None) -> str:
        if not user:
            return SIGN_IN
        return (f"<form method='post' action='/logout' style='float:right'>signed in as <b>{html.escape(user)}</b> "
                f"<button>Sign out</button></form>")

    def login(request: Request) -> Reply:
        user = parse_qs(request.body.decode("utf-8", "replace")).get("username", [""])[0].strip()
        if not user or not user.replace("-", "").replace("_", "").isalnum():
            return Reply.html(SIGN_IN + "<p>a user name is letters and digits, e.g. jason</p>", 400)
        return Reply.redirect("/productpage", {"Set-Cookie": f"user={user}; Path=/; HttpOnly; SameSite=Lax"})

    def logout(_request: Request) -> Reply:
        return Reply.redirect("/productpage", {"Set-Cookie": "user=; Path=/; Max-Age=0"})

    return {"/": page, "/productpage": page, "/api/v1/products/0": api_product, "/login": login, "/logout": logout}


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
