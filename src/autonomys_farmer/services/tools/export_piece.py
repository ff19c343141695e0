"""`export-piece`: copy every piece of a node's archived history into a `piece_cache.bin` directory that
`full-piece-sharded-cache path=DIR` serves as is. The node is named by NODE_URL (http:// or ws://).

Resumable: pieces already in the directory are skipped, and each piece is durably written before the
next is counted, so an interrupted export picks up where it stopped. The node's segment headers
say how far the history goes; pieces the node cannot serve are reported, never invented."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autonomys_farmer.protocol.constants import NUM_PIECES, PIECE_SIZE
from autonomys_farmer.services.storage.piece_store import PieceStore
from autonomys_farmer.services.transport.node_client import NodeClient

NODE_URL_ENV = "NODE_URL"
CONNECT_TIMEOUT_S = 30.0
CONCURRENT_REQUESTS = 10  # the node allows 10 concurrent `subspace_piece` calls per client


def websocket_url(node_url: str) -> str:
    """The node's RPC listens for HTTP and WebSocket on one port: http://h:9944 -> ws://h:9944."""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if node_url.startswith(http):
            return ws + node_url[len(http) :]
    if node_url.startswith(("ws://", "wss://")):
        return node_url
    raise ValueError(f"{NODE_URL_ENV}={node_url!r}: expected http://, https://, ws:// or wss://HOST:PORT")


@dataclass
class ExportResult:
    segments: int
    total: int
    already: int
    written: int
    unavailable: list[int]

    def summary(self, output: Path) -> str:
        text = (
            f"{output}: {self.segments} segment(s), {self.total} pieces: {self.already} already there, "
            f"{self.written} written"
        )
        if self.unavailable:
            text += (
                f"; {len(self.unavailable)} the node did not serve (first {self.unavailable[0]}); "
                "run again once the node has them (a real node must run with --sync full)"
            )
        return text


async def export_pieces(
    node_url: str, output: Path, progress: Callable[[int, int], None] = lambda done, total: None
) -> ExportResult:
    node = NodeClient(websocket_url(node_url))
    store = PieceStore(output, PIECE_SIZE)
    try:
        try:
            segments = (await asyncio.wait_for(node.farmer_app_info(), CONNECT_TIMEOUT_S)).protocol_info.history_size
        except TimeoutError:
            raise ConnectionError(f"node at {node_url} did not answer within {CONNECT_TIMEOUT_S:.0f}s") from None
        total = segments * NUM_PIECES
        todo = [index for index in range(total) if index not in store]
        already = total - len(todo)
        unavailable: list[int] = []
        written = 0
        progress(already, total)
        semaphore = asyncio.Semaphore(CONCURRENT_REQUESTS)

        async def export(index: int) -> None:
            nonlocal written
            async with semaphore:
                piece = await node.piece(index)
            if piece is None:
                unavailable.append(index)
                return
            await asyncio.to_thread(store.put, index, piece.data)  # fdatasync'ed before it counts
            written += 1
            progress(already + written, total)

        for start in range(0, len(todo), NUM_PIECES):  # a segment at a time bounds memory
            await asyncio.gather(*(export(index) for index in todo[start : start + NUM_PIECES]))
        return ExportResult(segments, total, already, written, sorted(unavailable))
    finally:
        store.close()
        await node.close()
