"""The running chat layer: config, notifier, outbox wiring and the WeCom callback app."""

from clawfed.chat.service.answers import Answerer
from clawfed.chat.service.app import ChatRuntime, chat_runtime, create_chat_app
from clawfed.chat.service.channels import ConfiguredChannels, rate_windows
from clawfed.chat.service.config import (
    ChatConfig,
    DingTalkSettings,
    EventKind,
    FeishuSettings,
    Route,
    SlackSettings,
    WeComAppSettings,
    WeComRobotSettings,
    load_chat_config,
    read_chat_config,
)
from clawfed.chat.service.notifier import Notifier
from clawfed.chat.service.replies import Answer, ChartAnswer, TextAnswer
from clawfed.chat.service.runtime import ChatService
from clawfed.chat.service.store import ChatStore

__all__ = [
    "Answer",
    "Answerer",
    "ChartAnswer",
    "ChatConfig",
    "ChatRuntime",
    "ChatService",
    "ChatStore",
    "ConfiguredChannels",
    "DingTalkSettings",
    "EventKind",
    "FeishuSettings",
    "Notifier",
    "Route",
    "SlackSettings",
    "TextAnswer",
    "WeComAppSettings",
    "WeComRobotSettings",
    "chat_runtime",
    "create_chat_app",
    "load_chat_config",
    "rate_windows",
    "read_chat_config",
]
