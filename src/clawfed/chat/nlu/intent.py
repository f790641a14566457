"""Free-text chat questions to an intent with slots, by lexicon trigger scores.

How a question is read, in order:

1. normalise (NFKC, lower case, leading @mentions dropped);
2. find the first time expression and resolve it against "today";
3. tokenise (jieba with the lexicon as custom dictionary) and look lexicon words up,
   longest first, allowing one typo in longer words;
4. find the job name (see :func:`clawfed.chat.nlu.jobname.find_job`);
5. fill the slots and score each intent: strong trigger 2 points, weak 1, plus the slot
   bonuses the lexicon gives; the best score wins (ties: the intent listed first in the
   lexicon), and below the threshold the answer is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache

from clawfed.chat.nlu.errors import LexiconError, NluError
from clawfed.chat.nlu.gazetteer import Category, Gazetteer, Match
from clawfed.chat.nlu.jobname import JobSpan, find_job
from clawfed.chat.nlu.lexicon import Lexicon, SlotSignal, default_lexicon, norm_word
from clawfed.chat.nlu.text import Tokenizer, clean, normalize, strip_mentions
from clawfed.chat.nlu.timerange import TimeExtractor, TimeMatch, TimeRange


class Intent(StrEnum):
    """What a chat question asks for."""

    TRAINING_PROGRESS = "training_progress"
    METRIC_QUERY = "metric_query"
    CONTRIBUTION_RANKING = "contribution_ranking"
    COMPARE = "compare"
    NODE_STATUS = "node_status"
    LIST_VERSIONS = "list_versions"
    LIST_JOBS = "list_jobs"
    AUDIT_QUERY = "audit_query"
    APPROVAL = "approval"
    START_TRAINING = "start_training"
    HELP = "help"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Slots:
    """What a question is about; every field optional.

    Departments, regions and metrics are lexicon keys ("credit", "east", "accuracy").
    ``departments`` lists every department named, in order; ``department`` is set when
    exactly one is named (likewise ``region`` / ``regions``). Passing only ``department``
    fills ``departments``.
    """

    job: str | None = None
    department: str | None = None
    departments: tuple[str, ...] = ()
    region: str | None = None
    regions: tuple[str, ...] = ()
    metric: str | None = None
    time_range: TimeRange | None = None

    def __post_init__(self) -> None:
        for one, many, name in (
            (self.department, self.departments, "department"),
            (self.region, self.regions, "region"),
        ):
            if one is not None and not many:
                object.__setattr__(self, f"{name}s", (one,))
            elif one is None and len(many) == 1:
                object.__setattr__(self, name, many[0])
            elif one is not None and tuple(many) != (one,):
                raise NluError(
                    f"slots: {name}={one!r} contradicts {name}s={tuple(many)!r}; "
                    f"{name} is set only when exactly that one is named"
                )
            if len(set(many)) != len(many):
                raise NluError(f"slots: {name}s must not repeat, got {tuple(many)!r}")
            object.__setattr__(self, f"{name}s", tuple(getattr(self, f"{name}s")))


@dataclass(frozen=True)
class Parsed:
    """A question's intent and slots; ``score`` and ``evidence`` say why (trigger words)."""

    intent: Intent
    slots: Slots
    score: int = 0
    evidence: tuple[str, ...] = ()


class IntentParser:
    """Reads chat questions; deterministic, built once and reused (jieba loads ~1 s).

    Parameters
    ----------
    lexicon : Lexicon, optional
        Vocabulary and trigger words; the packaged ``lexicon.yaml`` by default.
    known_jobs : iterable of str
        Job names to recognise anywhere in a question, ahead of the job-name rules.
    today : callable returning date
        Clock used to resolve "上周" and the like when :meth:`parse` gets no ``today``.
    """

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        *,
        known_jobs: Iterable[str] = (),
        today: Callable[[], date] = date.today,
    ) -> None:
        self.lexicon = lexicon or default_lexicon()
        names = {r.name for r in self.lexicon.intents}
        wanted = {i.value for i in Intent} - {Intent.UNKNOWN.value}
        if names != wanted:
            raise LexiconError(
                f"lexicon intents must be exactly {sorted(wanted)}; "
                f"missing {sorted(wanted - names)}, unknown {sorted(names - wanted)}"
            )
        self._rules = self.lexicon.intents
        self._objects = frozenset(r.name for r in self._rules if r.takes_object)
        self._today = today
        self._tokenizer = Tokenizer(self.lexicon.words())
        self._gazetteer = Gazetteer(self.lexicon, self._tokenizer)
        self._time = TimeExtractor(self.lexicon)
        jobs = {norm_word(j): j.strip() for j in known_jobs if j.strip()}
        self._jobs = sorted(jobs.items(), key=lambda kv: (-len(kv[0]), kv[0]))

    def parse(self, text: str, *, today: date | None = None) -> Parsed:
        """Read one question.

        Parameters
        ----------
        text : str
            The message as typed (Chinese or English, @mentions allowed).
        today : date, optional
            The day relative time expressions count from; the parser's clock if omitted.

        Returns
        -------
        Parsed
            ``Intent.UNKNOWN`` (never an exception) when nothing scores high enough.
        """
        original = strip_mentions(clean(text))
        norm = normalize(text)
        time = self._time.find(norm, today or self._today())
        tokens = self._tokenizer.tokenize(norm)
        blocked = set()
        if time is not None:
            blocked = {i for i, t in enumerate(tokens) if t.start < time.end and t.end > time.start}
        matches = self._gazetteer.match(norm, tokens, blocked)
        job = self._known_job(norm) or find_job(norm, tokens, matches, blocked, self._objects)
        if job is not None:
            matches = [m for m in matches if not _inside(m, job)]
        slots = self._slots(original, matches, job, time)
        return self._decide(matches, slots)

    def _known_job(self, norm: str) -> JobSpan | None:
        for key, _ in self._jobs:
            at = norm.find(key)
            if at >= 0:
                return JobSpan(at, at + len(key))
        return None

    def _slots(
        self,
        original: str,
        matches: Sequence[Match],
        job: JobSpan | None,
        time: TimeMatch | None,
    ) -> Slots:
        departments: list[str] = []
        regions: list[str] = []
        metrics: list[str] = []
        for m in matches:
            for e in m.entries:
                bucket = {
                    Category.DEPARTMENT: departments,
                    Category.REGION: regions,
                    Category.METRIC: metrics,
                }.get(e.category)
                if bucket is not None and e.key not in bucket:
                    bucket.append(e.key)
        metric = None
        if metrics:
            prio = {m.key: m.priority for m in self.lexicon.metrics}
            metric = max(metrics, key=lambda k: (prio[k], -metrics.index(k)))
        job_name = None
        if job is not None:
            job_name = self._canonical_job(original[job.start : job.end].strip())
        return Slots(
            job=job_name,
            departments=tuple(departments),
            regions=tuple(regions),
            metric=metric,
            time_range=time.range if time else None,
        )

    def _canonical_job(self, name: str) -> str:
        key = norm_word(name)
        return next((j for k, j in self._jobs if k == key), name)

    def _decide(self, matches: Sequence[Match], slots: Slots) -> Parsed:
        signals: set[SlotSignal] = set()
        if slots.metric is not None:
            signals.add(SlotSignal.METRIC)
        if slots.job is not None:
            signals.add(SlotSignal.JOB)
        if len(slots.departments) >= 2 or len(slots.regions) >= 2:
            signals.add(SlotSignal.MULTIPLE)
        best: tuple[int, str, tuple[str, ...]] = (0, Intent.UNKNOWN.value, ())
        for rule in self._rules:
            weights: dict[str, int] = {}
            for m in matches:
                for e in m.of(Category.TRIGGER):
                    if e.key == rule.name:
                        weights[e.alias] = max(weights.get(e.alias, 0), e.weight)
            points = sum(weights.values()) + sum(rule.bonus.get(s, 0) for s in signals)
            if points > best[0]:
                bonus = tuple(f"+{s}" for s in sorted(signals) if rule.bonus.get(s))
                best = (points, rule.name, (*weights, *bonus))
        score, name, evidence = best
        if score < self.lexicon.threshold:
            return Parsed(Intent.UNKNOWN, slots, score, ())
        return Parsed(Intent(name), slots, score, evidence)


def _inside(m: Match, job: JobSpan) -> bool:
    within = m.start >= job.start and m.end <= job.end
    return within or (job.noun is not None and m.first == job.noun)


@cache
def default_parser() -> IntentParser:
    """The parser over the packaged lexicon, built on first use and shared."""
    return IntentParser()


def parse_intent(text: str, *, today: date | None = None) -> Parsed:
    """Read one question with :func:`default_parser` (see :meth:`IntentParser.parse`)."""
    return default_parser().parse(text, today=today)
