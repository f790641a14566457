"""Understanding chat messages: structured commands, free questions (zh / en), replies."""

from clawfed.chat.nlu.commands import (
    COMMANDS,
    Command,
    CommandErrorReason,
    CommandName,
    CommandParseError,
    CommandSpec,
    command_help,
    is_command,
    parse_command,
    usage,
)
from clawfed.chat.nlu.errors import LexiconError, NluError
from clawfed.chat.nlu.intent import (
    Intent,
    IntentParser,
    Parsed,
    Slots,
    default_parser,
    parse_intent,
)
from clawfed.chat.nlu.lang import Lang, detect_lang
from clawfed.chat.nlu.lexicon import Lexicon, MetricTerm, Term, default_lexicon, load_lexicon
from clawfed.chat.nlu.replies import EXAMPLE_QUESTIONS, help_reply, not_understood_reply
from clawfed.chat.nlu.timerange import TimeRange, month_range, period_range, rolling_range
from clawfed.chat.nlu.understand import understand

__all__ = [
    "COMMANDS",
    "EXAMPLE_QUESTIONS",
    "Command",
    "CommandErrorReason",
    "CommandName",
    "CommandParseError",
    "CommandSpec",
    "Intent",
    "IntentParser",
    "Lang",
    "Lexicon",
    "LexiconError",
    "MetricTerm",
    "NluError",
    "Parsed",
    "Slots",
    "Term",
    "TimeRange",
    "command_help",
    "default_lexicon",
    "default_parser",
    "detect_lang",
    "help_reply",
    "is_command",
    "load_lexicon",
    "month_range",
    "not_understood_reply",
    "parse_command",
    "parse_intent",
    "period_range",
    "rolling_range",
    "understand",
    "usage",
]
