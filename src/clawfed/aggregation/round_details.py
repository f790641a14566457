"""What a round's report says about aggregation: weights, free riders, contributions, anomaly.

``RoundDetails`` is stored with each completed round and written to the audit chain, so a
department can see why its update counted as much as it did. ``to_json`` holds statistics
only (weights, cosines, norms, utility values), never a model value or a data row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clawfed.aggregation.anomaly import AnomalyReport, NodeDeviation
from clawfed.aggregation.contribution import RoundContribution
from clawfed.aggregation.free_riders import FreeRiderFlag
from clawfed.aggregation.round_policy import PublishedWeight


@dataclass(frozen=True)
class CompressionUse:
    """The codec of the round's updates and their size on the wire and decoded."""

    codec: str
    bytes_wire: int
    bytes_decoded: int

    @property
    def ratio(self) -> float:
        """Decoded bytes per wire byte (1.0 without compression or without updates)."""
        return self.bytes_decoded / self.bytes_wire if self.bytes_wire else 1.0


@dataclass(frozen=True)
class RoundDetails:
    """The aggregation side of one completed round.

    ``contribution`` is None when it was not measured this round; ``contribution_note``
    then says why when it was due (a validator missing, budget too small).
    """

    weights: tuple[PublishedWeight, ...] = ()
    free_riders: tuple[FreeRiderFlag, ...] = ()
    free_rider_policy: str | None = None
    contribution: RoundContribution | None = None
    contribution_note: str = ""
    anomaly: AnomalyReport | None = None
    compression: CompressionUse | None = None
    departments: Mapping[str, str] = field(default_factory=dict)

    def department(self, node_id: str) -> str:
        """The department of ``node_id`` (the node id when unknown)."""
        return self.departments.get(node_id) or node_id

    def to_json(self) -> dict[str, Any]:
        """A JSON object for the store and the audit chain (statistics only)."""
        depts = {n: self.department(n) for n in self.departments}
        out: dict[str, Any] = {
            "weights": [
                {
                    "node_id": w.node_id,
                    "department": depts.get(w.node_id, ""),
                    "num_samples": w.num_samples,
                    "weight": w.weight,
                    "share": w.share,
                    "factor": w.factor,
                    "action": str(w.action),
                    "parts": None if w.parts is None else _parts(w),
                }
                for w in self.weights
            ],
            "free_riders": {
                "policy": self.free_rider_policy,
                "flags": [
                    {
                        "node_id": f.node_id,
                        "department": depts.get(f.node_id, ""),
                        "kind": str(f.kind),
                        "evidence": f.evidence,
                        "statistic": f.statistic,
                        "threshold": f.threshold,
                    }
                    for f in self.free_riders
                ],
            },
        }
        c = self.contribution
        if c is not None:
            out["contribution"] = {
                "v_empty": c.v_empty,
                "v_full": c.v_full,
                "method": c.method,
                "evaluations": c.evaluations,
                "permutations": c.permutations,
                "converged": c.converged,
                "loo": dict(c.loo),
                "shapley": dict(c.shapley),
            }
        elif self.contribution_note:
            out["contribution"] = {"skipped": self.contribution_note}
        a = self.anomaly
        if a is not None:
            out["anomaly"] = {
                "metric": a.metric,
                "previous": a.previous,
                "current": a.current,
                "worsening": a.worsening,
                "triggered": a.triggered,
                "summary": a.summary(),
                "suspects": [deviation_json(d) for d in a.suspects],
                "deviations": [deviation_json(d) for d in a.deviations],
            }
        z = self.compression
        if z is not None:
            out["compression"] = {
                "codec": z.codec,
                "bytes_wire": z.bytes_wire,
                "bytes_decoded": z.bytes_decoded,
                "ratio": z.ratio,
            }
        return out


def _parts(w: PublishedWeight) -> dict[str, Any]:
    p = w.parts
    assert p is not None
    return {
        "num_samples": p.num_samples,
        "quality": p.quality,
        "contribution": p.contribution,
        "sample_term": p.sample_term,
        "quality_term": p.quality_term,
        "contribution_term": p.contribution_term,
        "factor": p.factor,
        "clipped": p.clipped,
        "known": p.known,
    }


def deviation_json(d: NodeDeviation) -> dict[str, Any]:
    """One node's deviation as a JSON object."""
    return {
        "node_id": d.node_id,
        "department": d.department,
        "cosine": d.cosine,
        "norm": d.norm,
        "norm_ratio": d.norm_ratio,
        "score": d.score,
        "action": str(d.action),
    }
