"""``ws://…/ws/me/``: a WebSocket that authenticates by its first message."""

from __future__ import annotations

from typing import Any

from rotating_tokens.contrib.channels import AccessTokenConsumer


class MeConsumer(AccessTokenConsumer):
    """After ``{"type": "authenticated", …}``: ``{"type": "ping"}`` gets
    ``{"type": "pong", "user": {…}}``; the socket closes with 4401 on logout."""

    async def receive_authenticated_json(self, content: dict[str, Any]) -> None:
        if content.get("type") == "ping" and self.user is not None:
            await self.send_json({"type": "pong", "user": self.user_payload(self.user)})
