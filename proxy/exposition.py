"""The request metrics' text exposition, written the way ``prometheus_client.generate_latest``
writes their families, byte for byte, but straight from their counts and with each series'
label text kept from one scrape to the next.

The control plane scrapes every proxy once a second, and the request metrics (a histogram of
26 buckets per label set, each line carrying about ten labels) are most of a page. For every
line ``generate_latest`` needs a sample object with its own label dict, sorts the labels,
checks each name against the label-name grammar and escapes each value: most of an idle
sandbox's proxy CPU was spent there. A series' label text never changes, only its value does,
so it is rendered once. ``tests/test_metrics.py`` compares the page with ``generate_latest``'s
on every kind of sample the proxy makes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from proxy.metrics import FamilySpec, Rows


class TextExposition:
    """Writes the request metrics' families in the Prometheus text format (0.0.4), remembering
    the label text of every series it has written (they are as bounded as the label values the
    metrics allow)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[str, ...]], str] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], tuple[list[str], str]] = {}

    def render(self, families: Iterable[tuple[FamilySpec, Rows]]) -> str:
        out: list[str] = []
        for spec, rows in families:
            name = f"{spec.name}_total" if spec.type == "counter" else spec.name
            help_text = spec.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {spec.type}\n")
            if spec.type == "counter":
                self._counter_lines(out, name, spec, rows)  # type: ignore[arg-type]
            elif spec.type == "histogram":
                self._histogram_lines(out, spec, rows)  # type: ignore[arg-type]
            else:
                raise ValueError(f"{spec.name}: {spec.type} families are written by generate_latest, not here")
        return "".join(out)

    def _counter_lines(self, out: list[str], name: str, spec: FamilySpec, rows: list[tuple[tuple[str, ...], int]]) -> None:
        texts = self._counters
        for values, count in rows:
            text = texts.get((spec.name, values))
            if text is None:
                text = texts[spec.name, values] = label_text(dict(zip(spec.labels, values, strict=True)))
            out.append(f"{name}{text} {floatToGoString(count)}\n")

    def _histogram_lines(self, out: list[str], spec: FamilySpec,
                         rows: list[tuple[tuple[str, ...], list[tuple[str, int]], float]]) -> None:
        # as HistogramMetricFamily lays a series out: each bucket (le among the labels), _count, _sum
        texts = self._histograms
        for values, buckets, total in rows:
            known = texts.get((spec.name, values))
            if known is None:
                labels = dict(zip(spec.labels, values, strict=True))
                known = texts[spec.name, values] = ([label_text({**labels, "le": le}) for le, _ in buckets], label_text(labels))
            bucket_texts, text = known
            for bucket_text, (_, cumulative) in zip(bucket_texts, buckets, strict=True):
                out.append(f"{spec.name}_bucket{bucket_text} {floatToGoString(cumulative)}\n")
            out.append(f"{spec.name}_count{text} {floatToGoString(buckets[-1][1])}\n{spec.name}_sum{text} {floatToGoString(total)}\n")


def label_text(labels: dict[str, str]) -> str:
    """``{name="value",…}``, sorted by name, values escaped as the text format asks."""
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return f"{{{pairs}}}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
