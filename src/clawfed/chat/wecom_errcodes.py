"""WeCom errcodes clawfed meets, with what each means for a retry and a bilingual hint."""

from __future__ import annotations

from dataclasses import dataclass

from clawfed.chat.errors import FailureKind, WeComApiError

RATE_LIMIT_BACKOFF = 60.0
"""Seconds to hold back after errcode 45009 (the robot's window is 60 s)."""

TOKEN_ERRCODES = frozenset({40014, 42001})
"""An access_token that is invalid or expired: refresh once and retry."""


@dataclass(frozen=True)
class ErrcodeInfo:
    """What one WeCom errcode means."""

    kind: FailureKind
    hint: str


_K = FailureKind
ERRCODES: dict[int, ErrcodeInfo] = {
    -1: ErrcodeInfo(_K.TRANSIENT, "系统繁忙，稍后重试 / WeCom is busy, retry later"),
    40001: ErrcodeInfo(
        _K.CONFIG, "Secret 错误，检查应用的 Secret / wrong corpsecret: check the app's Secret"
    ),
    40004: ErrcodeInfo(_K.INVALID_REQUEST, "不合法的媒体文件类型 / invalid media type"),
    40005: ErrcodeInfo(_K.INVALID_REQUEST, "不合法的文件类型（仅 JPG/PNG） / invalid file type"),
    40006: ErrcodeInfo(_K.INVALID_REQUEST, "不合法的文件大小 / invalid file size"),
    40007: ErrcodeInfo(
        _K.INVALID_REQUEST, "media_id 无效或已过期（3 天） / invalid or expired media_id (3 days)"
    ),
    40008: ErrcodeInfo(_K.INVALID_REQUEST, "不合法的消息类型 / invalid message type"),
    40009: ErrcodeInfo(_K.INVALID_REQUEST, "图片大小不合法（≤ 2 MB） / invalid image size"),
    40013: ErrcodeInfo(_K.CONFIG, "CorpID 错误 / wrong corpid: check the corp id"),
    40014: ErrcodeInfo(
        _K.TRANSIENT, "access_token 无效，需重新获取 / invalid access_token, fetch a new one"
    ),
    40056: ErrcodeInfo(_K.CONFIG, "AgentID 不合法 / invalid agentid: check the app's AgentId"),
    40058: ErrcodeInfo(
        _K.INVALID_REQUEST, "参数不合法（如内容超长） / invalid parameter, e.g. content too long"
    ),
    41001: ErrcodeInfo(_K.CONFIG, "缺少 access_token 参数 / access_token missing"),
    41002: ErrcodeInfo(_K.CONFIG, "缺少 corpid 参数 / corpid missing"),
    41004: ErrcodeInfo(_K.CONFIG, "缺少 corpsecret 参数 / corpsecret missing"),
    42001: ErrcodeInfo(
        _K.TRANSIENT, "access_token 已过期，需重新获取 / access_token expired, fetch a new one"
    ),
    44001: ErrcodeInfo(_K.INVALID_REQUEST, "多媒体文件为空 / empty media file"),
    44004: ErrcodeInfo(_K.INVALID_REQUEST, "消息内容为空 / empty message content"),
    45002: ErrcodeInfo(_K.INVALID_REQUEST, "消息内容超过长度限制 / message content too long"),
    45009: ErrcodeInfo(
        _K.RATE_LIMITED, "接口调用超过频率限制，稍后重试 / rate limit hit, wait and retry"
    ),
    45033: ErrcodeInfo(_K.RATE_LIMITED, "接口并发调用超过限制 / too many concurrent calls"),
    47001: ErrcodeInfo(_K.INVALID_REQUEST, "数据格式错误（JSON） / request body is not valid JSON"),
    48002: ErrcodeInfo(_K.CONFIG, "API 接口无权限调用 / the app may not call this API"),
    60011: ErrcodeInfo(
        _K.CONFIG, "成员不在应用可见范围内 / member outside the app's visible range"
    ),
    60020: ErrcodeInfo(
        _K.CONFIG, "来源 IP 不在企业可信 IP 列表 / egress IP not in the app's trusted IPs"
    ),
    81013: ErrcodeInfo(
        _K.INVALID_REQUEST,
        "接收人 UserID、部门 ID、标签 ID 全部无效 / every recipient user, party and tag is invalid",
    ),
    93000: ErrcodeInfo(
        _K.CONFIG,
        "webhook 地址无效或机器人已被移出群聊 / bad webhook key, or the robot left the group",
    ),
}


def wecom_error(errcode: int, errmsg: str) -> WeComApiError:
    """Build the ``WeComApiError`` for an errcode, with its kind and hint from ``ERRCODES``."""
    info = ERRCODES.get(errcode)
    if info is None:
        hint = (
            f"未收录的错误码，查询 https://open.work.weixin.qq.com/devtool/query?e={errcode} / "
            "errcode not in clawfed's table, look it up in WeCom's error-code tool"
        )
        kind = FailureKind.PERMANENT
    else:
        hint, kind = info.hint, info.kind
    retry_after = RATE_LIMIT_BACKOFF if kind is FailureKind.RATE_LIMITED else None
    return WeComApiError(errcode, errmsg, hint, kind=kind, retry_after=retry_after)
