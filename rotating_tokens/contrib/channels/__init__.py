"""Django Channels, with this app's access tokens (``docs/howto/channels.md``).

::

    from rotating_tokens.contrib.channels import AccessTokenConsumer

    class MeConsumer(AccessTokenConsumer):
        async def receive_authenticated_json(self, content):
            await self.send_json({"type": "echo", "content": content})

The client authenticates with its first message, and the socket is closed with 4401
when its family is revoked anywhere (``sockets.py``), with no channel layer needed.
Needs the ``channels`` extra.
"""

from __future__ import annotations

from .consumer import CLOSE_UNAUTHENTICATED, AccessTokenConsumer, websocket_htu

__all__ = ["CLOSE_UNAUTHENTICATED", "AccessTokenConsumer", "websocket_htu"]
