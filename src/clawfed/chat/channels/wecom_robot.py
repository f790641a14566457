"""Channel posting to a WeCom group robot (群机器人)."""

from __future__ import annotations

from clawfed.chat.channel import MENTION_ALL, MessageKind, OutgoingMessage
from clawfed.chat.wecom_api import WeComRobot


class WeComRobotChannel:
    """Sends ``OutgoingMessage``s through a ``WeComRobot`` (which queues on 20 msgs/min).

    Text mentions use ``mentioned_list``. Markdown has no mention list: named mentions become
    ``<@userid>`` in the content, and an ``@all`` mention goes out as a short text message
    (the markdown's first line) just before it. An image's caption and mentions follow the
    image as a text message.
    """

    def __init__(self, robot: WeComRobot) -> None:
        self._robot = robot

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (see ``Channel.send``)."""
        if message.kind is MessageKind.TEXT:
            self._robot.send_text(message.text, mentioned_list=message.mentions)
        elif message.kind is MessageKind.MARKDOWN:
            if message.mentions_all:
                self._robot.send_text(message.headline or "@all", mentioned_list=(MENTION_ALL,))
            tags = "".join(f"<@{user}>" for user in message.named_mentions)
            content = f"{message.text}\n{tags}" if tags else message.text
            self._robot.send_markdown(content)
        else:
            assert message.image is not None
            self._robot.send_image(message.image)
            if message.text.strip() or message.mentions:
                caption = message.text if message.text.strip() else "[图片 / image]"
                self._robot.send_text(caption, mentioned_list=message.mentions)
