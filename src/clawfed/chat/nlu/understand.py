"""One entry point for a chat message: a structured command or a free question."""

from __future__ import annotations

from datetime import date

from clawfed.chat.nlu.commands import Command, is_command, parse_command
from clawfed.chat.nlu.intent import IntentParser, Parsed, default_parser


def understand(
    text: str, *, today: date | None = None, parser: IntentParser | None = None
) -> Command | Parsed:
    """Read a chat message.

    Parameters
    ----------
    text : str
        The message as typed; leading @mentions are ignored.
    today : date, optional
        Day that relative times ("上周") count from; the parser's clock if omitted.
    parser : IntentParser, optional
        The free-text parser to use; :func:`default_parser` if omitted.

    Returns
    -------
    Command or Parsed
        A :class:`Command` when the message starts with "/" (or "／"), else the
        question's :class:`Parsed` intent (possibly ``Intent.UNKNOWN``).

    Raises
    ------
    CommandParseError
        When the message is a command but malformed (the message holds the usage line).
    """
    if is_command(text):
        return parse_command(text)
    return (parser or default_parser()).parse(text, today=today)
