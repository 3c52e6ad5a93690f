"""The topology as a drawn graph: deployments as boxes, grouped by namespace, callers to the
left of whom they call, arrows for edges with 🔒 (mutual TLS) or 🔓 (plaintext), their RPS
and success. The layers and the order within each layer (fewest crossings) come from
grandalf's Sugiyama layout; this module only turns its positions into characters. Pure: data
in, a Rich ``Text`` out, so snapshot tests need no sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout
from rich.cells import cell_len
from rich.text import Text

LOCK, OPEN_LOCK = "🔒", "🔓"
BOX_HEIGHT = 3  # ┌ name ─┐ / │ stats │ / └──────┘
ROW_GAP = 1
COLUMN_GAP = 18  # room for an edge's label: "🔒12.3/s 99.9%"


@dataclass(frozen=True)
class Node:
    key: str  # namespace/deployment
    name: str
    stats: str  # "99.5% 2.1/s"
    style: str  # the health colour


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    secured: bool
    partly: bool  # both mTLS and plaintext in the window (a server being uninjected)
    label: str  # "2.0/s 100%"
    style: str


class _Box:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height  # grandalf's axes: w across a layer (our rows), h along it (our columns)
        self.xy = (0.0, 0.0)


class _Path:
    def __init__(self) -> None:
        self.pts: list[tuple[float, float]] = []

    def setpath(self, pts) -> None:
        self.pts = [tuple(p) for p in pts]


class Canvas:
    """A grid of cells; a wide glyph (an emoji) takes two, the second marked as its tail."""

    TAIL = object()

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells: list[list[Any]] = [[(" ", "")] * width for _ in range(height)]
        self.blocked: set[tuple[int, int]] = set()  # cells of boxes: lines and labels go around them

    def put(self, row: int, col: int, text: str, style: str = "") -> None:
        for ch in text:
            if not (0 <= row < self.height and 0 <= col < self.width):
                return
            self.cells[row][col] = (ch, style)
            if cell_len(ch) == 2 and col + 1 < self.width:
                self.cells[row][col + 1] = Canvas.TAIL
                col += 1
            col += 1

    def get(self, row: int, col: int) -> str:
        cell = self.cells[row][col]
        return "" if cell is Canvas.TAIL else cell[0]

    def line(self, row: int, col: int, ch: str, style: str) -> None:
        """A line character, joined with one already there (crossings and corners)."""
        if not (0 <= row < self.height and 0 <= col < self.width) or self.cells[row][col] is Canvas.TAIL or (row, col) in self.blocked:
            return
        present = self.cells[row][col][0]
        if present != " " and present != ch:
            ch = _JOIN.get(frozenset((present, ch)), "┼" if present in _LINES and ch in _LINES else present)
        self.cells[row][col] = (ch, style)

    def text(self) -> Text:
        out = Text(no_wrap=True, overflow="ignore")  # a drawing: never wrapped, the container scrolls
        for r, row in enumerate(self.cells):
            last = max((i for i, cell in enumerate(row) if cell is Canvas.TAIL or cell[0] != " "), default=-1)
            for cell in row[:last + 1]:
                if cell is not Canvas.TAIL:
                    out.append(cell[0], style=cell[1] or None)
            if r < len(self.cells) - 1:
                out.append("\n")
        return out


_LINES = set("─│┌┐└┘├┤┬┴┼")
_JOIN = {frozenset(("─", "│")): "┼", frozenset(("─", "┐")): "┬", frozenset(("─", "┘")): "┴", frozenset(("─", "┌")): "┬",
         frozenset(("─", "└")): "┴", frozenset(("│", "┐")): "┤", frozenset(("│", "┘")): "┤", frozenset(("│", "┌")): "├",
         frozenset(("│", "└")): "├", frozenset(("┐", "┘")): "┤", frozenset(("┌", "└")): "├", frozenset(("┐", "┌")): "┬",
         frozenset(("┘", "└")): "┴", frozenset(("┤", "┘")): "┤", frozenset(("┤", "┐")): "┤", frozenset(("├", "└")): "├",
         frozenset(("├", "┌")): "├"}


def _width(node: Node) -> int:
    return max(cell_len(node.name) + 4, cell_len(node.stats) + 4, 10)


def layout(nodes: Sequence[Node], arrows: Sequence[Arrow]) -> tuple[dict[str, tuple[int, int, int]], dict[tuple[str, str], list[tuple[int, int]]], int, int, dict[str, int]]:
    """(row, col, width) of each box, the waypoints (row, col) of each arrow, the canvas size,
    and the row of each namespace's heading. Per namespace: its connected deployments laid out
    by grandalf (callers left of whom they call), those without traffic in a row below."""
    boxes: dict[str, tuple[int, int, int]] = {}
    paths: dict[tuple[str, str], list[tuple[int, int]]] = {}
    headings: dict[str, int] = {}
    top = width = 0
    for namespace in sorted({n.key.split("/", 1)[0] for n in nodes}):
        members = [n for n in nodes if n.key.split("/", 1)[0] == namespace]
        keys = {n.key for n in members}
        linked = [a for a in arrows if a.src in keys and a.dst in keys and a.src != a.dst]
        connected = {k for a in linked for k in (a.src, a.dst)}
        headings[namespace] = top
        top += 1
        if connected:
            bottom, right = _sugiyama([n for n in members if n.key in connected], linked, top, boxes, paths)
            top, width = bottom + 1, max(width, right)
        col = 0
        loners = [n for n in members if n.key not in connected]
        for n in loners:  # no traffic yet: a row of boxes
            w = _width(n)
            if col and col + w > max(width, 80):
                top, col = top + BOX_HEIGHT + ROW_GAP, 0
            boxes[n.key] = (top, col, w)
            col += w + 2
            width = max(width, col)
        if loners:
            top += BOX_HEIGHT + ROW_GAP
        top += 1
    return boxes, paths, width + 2, max(top - 1, 1), headings


def _sugiyama(members: Sequence[Node], arrows: Sequence[Arrow], top: int, boxes: dict, paths: dict) -> tuple[int, int]:
    vertices = {n.key: Vertex(n.key) for n in members}
    for n in members:
        vertices[n.key].view = _Box(BOX_HEIGHT, _width(n))
    edges = []
    for a in arrows:
        edge = Edge(vertices[a.src], vertices[a.dst])
        edge.view = _Path()
        edges.append(edge)
    bottom, right = top, 0
    for component in sorted(Graph(list(vertices.values()), edges).C, key=lambda c: sorted(v.data for v in c.sV)[0]):
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace, sugiyama.yspace = ROW_GAP, COLUMN_GAP
        sugiyama.init_all()
        sugiyama.draw()
        # grandalf: x across a layer, y along the layers -> our rows and columns
        r0 = min(v.view.xy[0] - v.view.w / 2 for v in component.sV)
        c0 = min(v.view.xy[1] - v.view.h / 2 for v in component.sV)
        for v in component.sV:
            row = bottom + round(v.view.xy[0] - v.view.w / 2 - r0)
            col = round(v.view.xy[1] - v.view.h / 2 - c0)
            boxes[v.data] = (row, col, v.view.h)
            right = max(right, col + v.view.h)
        for e in component.sE:
            paths[(e.v[0].data, e.v[1].data)] = [(bottom + round(x - r0), round(y - c0)) for x, y in e.view.pts]
        bottom = max(r for r, _c, _w in (boxes[v.data] for v in component.sV)) + BOX_HEIGHT + ROW_GAP
    return bottom, right


def draw(nodes: Sequence[Node], arrows: Sequence[Arrow], selected: str | None = None) -> Text:
    """The graph; ``selected`` (a node key, or "src>dst" for an edge) is drawn reversed."""
    if not nodes:
        return Text("no workloads yet", style="dim")
    boxes, paths, width, height, headings = layout(nodes, arrows)
    canvas = Canvas(width, height)
    for namespace, row in headings.items():
        canvas.put(row, 0, f"── namespace {namespace} " + "─" * max(width - 16 - len(namespace), 4), "dim")
    by_key = {n.key: n for n in nodes}
    for key, (row, col, w) in boxes.items():  # boxes first: arrows and their labels go around them
        node = by_key[key]
        style = node.style + (" reverse" if selected == key else "")
        title = f" {node.name} "
        canvas.put(row, col, "┌" + title + "─" * (w - 2 - cell_len(title)) + "┐", style)
        canvas.put(row + 1, col, "│" + f" {node.stats}".ljust(w - 2) + "│", style)
        canvas.put(row + 2, col, "└" + "─" * (w - 2) + "┘", style)
        canvas.blocked |= {(r, c) for r in range(row, row + BOX_HEIGHT) for c in range(col, col + w)}
    for a in arrows:
        if (a.src, a.dst) in paths:
            _arrow(canvas, boxes[a.src], boxes[a.dst], paths[(a.src, a.dst)], a, selected == f"{a.src}>{a.dst}")
    return canvas.text()


def _arrow(canvas: Canvas, src: tuple[int, int, int], dst: tuple[int, int, int], pts: list[tuple[int, int]], arrow: Arrow,
           selected: bool) -> None:
    """An orthogonal line from the source's right side to the target's left side, turning in
    the gap right after each layer, so the last stretch before the target is long enough to
    carry the edge's label (which is this edge's alone, even when a caller fans out)."""
    style = arrow.style + (" reverse" if selected else "")
    start = (src[0] + 1, src[1] + src[2])  # the middle of the source's right side
    end = (dst[0] + 1, dst[1] - 1)  # just left of the target's left side
    middle = [(r + 1, c) for r, c in pts[1:-1]]  # long edges pass the layers between through grandalf's dummy vertices
    points = [start, *middle, end]
    last_turn = start[1]
    for (r1, c1), (r2, c2) in zip(points, points[1:], strict=False):
        turn = min(c1 + 2, c2 - 1)
        for c in range(c1, turn):
            canvas.line(r1, c, "─", style)
        if r1 != r2:
            canvas.line(r1, turn, "┐" if r2 > r1 else "┘", style)
            for r in range(min(r1, r2) + 1, max(r1, r2)):
                canvas.line(r, turn, "│", style)
            canvas.line(r2, turn, "└" if r2 > r1 else "┌", style)
        else:
            canvas.line(r1, turn, "─", style)
        for c in range(turn + 1, c2 + 1):
            canvas.line(r2, c, "─", style)
        last_turn = turn
    canvas.put(end[0], end[1], "▶", style)
    mark = f"{LOCK if arrow.secured else OPEN_LOCK}{'½' if arrow.partly else ''}{arrow.label}"
    col = last_turn + 2
    room = end[1] - col - 1
    while cell_len(mark) > room and len(mark) > 2:  # never over the target's box
        mark = mark[:-1]
    for row in (end[0] - 1, end[0] + 1, end[0] - 2):
        if _free(canvas, row, col, cell_len(mark)):
            canvas.put(row, col, mark, style)
            return


def _free(canvas: Canvas, row: int, col: int, length: int) -> bool:
    return 0 <= row < canvas.height and all(canvas.get(row, c) in (" ", "") and (row, c) not in canvas.blocked
                                            for c in range(col, min(col + length, canvas.width)))
