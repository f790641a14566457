"""Fixed chat replies: what to say when a question is not understood, and the help text."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from clawfed.chat.nlu.commands import command_help
from clawfed.chat.nlu.lang import Lang

#: Example questions shown to users; each one is understood by the parser (tested).
EXAMPLE_QUESTIONS: Mapping[Lang, tuple[str, ...]] = MappingProxyType(
    {
        Lang.ZH: (
            "训练进度怎么样？",
            "信贷部模型准确率多少？",
            "上周哪个部门贡献最大？",
            "质检部节点在线吗？",
        ),
        Lang.EN: (
            "How is training going?",
            "What is the accuracy of the credit model?",
            "Which department contributed most last week?",
            "Is the quality node online?",
        ),
    }
)


def _examples(lang: Lang) -> str:
    return "\n".join(f"· {q}" for q in EXAMPLE_QUESTIONS[lang])


def not_understood_reply(lang: Lang = Lang.ZH) -> str:
    """A short reply for a question the parser could not place, with example questions.

    Parameters
    ----------
    lang : Lang
        Reply language (Chinese by default).

    Returns
    -------
    str
        Never empty: an apology, four example questions and a pointer to the help command.
    """
    if lang is Lang.ZH:
        return (
            f"抱歉，我没看懂这个问题。可以这样问我：\n{_examples(lang)}\n输入 /帮助 查看全部命令。"
        )
    return (
        "Sorry, I did not understand that. You can ask me, for example:\n"
        f"{_examples(lang)}\nType /help to see all commands."
    )


def help_reply(lang: Lang = Lang.ZH) -> str:
    """The answer to "/帮助" or a help question: the commands, then example questions."""
    head = "也可以直接提问，例如：" if lang is Lang.ZH else "Or just ask, for example:"
    return f"{command_help(lang)}\n\n{head}\n{_examples(lang)}"
