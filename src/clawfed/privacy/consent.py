"""Consent on the node: a registry of who agreed to which purpose, and a per-row column filter.

Records live in memory and, when a path is given, in an append-only JSONL file of grant and
revoke events on the node (the registry never leaves the node; the coordinator only learns
how many rows a job may use). A record is consent of one subject for one purpose from
``granted_at`` until ``revoked_at`` (exclusive) or for good.

A dataset may instead carry consent per row in a column (``DatasetSpec.consent_column``):
``consent_filter`` keeps the rows whose cell says yes, and the node reports only how many
rows it used and how many it left out (``ConsentCount``), never which.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from clawfed.core import ConfigError, DataError

_PURPOSE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}$")
_MAX_SUBJECT = 256
T = TypeVar("T")


class ConsentError(DataError):
    """A consent operation is invalid (revoking consent that is not active …)."""


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{name} must carry a time zone (e.g. datetime.now(UTC)), got {value}")
    return value


def check_purpose(purpose: str) -> str:
    """``purpose`` after checking it is a slug: lowercase letters, digits, ``_ . : -``."""
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise ConfigError(
            "purpose must be 1-128 lowercase letters, digits or _ . : - starting with a "
            f"letter or digit (e.g. 'fraud-model-training'), got {purpose!r}"
        )
    return purpose


def check_subject(subject_id: str) -> str:
    """``subject_id`` after checking it is a non-empty string of at most 256 characters."""
    if not isinstance(subject_id, str) or not subject_id or len(subject_id) > _MAX_SUBJECT:
        raise ConfigError(
            f"subject_id must be a non-empty string of at most {_MAX_SUBJECT} characters"
        )
    return subject_id


@dataclass(frozen=True)
class ConsentRecord:
    """Consent of ``subject_id`` for ``purpose`` from ``granted_at`` until ``revoked_at``."""

    subject_id: str
    purpose: str
    granted_at: datetime
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        check_subject(self.subject_id)
        check_purpose(self.purpose)
        _aware(self.granted_at, "granted_at")
        if self.revoked_at is not None:
            _aware(self.revoked_at, "revoked_at")
            if self.revoked_at < self.granted_at:
                raise ConfigError(
                    f"revoked_at ({self.revoked_at.isoformat()}) must not be before "
                    f"granted_at ({self.granted_at.isoformat()})"
                )

    def active_at(self, when: datetime) -> bool:
        """Whether the consent holds at ``when``: granted by then and not yet revoked."""
        moment = _aware(when, "when")
        return self.granted_at <= moment and (self.revoked_at is None or moment < self.revoked_at)


class ConsentRegistry:
    """Consent records of one node, optionally persisted to a JSONL event file.

    Parameters
    ----------
    path
        JSONL file of ``grant`` / ``revoke`` events; read now if it exists, appended to on
        every change. ``None`` keeps the registry in memory only.

    Raises
    ------
    DataError
        If the file holds a malformed line (the message names the line number).
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self._path = None if path is None else Path(path)
        self._records: list[ConsentRecord] = []
        if self._path is not None and self._path.exists():
            self._load(self._path)

    # -- persistence ------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"consent file {str(path)!r} cannot be read: {exc}") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                kind = event["event"]
                subject, purpose = event["subject_id"], event["purpose"]
                at = datetime.fromisoformat(event["at"])
                if kind == "grant":
                    self._apply_grant(subject, purpose, at)
                elif kind == "revoke":
                    self._apply_revoke(subject, purpose, at)
                else:
                    raise ValueError(f"unknown event {kind!r}")
            except (ValueError, KeyError, TypeError, ConfigError, ConsentError) as exc:
                raise DataError(
                    f"consent file {str(path)!r}, line {number}: malformed or inconsistent "
                    f"event ({exc})"
                ) from exc

    def _append(self, event: dict[str, Any]) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # -- changes ----------------------------------------------------------------------------

    def _active(self, subject_id: str, purpose: str) -> int | None:
        for i, r in enumerate(self._records):
            if r.subject_id == subject_id and r.purpose == purpose and r.revoked_at is None:
                return i
        return None

    def _apply_grant(self, subject_id: str, purpose: str, at: datetime) -> ConsentRecord:
        record = ConsentRecord(subject_id, purpose, at)
        if self._active(subject_id, purpose) is not None:
            raise ConsentError(
                f"subject {subject_id!r} already consents to {purpose!r}; revoke it first"
            )
        self._records.append(record)
        return record

    def _apply_revoke(self, subject_id: str, purpose: str, at: datetime) -> ConsentRecord:
        i = self._active(subject_id, purpose)
        if i is None:
            raise ConsentError(f"subject {subject_id!r} has no active consent to {purpose!r}")
        old = self._records[i]
        new = ConsentRecord(old.subject_id, old.purpose, old.granted_at, _aware(at, "at"))
        self._records[i] = new
        return new

    def grant(self, subject_id: str, purpose: str, at: datetime) -> ConsentRecord:
        """Record that ``subject_id`` consents to ``purpose`` from ``at`` on.

        Raises
        ------
        ConsentError
            If the subject already has active consent to that purpose.
        """
        record = self._apply_grant(subject_id, purpose, at)
        self._append(
            {"event": "grant", "subject_id": subject_id, "purpose": purpose, "at": at.isoformat()}
        )
        return record

    def revoke(self, subject_id: str, purpose: str, at: datetime) -> ConsentRecord:
        """End ``subject_id``'s active consent to ``purpose`` at ``at``.

        Raises
        ------
        ConsentError
            If there is no active consent; ``ConfigError`` if ``at`` is before the grant.
        """
        record = self._apply_revoke(subject_id, purpose, at)
        self._append(
            {"event": "revoke", "subject_id": subject_id, "purpose": purpose, "at": at.isoformat()}
        )
        return record

    # -- queries ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ConsentRecord]:
        return iter(tuple(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def records(
        self, subject_id: str | None = None, purpose: str | None = None
    ) -> tuple[ConsentRecord, ...]:
        """Records of ``subject_id`` and/or ``purpose`` (all when both are ``None``)."""
        return tuple(
            r
            for r in self._records
            if (subject_id is None or r.subject_id == subject_id)
            and (purpose is None or r.purpose == purpose)
        )

    def has_consent(self, subject_id: str, purpose: str, at: datetime) -> bool:
        """Whether ``subject_id`` consented to ``purpose`` at the moment ``at``."""
        check_purpose(purpose)
        return any(
            r.subject_id == subject_id and r.purpose == purpose and r.active_at(at)
            for r in self._records
        )

    def consenting(self, purpose: str, at: datetime) -> frozenset[str]:
        """Every subject whose consent to ``purpose`` holds at ``at``."""
        check_purpose(purpose)
        _aware(at, "at")
        return frozenset(
            r.subject_id for r in self._records if r.purpose == purpose and r.active_at(at)
        )

    def filter(
        self, items: Iterable[T], subject_of: Callable[[T], str], purpose: str, at: datetime
    ) -> list[T]:
        """The ``items`` whose subject (``subject_of(item)``) consents to ``purpose`` at ``at``."""
        allowed = self.consenting(purpose, at)
        return [item for item in items if subject_of(item) in allowed]

    def filter_frame(
        self, frame: pd.DataFrame, subject_column: str, purpose: str, at: datetime
    ) -> pd.DataFrame:
        """The rows of ``frame`` whose ``subject_column`` consents to ``purpose`` at ``at``.

        Raises
        ------
        DataError
            If ``subject_column`` is not a column of ``frame``.
        """
        if subject_column not in frame.columns:
            raise DataError(
                f"subject column {subject_column!r} not found; available: "
                f"{[str(c) for c in frame.columns]}"
            )
        allowed = self.consenting(purpose, at)
        keep = frame[subject_column].astype(str).isin(allowed)
        return frame.loc[keep].reset_index(drop=True)


#: Cell values of a consent column that mean "this row's subject consents" (case-insensitive).
CONSENT_YES = frozenset({"1", "1.0", "true", "yes", "y", "t", "是", "同意", "已同意", "granted"})


@dataclass(frozen=True)
class ConsentCount:
    """How many rows a consent filter kept and how many it excluded (never which ones)."""

    rows_used: int
    rows_excluded_no_consent: int

    def as_metrics(self) -> dict[str, float]:
        """The counts as task-outcome metrics (``rows_used``, ``rows_excluded_no_consent``)."""
        return {
            "rows_used": float(self.rows_used),
            "rows_excluded_no_consent": float(self.rows_excluded_no_consent),
        }


def consent_rows(frame: pd.DataFrame, column: str) -> pd.Series:
    """A boolean mask: ``True`` where ``column`` says yes (``CONSENT_YES``); blanks say no.

    Raises
    ------
    DataError
        If ``column`` is not a column of ``frame``.
    """
    if column not in frame.columns:
        raise DataError(
            f"consent column {column!r} not found; available: {[str(c) for c in frame.columns]}"
        )
    cells = frame[column]
    text = cells.map(lambda v: "" if pd.isna(v) else str(v).strip().lower())
    return text.isin(CONSENT_YES)


def filter_consenting(frame: pd.DataFrame, column: str) -> tuple[pd.DataFrame, ConsentCount]:
    """The rows of ``frame`` whose ``column`` grants consent, and the kept/excluded counts.

    The consent column itself stays in the result (callers select their columns).
    """
    keep = consent_rows(frame, column)
    kept = frame.loc[keep.to_numpy()].reset_index(drop=True)
    return kept, ConsentCount(len(kept), len(frame) - len(kept))


def consent_filter(
    dataset: str, column: str | None
) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """A row filter keeping the consenting rows (``None`` when the dataset has no column).

    The filter raises ``DataError`` naming ``dataset`` when the column is missing or no row
    consents, so that a job never trains on an empty or unconsented table.
    """
    if column is None:
        return None

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        try:
            kept, count = filter_consenting(frame, column)
        except DataError as exc:
            raise DataError(f"dataset {dataset!r}: {exc}") from exc
        if count.rows_used == 0:
            raise DataError(
                f"dataset {dataset!r}: no row consents (consent column {column!r} holds no "
                f"yes value among {len(frame)} row(s))"
            )
        return kept

    return keep
