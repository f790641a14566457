"""A logging filter that replaces personal data in every log record by placeholders."""

from __future__ import annotations

import logging

from clawfed.privacy.pii import redact


class RedactingFilter(logging.Filter):
    """Redacts each record's formatted message (``privacy.pii.redact``) before it is written.

    Attach it to a handler (``handler.addFilter(RedactingFilter())``) so that whatever any
    logger sends through that handler is cleaned. ``ner=False`` (the default) uses the rules
    only, which cost well under a millisecond per line; ``ner=True`` adds the LAC model for
    names, places and companies without a cue (about a millisecond more per line).
    """

    def __init__(self, *, ner: bool = False) -> None:
        super().__init__()
        self._ner = ner

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace ``record.msg`` by its redacted, formatted text; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message, ner=self._ner).text
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
