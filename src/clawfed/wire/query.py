"""The federated QUERY task's contract, shared by the coordinator and the nodes.

The task config keys the coordinator writes and a node reads, the tensors a node's answer
holds (each of shape ``(len(groups),)``, float64) and the most groups one query may ask for.
"""

from __future__ import annotations

from enum import StrEnum


class QueryKey(StrEnum):
    """The ``query.*`` task config keys."""

    GROUP_COLUMN = "query.group_column"
    GROUPS = "query.groups"
    PERIOD_COLUMN = "query.period_column"
    START = "query.start"
    END = "query.end"
    MIN_GROUP_ROWS = "query.min_group_rows"


#: Per-group sums a node may send; the coordinator merges them by department and group.
SUM_TENSORS: tuple[str, ...] = (
    "sum_error",
    "sum_abs_error",
    "sum_sq_error",
    "sum_actual",
    "sum_predicted",
)
#: Tensors of a query answer, in order: rows per group, the suppressed flag, then the sums.
ANSWER_TENSORS: tuple[str, ...] = ("count", "suppressed", *SUM_TENSORS)
#: The most groups one query may ask for.
MAX_GROUPS = 64
