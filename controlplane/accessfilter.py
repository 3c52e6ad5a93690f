"""Istio's access-log filter: a ``Telemetry``'s ``accessLogging[].filter.expression``, a CEL
expression over Envoy's request attributes — a line is written only for the requests it is
true for (``response.code >= 400``: the failures only).

The part of CEL that access-log filters use: the attributes below; ``==``, ``!=``, ``<``,
``<=``, ``>``, ``>=``, ``in`` (a list), ``&&``, ``||``, ``!`` and parentheses; string, integer
and boolean literals, ``duration('100ms')``; the string methods ``startsWith``, ``endsWith``,
``contains``. It is compiled once, when the Telemetry is read, with its types checked, so a
typo is refused by ``meshdojo apply`` with where it is — never found by a request. A header
that is not there is an error, as a missing key is in CEL: ``||`` and ``&&`` forgive it when
their other side decides (``true || error`` is true), else the expression is false (no line,
as in Envoy).

Pure: :func:`compile_filter` returns a predicate over :class:`LogFacts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.durations import InvalidDuration, parse_duration


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What a filter may read of one request (Envoy's attribute names in ATTRIBUTES)."""

    method: str
    path: str  # with its query
    host: str
    status: int
    duration: float  # seconds
    headers: Callable[[str], str | None] = field(default=lambda name: None)
    mtls: bool = False
    source: str = ""  # the caller's address, ip:port


ATTRIBUTES: dict[str, tuple[str, Callable[[LogFacts], Any]]] = {
    "response.code": ("int", lambda f: f.status),
    "request.method": ("string", lambda f: f.method),
    "request.path": ("string", lambda f: f.path),
    "request.url_path": ("string", lambda f: f.path.partition("?")[0]),
    "request.host": ("string", lambda f: f.host),
    "request.scheme": ("string", lambda f: "http"),
    "request.protocol": ("string", lambda f: "HTTP/1.1"),
    "request.useragent": ("string", lambda f: f.headers("user-agent") or ""),
    "request.duration": ("duration", lambda f: f.duration),
    "request.headers": ("map", lambda f: f.headers),
    "connection.mtls": ("bool", lambda f: f.mtls),
    "source.address": ("string", lambda f: f.source),
}
METHODS = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}
ORDERED = ("int", "duration")  # the types < and > compare
TOKEN = re.compile(r"\s*(?:(?P<num>\d+)|(?P<str>'[^'\\]*'|\"[^\"\\]*\")|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                   r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,]))")


class FilterError(ValueError):
    """What is wrong with an expression, and where (a 1-based column)."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"at column {column}: {message}")


class MissingKey(Exception):
    """A header that is not there: the whole expression is false (Envoy logs no line)."""


Compiled = tuple[Callable[[LogFacts], Any], str]  # (evaluate, type)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, pos = text, [], 0
        while pos < len(text.rstrip()):
            m = TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise FilterError(f"unexpected {text[pos:].strip()[:1]!r}", pos + 1 + (len(text[pos:]) - len(text[pos:].lstrip())))
            kind = next(k for k in ("num", "str", "name", "op") if m.group(k) is not None)
            self.tokens.append((kind, m.group(kind), m.start(kind) + 1))
            pos = m.end()
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.tokens) and (value is None or self.tokens[self.i][1] == value)

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        if not self.peek(value):
            where = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text) + 1
            found = repr(self.tokens[self.i][1]) if self.i < len(self.tokens) else "the end"
            raise FilterError(f"expected {value!r}, found {found}" if value else f"expected more, found {found}", where)
        token = self.tokens[self.i]
        self.i += 1
        return token

    def column(self) -> int:
        return self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text) + 1

    # expr := or;  or := and ('||' and)*;  and := unary ('&&' unary)*;  unary := '!' unary | relation
    def expression(self) -> Compiled:
        return self._chain("||", self.conjunction, _either)

    def conjunction(self) -> Compiled:
        return self._chain("&&", self.unary, _both)

    def _chain(self, op: str, operand: Callable[[], Compiled], combine: Callable[..., bool]) -> Compiled:
        """``operand (op operand)*``, each side a bool, combined left to right."""
        left = operand()
        while self.peek(op):
            at = self.take()[2]
            right = operand()
            self._want(left, "bool", at), self._want(right, "bool", at)
            left = (lambda f, a=left[0], b=right[0]: combine(a, b, f), "bool")
        return left

    def unary(self) -> Compiled:
        if self.peek("!"):
            at = self.take()[2]
            inner = self.unary()
            self._want(inner, "bool", at)
            return (lambda f, a=inner[0]: not a(f), "bool")
        return self.relation()

    def relation(self) -> Compiled:
        left = self.member()
        if self.peek() and self.tokens[self.i][1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
            _kind, op, at = self.take()
            right = self.member()
            if op == "in":
                if right[1] != f"list:{left[1]}":
                    raise FilterError(f"'in' needs a list of {left[1]} values", at)
                return (lambda f, a=left[0], b=right[0]: a(f) in b(f), "bool")
            if left[1] != right[1]:
                raise FilterError(f"{op} compares {_a(left[1])} with {_a(right[1])}", at)
            if op in ("<", "<=", ">", ">=") and left[1] not in ORDERED:
                raise FilterError(f"{op} compares numbers and durations only, not {_a(left[1])}", at)
            compare = {"==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
                       "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}[op]
            return (lambda f, a=left[0], b=right[0], c=compare: c(a(f), b(f)), "bool")
        return left

    def member(self) -> Compiled:
        at = self.column()
        node, path = self.primary()
        while self.peek(".") or self.peek("["):
            if self.take()[1] == "[":
                key = self.expression()
                self.take("]")
                if node[1] != "map" or key[1] != "string":
                    raise FilterError("only request.headers['NAME'] is indexed, by a string", at)
                node, path = (lambda f, m=node[0], k=key[0]: _lookup(m(f), k(f)), "string"), None
                continue
            _kind, name, name_at = self.take()
            if self.peek("("):  # a method of a string
                if name not in METHODS or node[1] != "string":
                    raise FilterError(f"{name}() is not a method here (startsWith, endsWith and contains, on strings)", name_at)
                self.take("(")
                arg = self.expression()
                self.take(")")
                if arg[1] != "string":
                    raise FilterError(f"{name}() takes a string", name_at)
                node, path = (lambda f, s=node[0], a=arg[0], m=METHODS[name]: m(s(f), a(f)), "bool"), None
                continue
            if path is None:
                raise FilterError(f".{name} reads nothing here", name_at)
            path = f"{path}.{name}"
            if path in ATTRIBUTES:
                kind, read = ATTRIBUTES[path]
                node = (read, kind)
            elif not any(a.startswith(path + ".") for a in ATTRIBUTES):
                raise FilterError(f"unknown attribute {path} (known: {', '.join(ATTRIBUTES)})", at)
        if node[1] == "prefix":
            raise FilterError(f"{path} is not an attribute (known: {', '.join(ATTRIBUTES)})", at)
        return node

    def primary(self) -> tuple[Compiled, str | None]:
        kind, value, at = self.take()
        if kind == "num":
            return (lambda f, v=int(value): v, "int"), None
        if kind == "str":
            return (lambda f, v=value[1:-1]: v, "string"), None
        if value == "(":
            inner = self.expression()
            self.take(")")
            return inner, None
        if value == "[":
            items = [] if self.peek("]") else [self.expression()]
            while self.peek(","):
                self.take(",")
                items.append(self.expression())
            self.take("]")
            kinds = {k for _f, k in items}
            if len(kinds) != 1:
                raise FilterError("a list holds values of one type", at)
            values = [fn for fn, _k in items]
            return (lambda f, vs=values: [v(f) for v in vs], f"list:{kinds.pop()}"), None
        if kind == "name":
            if value in ("true", "false"):
                return (lambda f, v=value == "true": v, "bool"), None
            if value == "duration" and self.peek("("):
                self.take("(")
                _k, text, text_at = self.take()
                self.take(")")
                try:
                    seconds = parse_duration(text[1:-1]) if _k == "str" else None
                except InvalidDuration:
                    seconds = None
                if seconds is None:
                    raise FilterError(f"duration() takes a duration as a string, e.g. duration('100ms'), not {text}", text_at)
                return (lambda f, v=seconds: v, "duration"), None
            if any(a.startswith(value + ".") for a in ATTRIBUTES):
                return (lambda f: None, "prefix"), value
            raise FilterError(f"unknown name {value!r} (the attributes: {', '.join(ATTRIBUTES)})", at)
        raise FilterError(f"unexpected {value!r}", at)

    @staticmethod
    def _want(node: Compiled, kind: str, at: int) -> None:
        if node[1] != kind:
            raise FilterError(f"expected {_a(kind)} on both sides, found {_a(node[1])}", at)


def _either(a: Callable[[LogFacts], Any], b: Callable[[LogFacts], Any], facts: LogFacts) -> bool:
    """CEL's ``||``: true if either side is, even when the other is an error (a missing header)."""
    try:
        left = a(facts)
    except MissingKey:
        left = None
    if left:
        return True
    if b(facts):  # an error here, with a false or erring left: the whole is an error
        return True
    if left is None:
        raise MissingKey("left")
    return False


def _both(a: Callable[[LogFacts], Any], b: Callable[[LogFacts], Any], facts: LogFacts) -> bool:
    """CEL's ``&&``: false if either side is, even when the other is an error."""
    try:
        left = a(facts)
    except MissingKey:
        left = None
    if left is False:
        return False
    if not b(facts):
        return False
    if left is None:
        raise MissingKey("left")
    return True


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _lookup(headers: Callable[[str], str | None], name: str) -> str:
    value = headers(name.lower())
    if value is None:
        raise MissingKey(name)
    return value


def compile_filter(text: str) -> Callable[[LogFacts], bool]:
    """The expression as a predicate; FilterError says what is wrong and where."""
    parser = _Parser(text)
    if not parser.tokens:
        raise FilterError("the expression is empty (e.g. response.code >= 400)", 1)
    node, kind = parser.expression()
    if parser.peek():
        raise FilterError(f"unexpected {parser.tokens[parser.i][1]!r} after a whole expression", parser.column())
    if kind != "bool":
        raise FilterError(f"the expression is {_a(kind)}, not true or false (e.g. response.code >= 400)", 1)

    def matches(facts: LogFacts) -> bool:
        try:
            return bool(node(facts))
        except MissingKey:
            return False

    return matches
