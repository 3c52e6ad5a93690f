"""``jwt``: a token from the sandbox's own issuer, for RequestAuthentication lessons.

    TOKEN=$(meshdojo jwt alice --claim groups=group1,group2 --aud bookinfo)
    meshdojo load svc/productpage /productpage -H "Authorization: Bearer $TOKEN"
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sandbox.cli.common import add_name, fail

EXPIRED_AGO = 300  # seconds: past the sidecars' 60 s of clock skew


def claim(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: JSON when it reads as JSON (``true``, ``3``, ``["a"]``), a list when it has
    commas (``group1,group2``), else the text itself."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. groups=group1,group2")
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, str):
            return key, parsed
    except ValueError:
        pass
    return key, value.split(",") if "," in value else value


def lifetime(text: str) -> float:
    from controlplane.durations import InvalidDuration, parse_duration

    try:
        return parse_duration(text)
    except InvalidDuration:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 1h or 30m") from None


def _jwt(args: argparse.Namespace) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        api = resources.api_for(args.name)
        if args.jwks:
            print(json.dumps(api.call("GET", "/v1/jwt/jwks"), indent=2))
            return 0
        if not args.subject:
            return fail("give the user the token is for, e.g. 'meshdojo jwt alice' (or --jwks for the issuer's keys)")
        answer = api.call("POST", "/v1/jwt", {"subject": args.subject, "claims": dict(args.claims or []),
                                              "audiences": args.audiences or [],
                                              "lifetimeSeconds": -EXPIRED_AGO if args.expired else args.expires})
    except ApiError as exc:
        return fail(str(exc.body.get("error") or exc))
    except resources.ResourceError as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(answer, indent=2))
        return 0
    print(answer["token"])
    if sys.stderr.isatty():
        print(f"# a token for {answer['issuer']}/{args.subject}; a RequestAuthentication accepts it with "
              f"jwtRules: [{{issuer: {answer['issuer']}}}] (see docs/policy.md, 'End users: JWTs')", file=sys.stderr)
    return 0


def register(sub) -> None:
    jwt = sub.add_parser("jwt", help="a JWT from the sandbox's own issuer, for RequestAuthentication "
                                     "(e.g. 'TOKEN=$(meshdojo jwt alice --claim groups=group1)')")
    jwt.add_argument("subject", nargs="?", help="the user (the token's sub); its request principal is ISSUER/SUBJECT")
    jwt.add_argument("--claim", dest="claims", action="append", type=claim, metavar="KEY=VALUE",
                     help="another claim (repeatable): groups=group1,group2 is a list, admin=true a boolean")
    jwt.add_argument("--aud", dest="audiences", action="append", metavar="NAME", help="an audience (repeatable)")
    jwt.add_argument("--expires", type=lifetime, default=3600.0, metavar="DURATION", help="how long it is valid (default 1h)")
    jwt.add_argument("--expired", action="store_true", help="a token that expired 5 minutes ago (a sidecar answers 401 Jwt is expired)")
    jwt.add_argument("--jwks", action="store_true", help="print the issuer's public keys (a JWKS) instead")
    jwt.add_argument("-o", "--output", choices=["token", "json"], default="token", help="json: the token and its claims")
    jwt.set_defaults(handler=_jwt)
    add_name(jwt)
