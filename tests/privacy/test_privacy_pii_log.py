"""The redacting log filter: personal data never reaches a log handler."""

from __future__ import annotations

import io
import logging

from clawfed.privacy.pii_log import RedactingFilter


def _capture(ner: bool) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(ner=ner))
    logger = logging.getLogger(f"clawfed.test.pii_log.{ner}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream, handler


def test_messages_and_arguments_are_redacted() -> None:
    logger, stream, handler = _capture(ner=False)
    try:
        logger.info("customer %s called from %s", "我叫王明", "13912345678")
        logger.info("mail li.si@bank.cn, card 6222 0212 3456 7897")
        logger.info("nothing personal in round %d", 3)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "customer 我叫[姓名] called from [手机号]"
    assert "li.si@bank.cn" not in lines[1] and "[邮箱]" in lines[1]
    assert lines[2] == "nothing personal in round 3"


def test_the_model_finds_names_without_cues() -> None:
    logger, stream, handler = _capture(ner=True)
    try:
        logger.info("来电客户张晓明在华为技术有限公司上班")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "张晓明" not in out and "华为" not in out and "[公司]" in out
