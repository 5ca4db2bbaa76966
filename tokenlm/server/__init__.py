"""The streaming server (``tokenlm serve``): a websocket protocol for ASR, TTS and full-duplex
sessions that are stepped together in batches, and a browser page.

- :mod:`tokenlm.server.protocol`: message kinds, packing and checking (numpy only)
- :mod:`tokenlm.server.app`: the aiohttp application, the per-mode batched stepping loop
"""

from .protocol import MODES, PROTOCOL, VERSION, ProtocolError

__all__ = ["MODES", "PROTOCOL", "VERSION", "ProtocolError"]
