"""Structured chat commands ("/状态", "/train fraud-v2", "@clawfed ／批准 反欺诈 年度审计")."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from clawfed.chat.nlu.errors import NluError
from clawfed.chat.nlu.lang import Lang, detect_lang
from clawfed.chat.nlu.text import clean, strip_mentions

MAX_JOB_CHARS = 64
MAX_PURPOSE_CHARS = 200
_JOB = re.compile(rf"^\w[\w\-.:]{{0,{MAX_JOB_CHARS - 1}}}$")
_TRAILING_PUNCT = "。！？!?，,；;"


class CommandName(StrEnum):
    """The structured commands."""

    STATUS = "status"
    JOBS = "jobs"
    TRAIN = "train"
    APPROVE = "approve"
    VERSIONS = "versions"
    AUDIT = "audit"
    HELP = "help"


class Arg(StrEnum):
    """What a command's argument holds."""

    NONE = "none"  # takes no argument
    JOB = "job"  # one job name, required
    OPTIONAL_JOB = "optional_job"
    JOB_AND_PURPOSE = "job_and_purpose"  # a job name, then free text
    TOPIC = "topic"  # optional command name


class CommandErrorReason(StrEnum):
    """Why a command could not be parsed."""

    NOT_A_COMMAND = "not_a_command"
    UNKNOWN_COMMAND = "unknown_command"
    MISSING_ARGUMENT = "missing_argument"
    UNEXPECTED_ARGUMENT = "unexpected_argument"
    BAD_ARGUMENT = "bad_argument"


@dataclass(frozen=True)
class CommandSpec:
    """A command's names, argument shape, usage lines and one-line summaries."""

    name: CommandName
    zh: str
    en: str
    arg: Arg
    usage_zh: str
    usage_en: str
    summary_zh: str
    summary_en: str
    extra_aliases: tuple[str, ...] = ()

    def usage(self, lang: Lang) -> str:
        """The usage line in ``lang``."""
        return self.usage_zh if lang is Lang.ZH else self.usage_en

    def summary(self, lang: Lang) -> str:
        """The one-line summary in ``lang``."""
        return self.summary_zh if lang is Lang.ZH else self.summary_en


_SPECS = (
    CommandSpec(
        name=CommandName.STATUS,
        zh="状态",
        en="status",
        arg=Arg.NONE,
        usage_zh="/状态",
        usage_en="/status",
        summary_zh="联邦与各节点状态",
        summary_en="federation and node status",
    ),
    CommandSpec(
        name=CommandName.JOBS,
        zh="任务",
        en="jobs",
        arg=Arg.NONE,
        usage_zh="/任务",
        usage_en="/jobs",
        summary_zh="列出任务",
        summary_en="list jobs",
        extra_aliases=("job",),
    ),
    CommandSpec(
        name=CommandName.TRAIN,
        zh="训练",
        en="train",
        arg=Arg.JOB,
        usage_zh="/训练 <任务>",
        usage_en="/train <job>",
        summary_zh="开始训练一个任务",
        summary_en="start training a job",
    ),
    CommandSpec(
        name=CommandName.APPROVE,
        zh="批准",
        en="approve",
        arg=Arg.JOB_AND_PURPOSE,
        usage_zh="/批准 <任务> [用途…]",
        usage_en="/approve <job> [purpose…]",
        summary_zh="批准本部门数据用于任务",
        summary_en="approve your department's data for a job",
        extra_aliases=("审批",),
    ),
    CommandSpec(
        name=CommandName.VERSIONS,
        zh="版本",
        en="versions",
        arg=Arg.OPTIONAL_JOB,
        usage_zh="/版本 [任务]",
        usage_en="/versions [job]",
        summary_zh="模型版本列表",
        summary_en="list model versions",
        extra_aliases=("version",),
    ),
    CommandSpec(
        name=CommandName.AUDIT,
        zh="审计",
        en="audit",
        arg=Arg.NONE,
        usage_zh="/审计",
        usage_en="/audit",
        summary_zh="最近的审计记录",
        summary_en="recent audit log entries",
    ),
    CommandSpec(
        name=CommandName.HELP,
        zh="帮助",
        en="help",
        arg=Arg.TOPIC,
        usage_zh="/帮助 [命令]",
        usage_en="/help [command]",
        summary_zh="显示帮助",
        summary_en="show help",
        extra_aliases=("?", "h"),
    ),
)

#: Every command's spec, by name.
COMMANDS: Mapping[CommandName, CommandSpec] = MappingProxyType({s.name: s for s in _SPECS})


def _alias_table() -> dict[str, tuple[CommandSpec, Lang]]:
    table: dict[str, tuple[CommandSpec, Lang]] = {}
    for spec in _SPECS:
        table[spec.zh] = (spec, Lang.ZH)
        table[spec.en] = (spec, Lang.EN)
        for alias in spec.extra_aliases:
            table[alias] = (spec, detect_lang(alias))
    return table


_ALIASES = _alias_table()
_ZH_BY_LENGTH = sorted((a for a, (_, lang) in _ALIASES.items() if lang is Lang.ZH), key=len)[::-1]


@dataclass(frozen=True)
class Command:
    """A parsed command; ``lang`` is the language of the name typed (reply in it)."""

    name: CommandName
    lang: Lang
    job: str | None = None
    purpose: str | None = None
    topic: CommandName | None = None


class CommandParseError(NluError):
    """A message that starts with "/" is not a valid command; the message says how to fix it.

    ``usage`` is the usage line of the command meant (empty when unknown), in ``lang``.
    """

    def __init__(
        self,
        reason: CommandErrorReason,
        message: str,
        *,
        command: CommandName | None,
        usage: str,
        lang: Lang,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.command = command
        self.usage = usage
        self.lang = lang


def usage(name: CommandName, lang: Lang = Lang.ZH) -> str:
    """The usage line of command ``name`` in ``lang``, e.g. "/训练 <任务>"."""
    return COMMANDS[name].usage(lang)


def command_help(lang: Lang = Lang.ZH) -> str:
    """All commands, one per line: usage and summary."""
    title = "可用命令：" if lang is Lang.ZH else "Commands:"
    sep = "  —  "
    return "\n".join([title, *(f"{s.usage(lang)}{sep}{s.summary(lang)}" for s in _SPECS)])


def is_command(text: str) -> bool:
    """True when the message (after @mentions) starts with "/" or a full-width "／"."""
    return strip_mentions(clean(text)).startswith("/")


def _name_list(lang: Lang) -> str:
    return " ".join(f"/{s.zh if lang is Lang.ZH else s.en}" for s in _SPECS)


def _unknown(word: str, lang: Lang) -> CommandParseError:
    close = difflib.get_close_matches(word, list(_ALIASES), n=1, cutoff=0.5)
    if lang is Lang.ZH:
        msg = f"没有命令「/{word}」。可用命令：{_name_list(lang)}"
        msg += f"。你是不是想输入 /{close[0]}？" if close else "。"
    else:
        msg = f"unknown command '/{word}'. Commands: {_name_list(lang)}."
        msg += f" Did you mean /{close[0]}?" if close else ""
    return CommandParseError(
        CommandErrorReason.UNKNOWN_COMMAND, msg, command=None, usage="", lang=lang
    )


def _resolve(head: str, rest: str) -> tuple[CommandSpec, Lang, str] | None:
    hit = _ALIASES.get(head.lower())
    if hit is not None:
        return hit[0], hit[1], rest
    for alias in _ZH_BY_LENGTH:  # "/训练反欺诈": Chinese users often skip the space
        if head.startswith(alias):
            spec, lang = _ALIASES[alias]
            return spec, lang, f"{head[len(alias) :]} {rest}".strip()
    return None


def _job(spec: CommandSpec, lang: Lang, value: str) -> str:
    if _JOB.match(value):
        return value
    if lang is Lang.ZH:
        msg = (
            f"任务名只能包含文字、数字和 - _ . :，且不超过 {MAX_JOB_CHARS} 个字符，"
            f"收到「{value[:80]}」。用法：{spec.usage(lang)}"
        )
    else:
        msg = (
            f"a job name holds letters, digits and - _ . : only, at most {MAX_JOB_CHARS} "
            f"characters; got '{value[:80]}'. Usage: {spec.usage(lang)}"
        )
    raise CommandParseError(
        CommandErrorReason.BAD_ARGUMENT, msg, command=spec.name, usage=spec.usage(lang), lang=lang
    )


def _arg_error(
    spec: CommandSpec, lang: Lang, reason: CommandErrorReason, extra: str
) -> CommandParseError:
    cmd = f"/{spec.zh if lang is Lang.ZH else spec.en}"
    use = spec.usage(lang)
    zh = lang is Lang.ZH
    if reason is CommandErrorReason.MISSING_ARGUMENT:
        msg = f"「{cmd}」缺少任务名。用法：{use}" if zh else f"{cmd} needs a job name. Usage: {use}"
    elif reason is CommandErrorReason.UNEXPECTED_ARGUMENT:
        msg = (
            f"「{cmd}」多了参数「{extra}」。用法：{use}"
            if zh
            else f"{cmd} got an unexpected argument '{extra}'. Usage: {use}"
        )
    else:
        msg = (
            f"用途最多 {MAX_PURPOSE_CHARS} 个字符，收到 {len(extra)} 个。用法：{use}"
            if zh
            else f"a purpose holds at most {MAX_PURPOSE_CHARS} characters, got {len(extra)}. "
            f"Usage: {use}"
        )
    return CommandParseError(reason, msg, command=spec.name, usage=use, lang=lang)


def parse_command(text: str) -> Command:
    """Parse a structured command.

    Accepts a full-width slash, leading @mentions, any case for English names, and a
    Chinese name glued to its argument ("/训练反欺诈").

    Raises
    ------
    CommandParseError
        With ``reason`` and a message (in the language typed) holding the usage line:
        not a command, unknown command, missing / unexpected / malformed argument.
    """
    body = strip_mentions(clean(text))
    lang = detect_lang(body)
    if not body.startswith("/"):
        msg = (
            f"「{body[:80]}」不是命令：命令以 / 开头，例如 /帮助"
            if lang is Lang.ZH
            else f"'{body[:80]}' is not a command: commands start with /, e.g. /help"
        )
        raise CommandParseError(
            CommandErrorReason.NOT_A_COMMAND, msg, command=None, usage="", lang=lang
        )
    body = body[1:].strip().rstrip(_TRAILING_PUNCT).strip()
    head, _, rest = body.partition(" ")
    resolved = _resolve(head, rest.strip())
    if resolved is None:
        raise _unknown(head, lang)
    spec, lang, rest = resolved
    words = rest.split()
    missing, unexpected = (
        CommandErrorReason.MISSING_ARGUMENT,
        CommandErrorReason.UNEXPECTED_ARGUMENT,
    )
    if spec.arg is Arg.NONE:
        if words:
            raise _arg_error(spec, lang, unexpected, rest)
        return Command(spec.name, lang)
    if spec.arg is Arg.TOPIC:
        if len(words) > 1:
            raise _arg_error(spec, lang, unexpected, " ".join(words[1:]))
        if not words:
            return Command(spec.name, lang)
        topic = _ALIASES.get(words[0].lstrip("/").lower())
        if topic is None:
            raise _unknown(words[0].lstrip("/"), lang)
        return Command(spec.name, lang, topic=topic[0].name)
    if not words:
        if spec.arg is Arg.OPTIONAL_JOB:
            return Command(spec.name, lang)
        raise _arg_error(spec, lang, missing, "")
    job = _job(spec, lang, words[0])
    if spec.arg is Arg.JOB_AND_PURPOSE:
        purpose = " ".join(words[1:]) or None
        if purpose is not None and len(purpose) > MAX_PURPOSE_CHARS:
            raise _arg_error(spec, lang, CommandErrorReason.BAD_ARGUMENT, purpose)
        return Command(spec.name, lang, job=job, purpose=purpose)
    if len(words) > 1:
        raise _arg_error(spec, lang, unexpected, " ".join(words[1:]))
    return Command(spec.name, lang, job=job)
