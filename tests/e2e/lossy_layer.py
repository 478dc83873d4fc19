"""A channel layer that drops messages, to show streams do not depend on it.

Fault injection only: select it with
`CHANNEL_LAYER_BACKEND=tests.e2e.lossy_layer.LossyInMemoryChannelLayer`
and set the share of dropped messages with `CHANNEL_LAYER_DROP_RATE`.
"""

import os
import random

from channels.layers import InMemoryChannelLayer


class LossyInMemoryChannelLayer(InMemoryChannelLayer):
    """The in-memory layer, losing a share of what is sent to it."""

    def __init__(self, drop_rate: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if drop_rate is None:
            drop_rate = float(os.environ.get("CHANNEL_LAYER_DROP_RATE", "0.2"))
        self.drop_rate = drop_rate
        self.dropped = 0

    def _lose(self) -> bool:
        if random.random() < self.drop_rate:
            self.dropped += 1
            return True
        return False

    async def send(self, channel, message):
        # group_send goes through send for each member, so rings are lost
        # per subscriber, as a congested layer loses them.
        if not self._lose():
            await super().send(channel, message)
