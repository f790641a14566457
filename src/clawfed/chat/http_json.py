"""Small HTTP helpers shared by the chat services' clients: safe POST and JSON replies."""

from __future__ import annotations

from typing import Any

import httpx

from clawfed.chat.errors import ChannelTransportError

JsonObject = dict[str, Any]
"""A decoded JSON object as a chat service sends or receives it."""


def post_safely(http: httpx.Client, service: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST, translating network failures without echoing the URL (it often holds a secret)."""
    try:
        return http.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise ChannelTransportError(service, f"request failed: {type(exc).__name__}") from exc


def get_safely(http: httpx.Client, service: str, url: str, **kwargs: Any) -> httpx.Response:
    """GET, translating network failures without echoing the URL."""
    try:
        return http.get(url, **kwargs)
    except httpx.HTTPError as exc:
        raise ChannelTransportError(service, f"request failed: {type(exc).__name__}") from exc


def json_body(response: httpx.Response, service: str) -> JsonObject:
    """Decode a reply that must be a JSON object (any HTTP status)."""
    try:
        data = response.json()
    except ValueError as exc:
        raise ChannelTransportError(
            service, f"reply is not JSON (HTTP {response.status_code})"
        ) from exc
    if not isinstance(data, dict):
        raise ChannelTransportError(service, f"reply must be a JSON object, got {type(data)}")
    return data


def reply_json(response: httpx.Response, service: str) -> JsonObject:
    """Return a JSON-object reply, raising unless it came with HTTP 200."""
    if response.status_code != 200:
        raise ChannelTransportError(
            service, f"expected HTTP 200 with a JSON reply, got HTTP {response.status_code}"
        )
    return json_body(response, service)
