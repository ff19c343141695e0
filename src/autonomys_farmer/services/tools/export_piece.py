"""`export-piece`: copy every piece of a node's archived history into a `piece_cache.bin` directory that
`full-piece-sharded-cache path=DIR` serves as is. The node is named by NODE_URL (http:// or ws://).

Resumable: pieces already in the directory are skipped, and each piece is durably written before the
next is counted, so an interrupted export picks up where it stopped. The node's segment headers
say how far the history goes; pieces the node cannot serve are reported, never invented. Nothing the
node sends is trusted: every batch of pieces is checked against its segment commitment (one batched
MSM and pairing check, `are_pieces_valid`) before it is written, and a piece that fails is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autonomys_farmer.protocol.constants import NUM_PIECES, PIECE_SIZE
from autonomys_farmer.protocol.pieces import Piece
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services.storage.piece_store import PieceStore
from autonomys_farmer.services.transport.node_client import NodeClient

NODE_URL_ENV = "NODE_URL"
CONNECT_TIMEOUT_S = 30.0
CONCURRENT_REQUESTS = 10  # the node allows 10 concurrent `subspace_piece` calls per client
BATCH_PIECES = 64  # pieces fetched, checked and written together (64 MiB held at most)

# Verdicts for (piece, segment commitment, position) triples: `are_pieces_valid` on a backend.
Verifier = Callable[[Sequence[tuple[Piece, bytes, int]]], list[bool]]


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
    invalid: list[int]

    def summary(self, output: Path) -> str:
        text = (
            f"{output}: {self.segments} segment(s), {self.total} pieces: {self.already} already there, "
            f"{self.written} written"
        )
        if self.invalid:
            text += f"; {len(self.invalid)} failed verification and were not written (first {self.invalid[0]})"
        if self.unavailable:
            text += (
                f"; {len(self.unavailable)} the node did not serve (first {self.unavailable[0]}); "
                "run again once the node has them (a real node must run with --sync full)"
            )
        return text


async def export_pieces(
    node_url: str,
    output: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
    verifier: Verifier | None = None,
) -> ExportResult:
    """`verifier` None writes pieces unchecked (the operator asked for --no-verify)."""
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
        commitments: dict[int, bytes] = {}
        if verifier is not None and todo:
            wanted = sorted({int(PieceIndex(index).segment_index()) for index in todo})
            for segment, header in zip(wanted, await node.segment_headers(wanted), strict=True):
                if header is not None:
                    commitments[segment] = header.segment_commitment
        unavailable: list[int] = []
        invalid: list[int] = []
        written = 0
        progress(already, total)
        semaphore = asyncio.Semaphore(CONCURRENT_REQUESTS)

        async def fetch(index: int) -> Piece | None:
            async with semaphore:
                return await node.piece(index)

        for start in range(0, len(todo), BATCH_PIECES):  # a batch at a time bounds memory
            batch = todo[start : start + BATCH_PIECES]
            fetched = dict(zip(batch, await asyncio.gather(*(fetch(index) for index in batch)), strict=True))
            pieces: dict[int, Piece] = {}
            for index, piece in fetched.items():
                segment = PieceIndex(index).segment_index()
                if piece is None or (verifier is not None and segment not in commitments):
                    unavailable.append(index)
                else:
                    pieces[index] = piece
            if verifier is not None and pieces:
                triples = [
                    (p, commitments[PieceIndex(i).segment_index()], PieceIndex(i).position()) for i, p in pieces.items()
                ]
                verdicts = await asyncio.to_thread(verifier, triples)
                invalid += [index for index, ok in zip(pieces, verdicts, strict=True) if not ok]
                pieces = {index: p for (index, p), ok in zip(pieces.items(), verdicts, strict=True) if ok}
            for index, piece in pieces.items():
                await asyncio.to_thread(store.put, index, piece.data)  # fdatasync'ed before it counts
                written += 1
                progress(already + written, total)
        return ExportResult(segments, total, already, written, sorted(unavailable), sorted(invalid))
    finally:
        store.close()
        await node.close()
