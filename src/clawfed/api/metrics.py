"""Prometheus metrics of the federation, in the text exposition format (version 0.0.4).

``prometheus_client`` is not a dependency, so the few metric kinds needed (counters,
gauges, one histogram) are written here; the format is Prometheus's documented
text-based exposition format.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: The content type Prometheus scrapers expect for this format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Bucket bounds (seconds) of the round latency histogram.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(frozen=True)
class NodeUp:
    """A node's liveness for the gauge: 1 while it has a session, else 0."""

    node_id: str
    department: str
    up: bool


class FederationMetrics:
    """Counters and a histogram fed by coordinator events; thread-safe; rendered on scrape."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"buckets must be strictly increasing, got {list(buckets)}")
        self._lock = threading.Lock()
        self._buckets = tuple(float(b) for b in buckets)
        self._rounds: dict[Labels, float] = {}
        self._bytes: dict[Labels, float] = {}
        self._rejected: dict[Labels, float] = {}
        self._dropped: dict[Labels, float] = {}
        self._hist_counts = [0] * (len(self._buckets) + 1)
        self._hist_sum = 0.0

    def round_done(self, job_id: str, seconds: float, bytes_down: int, bytes_up: int) -> None:
        """Count a completed round, its duration and the bytes it moved."""
        with self._lock:
            key: Labels = (("job", job_id),)
            self._rounds[key] = self._rounds.get(key, 0.0) + 1
            for direction, n in (("down", bytes_down), ("up", bytes_up)):
                k: Labels = (("direction", direction),)
                self._bytes[k] = self._bytes.get(k, 0.0) + max(0, n)
            idx = next((i for i, b in enumerate(self._buckets) if seconds <= b), len(self._buckets))
            self._hist_counts[idx] += 1
            self._hist_sum += max(0.0, seconds)

    def update_rejected(self, reason: str) -> None:
        """Count an update the coordinator rejected, by reason."""
        with self._lock:
            key: Labels = (("reason", reason),)
            self._rejected[key] = self._rejected.get(key, 0.0) + 1

    def node_dropped(self, reason: str) -> None:
        """Count a node dropped from a round (straggler, refused, disconnected…)."""
        with self._lock:
            key: Labels = (("reason", reason),)
            self._dropped[key] = self._dropped.get(key, 0.0) + 1

    def render(self, nodes: Iterable[NodeUp]) -> str:
        """The exposition text, with the liveness gauge of ``nodes`` as read now."""
        out: list[str] = []

        def family(name: str, kind: str, doc: str, values: Mapping[Labels, float]) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{_labels(k)} {_num(v)}" for k, v in sorted(values.items()))

        with self._lock:
            family("clawfed_rounds_total", "counter", "Rounds completed.", self._rounds)
            family("clawfed_bytes_total", "counter", "Model bytes sent (down) and received "
                   "(up) in completed rounds.", self._bytes)  # fmt: skip
            family("clawfed_rejected_updates_total", "counter", "Updates rejected.",
                   self._rejected)  # fmt: skip
            family("clawfed_dropped_nodes_total", "counter", "Nodes dropped from a round.",
                   self._dropped)  # fmt: skip
            name = "clawfed_round_duration_seconds"
            out.append(f"# HELP {name} Wall time of completed rounds.")
            out.append(f"# TYPE {name} histogram")
            running = 0
            for bound, count in zip((*self._buckets, math.inf), self._hist_counts, strict=True):
                running += count
                out.append(f"{name}_bucket{_labels((('le', _num(bound)),))} {running}")
            out.append(f"{name}_sum {_num(self._hist_sum)}")
            out.append(f"{name}_count {running}")
        up: dict[Labels, float] = {
            (("node", n.node_id), ("department", n.department)): float(n.up) for n in nodes
        }
        family("clawfed_node_up", "gauge", "1 while the node has a live session.", up)
        return "\n".join(out) + "\n"
