"""The checks the fake WeCom applies to message bodies, with WeCom's errcodes for each failure."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from email.message import Message
from typing import Any

from clawfed.chat.wecom_messages import (
    APP_MARKDOWN_MAX_BYTES,
    NEWS_MAX_ARTICLES,
    ROBOT_IMAGE_MAX_BYTES,
    ROBOT_MARKDOWN_MAX_BYTES,
    TEXT_MAX_BYTES,
    image_mime,
)


@dataclass(frozen=True)
class Refusal:
    """Why the fake refused a request: WeCom's errcode and the start of its errmsg."""

    errcode: int
    errmsg: str


def _content(body: dict[str, Any], msgtype: str) -> Any:
    section = body.get(msgtype)
    return section.get("content") if isinstance(section, dict) else None


def _check_content(body: dict[str, Any], msgtype: str, limit: int, code: int) -> Refusal | None:
    content = _content(body, msgtype)
    if not isinstance(content, str) or not content:
        return Refusal(44004, f"empty content: {msgtype}.content is required")
    size = len(content.encode("utf-8"))
    if size > limit:
        return Refusal(code, f"{msgtype}.content exceed max length {limit}, got {size} bytes")
    return None


def _check_news(body: dict[str, Any]) -> Refusal | None:
    news = body.get("news")
    articles = news.get("articles") if isinstance(news, dict) else None
    if not isinstance(articles, list) or not 1 <= len(articles) <= NEWS_MAX_ARTICLES:
        return Refusal(40058, f"news.articles must hold 1..{NEWS_MAX_ARTICLES} articles")
    for article in articles:
        if not isinstance(article, dict) or not article.get("title") or not article.get("url"):
            return Refusal(40058, "news.articles[].title and url are required")
    return None


def check_robot_message(body: dict[str, Any]) -> Refusal | None:
    """Validate a ``webhook/send`` body the way the group robot does."""
    msgtype = body.get("msgtype")
    if msgtype == "text":
        refusal = _check_content(body, "text", TEXT_MAX_BYTES, 40058)
        if refusal is None:
            for field in ("mentioned_list", "mentioned_mobile_list"):
                value = body["text"].get(field, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    return Refusal(40058, f"text.{field} must be a list of strings")
        return refusal
    if msgtype == "markdown":
        return _check_content(body, "markdown", ROBOT_MARKDOWN_MAX_BYTES, 40058)
    if msgtype == "image":
        image = body.get("image")
        if not isinstance(image, dict):
            return Refusal(40058, "image.base64 and image.md5 are required")
        try:
            raw = base64.b64decode(str(image.get("base64", "")), validate=True)
        except (binascii.Error, ValueError):
            return Refusal(40058, "image.base64 is not valid base64")
        if not raw or len(raw) > ROBOT_IMAGE_MAX_BYTES or image_mime(raw) is None:
            return Refusal(40009, f"invalid image size or type ({len(raw)} bytes, JPG/PNG <= 2MB)")
        if hashlib.md5(raw, usedforsecurity=False).hexdigest() != image.get("md5"):
            return Refusal(40058, "image.md5 does not match the image bytes")
        return None
    if msgtype == "news":
        return _check_news(body)
    return Refusal(40008, f"invalid message type {msgtype!r}")


def check_app_message(body: dict[str, Any], agent_id: int) -> Refusal | None:
    """Validate a ``message/send`` body the way WeCom does (recipients checked separately)."""
    if body.get("agentid") != agent_id:
        return Refusal(40056, f"invalid agentid {body.get('agentid')!r}")
    msgtype = body.get("msgtype")
    if msgtype == "text":
        return _check_content(body, "text", TEXT_MAX_BYTES, 45002)
    if msgtype == "markdown":
        return _check_content(body, "markdown", APP_MARKDOWN_MAX_BYTES, 45002)
    if msgtype == "image":
        image = body.get("image")
        if not isinstance(image, dict) or not image.get("media_id"):
            return Refusal(40007, "invalid media_id: image.media_id is required")
        return None
    if msgtype == "news":
        return _check_news(body)
    return Refusal(40008, f"invalid message type {msgtype!r}")


@dataclass(frozen=True)
class FormFile:
    """One file part of a multipart/form-data body."""

    name: str
    filename: str
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> list[FormFile]:
    """Split a multipart/form-data body into its parts, byte-exact (no line-ending changes)."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return []
    parts: list[FormFile] = []
    for section in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if section.startswith(b"--"):
            break
        head, sep, data = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        parts.append(
            FormFile(
                name=name if isinstance(name, str) else "",
                filename=headers.get_filename() or "",
                content_type=headers.get_content_type(),
                data=data.removesuffix(b"\r\n"),
            )
        )
    return parts
