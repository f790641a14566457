"""Errors raised by the chat language layer (lexicon, time ranges, commands).

::

    ChatError (clawfed.chat.errors)
     └── NluError                a value breaks a rule of the language layer
          ├── LexiconError       the lexicon file is malformed (also a ConfigError)
          └── CommandParseError  a "/..." message is not a valid command (in commands.py)
"""

from __future__ import annotations

from clawfed.chat.errors import ChatError
from clawfed.core.errors import ConfigError


class NluError(ChatError):
    """A value handed to the chat language layer breaks one of its rules."""


class LexiconError(NluError, ConfigError):
    """The lexicon file (synonyms, trigger words) is malformed."""
