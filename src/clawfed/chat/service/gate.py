"""What a chat message needs from the policy: the action, the resource and what may be shown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clawfed.chat.nlu import Command, CommandName, Intent, Parsed
from clawfed.chat.service.regional import ALL, RegionView
from clawfed.chat.service.vocab import department_matches
from clawfed.governance.policy import Action, Resource, Role, User

_ANY_JOB = "*"


@dataclass(frozen=True)
class Need:
    """The action a message takes, on what, and (for regional answers) the view allowed."""

    action: Action
    resource: Resource
    view: RegionView = ALL


def stored_departments(keys: Sequence[str], known: Sequence[str]) -> frozenset[str]:
    """The stored department names that lexicon keys ``keys`` name (a key itself if none)."""
    out: set[str] = set()
    for key in keys:
        hits = [d for d in known if department_matches(d, key)]
        out |= set(hits) if hits else {key}
    return frozenset(out)


def scope(user: User | None, named: frozenset[str], known: Sequence[str]) -> frozenset[str]:
    """Departments a view touches: those named, else a head's own, else every department."""
    if named:
        return named
    if user is not None and user.role is Role.DEPARTMENT_HEAD and user.department:
        return frozenset({user.department})
    return frozenset(known)


def region_need(user: User | None, job_id: str, known: Sequence[str]) -> Need:
    """A regional comparison: everything for admins, own cells for heads, totals otherwise."""
    role = None if user is None else user.role
    if role is Role.DATA_ADMIN:
        return Need(Action.VIEW_VERSIONS, Resource.job(job_id, known))
    if role is Role.DEPARTMENT_HEAD and user is not None and user.department:
        own = frozenset({user.department})
        return Need(Action.VIEW_VERSIONS, Resource.job(job_id, own), RegionView(own, False))
    return Need(
        Action.USE_MODEL_SERVICE, Resource.model_service(job_id), RegionView(frozenset(), True)
    )


def need_of(
    understood: Command | Parsed, user: User | None, known: Sequence[str], region_job: str | None
) -> Need:
    """The policy question a message asks.

    Parameters
    ----------
    understood
        The parsed command or question.
    user
        Who asks (None: an unknown sender, refused whatever the need).
    known
        Every department name in the store.
    region_job
        The job a regional comparison would query (None when there is none).
    """
    if isinstance(understood, Command):
        job, named, name = understood.job, frozenset[str](), understood.name
        kind: CommandName | Intent = name
    else:
        job = understood.slots.job
        named = stored_departments(understood.slots.departments, known)
        kind = understood.intent
        if kind is Intent.COMPARE and understood.slots.regions and region_job is not None:
            return region_need(user, region_job, known)
    area = scope(user, named, known)
    target = job or _ANY_JOB
    if kind in (CommandName.STATUS, Intent.NODE_STATUS):
        return Need(Action.VIEW_OVERVIEW, Resource.overview(area))
    if kind in (CommandName.JOBS, Intent.LIST_JOBS, Intent.TRAINING_PROGRESS):
        return Need(Action.VIEW_JOB, Resource.job(target, area))
    if kind in (CommandName.VERSIONS, Intent.LIST_VERSIONS, Intent.METRIC_QUERY, Intent.COMPARE):
        return Need(Action.VIEW_VERSIONS, Resource.job(target, area))
    if kind is Intent.CONTRIBUTION_RANKING:
        return Need(Action.VIEW_CONTRIBUTIONS, Resource.overview(known))
    if kind in (CommandName.AUDIT, Intent.AUDIT_QUERY):
        heads = user is not None and user.role is Role.DEPARTMENT_HEAD
        return Need(Action.VIEW_AUDIT, Resource.audit(area if (named or heads) else ()))
    if kind in (CommandName.TRAIN, Intent.START_TRAINING):
        return Need(Action.SUBMIT_JOB, Resource.job(target))
    if kind in (CommandName.APPROVE, Intent.APPROVAL):
        dept = (user.department if user is not None else None) or "(no department)"
        return Need(Action.APPROVE_JOB, Resource.approval(target, dept))
    return Need(Action.ASK_CHAT, Resource.federation())
