"""The languages clawfed speaks in chat, and how to tell which one a message is in."""

from __future__ import annotations

import re
from enum import StrEnum

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class Lang(StrEnum):
    """A reply language: Chinese (the default) or English."""

    ZH = "zh"
    EN = "en"


def detect_lang(text: str) -> Lang:
    """Return the language a message is written in.

    Parameters
    ----------
    text : str
        The message as typed.

    Returns
    -------
    Lang
        ``Lang.ZH`` when the text holds any Chinese character, else ``Lang.EN``.
    """
    return Lang.ZH if _CJK.search(text) else Lang.EN
