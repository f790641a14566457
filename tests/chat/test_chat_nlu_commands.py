"""Structured chat commands: names in both languages, arguments, and specific parse errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawfed.chat.errors import ChatError
from clawfed.chat.nlu import (
    COMMANDS,
    Command,
    CommandErrorReason,
    CommandName,
    CommandParseError,
    Intent,
    Lang,
    Parsed,
    command_help,
    is_command,
    parse_command,
    understand,
    usage,
)
from clawfed.core.errors import ClawfedError

ZH, EN = Lang.ZH, Lang.EN
N = CommandName


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/状态", Command(N.STATUS, ZH)),
        ("/status", Command(N.STATUS, EN)),
        ("/STATUS", Command(N.STATUS, EN)),
        ("／状态", Command(N.STATUS, ZH)),
        ("@clawfed /状态", Command(N.STATUS, ZH)),
        ("@联邦助手\u2005／任务", Command(N.JOBS, ZH)),
        ("@clawfed @张三 /jobs", Command(N.JOBS, EN)),
        ("/任务", Command(N.JOBS, ZH)),
        ("/训练 反欺诈", Command(N.TRAIN, ZH, job="反欺诈")),
        ("/训练反欺诈", Command(N.TRAIN, ZH, job="反欺诈")),
        ("/train fraud-v2", Command(N.TRAIN, EN, job="fraud-v2")),
        ("/train Fraud_V2。", Command(N.TRAIN, EN, job="Fraud_V2")),
        ("/批准 反欺诈", Command(N.APPROVE, ZH, job="反欺诈")),
        (
            "/批准 反欺诈 年度 风险审计",
            Command(N.APPROVE, ZH, job="反欺诈", purpose="年度 风险审计"),
        ),
        (
            "/approve fraud-v2 quarterly review",
            Command(N.APPROVE, EN, job="fraud-v2", purpose="quarterly review"),
        ),
        ("/审批 反欺诈", Command(N.APPROVE, ZH, job="反欺诈")),
        ("/版本", Command(N.VERSIONS, ZH)),
        ("/版本 反欺诈", Command(N.VERSIONS, ZH, job="反欺诈")),
        ("/versions", Command(N.VERSIONS, EN)),
        ("/审计", Command(N.AUDIT, ZH)),
        ("/audit", Command(N.AUDIT, EN)),
        ("/帮助", Command(N.HELP, ZH)),
        ("/help", Command(N.HELP, EN)),
        ("/help /train", Command(N.HELP, EN, topic=N.TRAIN)),
        ("/帮助 批准", Command(N.HELP, ZH, topic=N.APPROVE)),
    ],
)
def test_valid_commands(text: str, expected: Command) -> None:
    assert is_command(text)
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "reason", "command", "needle"),
    [
        ("/训练", CommandErrorReason.MISSING_ARGUMENT, N.TRAIN, "用法：/训练 <任务>"),
        ("/train", CommandErrorReason.MISSING_ARGUMENT, N.TRAIN, "Usage: /train <job>"),
        ("/批准", CommandErrorReason.MISSING_ARGUMENT, N.APPROVE, "/批准 <任务> [用途…]"),
        ("/approve  ", CommandErrorReason.MISSING_ARGUMENT, N.APPROVE, "/approve <job>"),
        ("/状态 信贷部", CommandErrorReason.UNEXPECTED_ARGUMENT, N.STATUS, "多了参数「信贷部」"),
        ("/train a b", CommandErrorReason.UNEXPECTED_ARGUMENT, N.TRAIN, "unexpected argument 'b'"),
        ("/versions a b", CommandErrorReason.UNEXPECTED_ARGUMENT, N.VERSIONS, "/versions [job]"),
        ("/train bad/name", CommandErrorReason.BAD_ARGUMENT, N.TRAIN, "got 'bad/name'"),
        ("/训练 " + "长" * 65, CommandErrorReason.BAD_ARGUMENT, N.TRAIN, "不超过 64 个字符"),
        ("/approve j " + "x" * 201, CommandErrorReason.BAD_ARGUMENT, N.APPROVE, "at most 200"),
    ],
)
def test_argument_errors_say_what_is_wrong_and_show_usage(
    text: str, reason: CommandErrorReason, command: CommandName, needle: str
) -> None:
    with pytest.raises(CommandParseError) as info:
        parse_command(text)
    err = info.value
    assert isinstance(err, ChatError) and isinstance(err, ClawfedError)
    assert (err.reason, err.command) == (reason, command)
    assert needle in str(err)
    assert err.usage and err.usage in str(err)


def test_error_language_follows_the_name_typed() -> None:
    with pytest.raises(CommandParseError) as zh:
        parse_command("/训练")
    with pytest.raises(CommandParseError) as en:
        parse_command("/train")
    assert (zh.value.lang, en.value.lang) == (ZH, EN)
    assert zh.value.usage == usage(N.TRAIN, ZH) == "/训练 <任务>"
    assert en.value.usage == usage(N.TRAIN, EN) == "/train <job>"


def test_unknown_command_lists_commands_and_suggests_the_closest() -> None:
    with pytest.raises(CommandParseError) as info:
        parse_command("/stauts")
    err = info.value
    assert err.reason is CommandErrorReason.UNKNOWN_COMMAND and err.command is None
    assert "/status /jobs /train" in str(err) and "Did you mean /status?" in str(err)
    with pytest.raises(CommandParseError, match="没有命令「/天气」"):
        parse_command("/天气")
    with pytest.raises(CommandParseError, match="/nosuch"):
        parse_command("/help nosuch")


def test_text_without_slash_is_not_a_command() -> None:
    assert not is_command("状态")
    assert not is_command("训练进度怎么样 /状态")
    with pytest.raises(CommandParseError) as info:
        parse_command("状态")
    assert info.value.reason is CommandErrorReason.NOT_A_COMMAND


def test_help_lists_every_command_in_both_languages() -> None:
    for lang in Lang:
        text = command_help(lang)
        for spec in COMMANDS.values():
            assert spec.usage(lang) in text and spec.summary(lang) in text
    assert set(COMMANDS) == set(CommandName)


def test_understand_routes_commands_and_questions() -> None:
    assert understand("@clawfed ／训练 反欺诈") == Command(N.TRAIN, ZH, job="反欺诈")
    q = understand("训练进度怎么样")
    assert isinstance(q, Parsed) and q.intent is Intent.TRAINING_PROGRESS
    with pytest.raises(CommandParseError):
        understand("/训练")


@given(st.text(max_size=30).map(lambda s: "/" + s))
def test_any_slash_text_parses_or_fails_with_a_command_error(text: str) -> None:
    try:
        cmd = parse_command(text)
    except CommandParseError as err:
        assert str(err)
    else:
        assert isinstance(cmd.name, CommandName)
