"""Replies for questions the parser cannot place, and the help text."""

from __future__ import annotations

import pytest

from clawfed.chat.nlu import (
    EXAMPLE_QUESTIONS,
    Intent,
    Lang,
    detect_lang,
    help_reply,
    not_understood_reply,
    parse_intent,
)


@pytest.mark.parametrize("text", ["给我讲个笑话", "what's the weather like", "你好", "？"])
def test_unknown_question_gets_a_reply_with_examples_in_its_language(text: str) -> None:
    assert parse_intent(text).intent is Intent.UNKNOWN
    lang = detect_lang(text) if text.strip("？") else Lang.ZH
    reply = not_understood_reply(lang)
    examples = EXAMPLE_QUESTIONS[lang]
    assert 3 <= len(examples) <= 4
    assert all(q in reply for q in examples)
    assert ("/帮助" if lang is Lang.ZH else "/help") in reply


def test_reply_is_short_and_in_the_requested_language() -> None:
    zh, en = not_understood_reply(Lang.ZH), not_understood_reply(Lang.EN)
    assert zh.startswith("抱歉") and en.startswith("Sorry")
    assert detect_lang(en) is Lang.EN
    assert not_understood_reply() == zh
    assert max(len(zh), len(en)) < 300


@pytest.mark.parametrize("lang", list(Lang))
def test_every_example_question_is_understood(lang: Lang) -> None:
    intents = [parse_intent(q).intent for q in EXAMPLE_QUESTIONS[lang]]
    assert Intent.UNKNOWN not in intents
    assert len(set(intents)) == len(intents), "examples should show different things"


def test_help_reply_has_commands_and_examples() -> None:
    text = help_reply(Lang.ZH)
    assert "/训练 <任务>" in text and EXAMPLE_QUESTIONS[Lang.ZH][0] in text
    assert "/train <job>" in help_reply(Lang.EN)


def test_detect_lang() -> None:
    assert detect_lang("训练进度") is Lang.ZH
    assert detect_lang("how is training going") is Lang.EN
    assert detect_lang("auc多少") is Lang.ZH
