"""The request metrics' text exposition, written the way ``prometheus_client.generate_latest``
writes it, byte for byte, but with each sample's label text kept from one scrape to the next.

The control plane scrapes every proxy once a second, and the request metrics (a histogram of
26 buckets per label set, each line carrying about ten labels) are most of a page. For every
line ``generate_latest`` sorts the labels, checks each name against the label-name grammar
and escapes each value: most of an idle sandbox's proxy CPU was spent there. A label set's
text never changes, only its values do, so it is rendered once. ``tests/test_metrics.py``
compares the two writers' output on every kind of sample the proxy makes.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}  # what the request metrics use


class TextExposition:
    """Renders metric families in the Prometheus text format (0.0.4), remembering the label
    text of every sample it has written (one entry per series: they are as bounded as the
    label values the metrics allow)."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, ...], str] = {}

    def render(self, families: Iterable[Metric]) -> str:
        out: list[str] = []
        labels_of = self._labels
        for family in families:
            if family.type not in TYPES:
                raise ValueError(f"{family.name}: {family.type} families are written by generate_latest, not here")
            name = f"{family.name}_total" if family.type == "counter" else family.name
            help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {TYPES[family.type]}\n")
            for sample in family.samples:
                key = (sample.name, *sample.labels.values())  # a sample name's label names never change
                text = labels_of.get(key)
                if text is None:
                    text = labels_of[key] = label_text(sample.labels)
                out.append(f"{sample.name}{text} {floatToGoString(sample.value)}\n")
        return "".join(out)


def label_text(labels: dict[str, str]) -> str:
    """``{name="value",…}``, sorted by name, values escaped as the text format asks."""
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return f"{{{pairs}}}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
