"""Dev nodes following one chain (`dev-node --peer URL`): a node follows each peer's blocks, verifying
every one before adopting it (DevNode.import_block), and a fresh node started with --sync-from-peers takes
its history from a peer (every piece checked against its segment commitment) instead of archiving the
genesis segment again. Peers talk over the node's own RPC (two dev-only methods)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.constants import NUM_PIECES, PIECE_SIZE
from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
from autonomys_farmer.services.devnet.chain import AnnouncementError, BlockAnnouncement, ChainInfo
from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient, RpcError

if TYPE_CHECKING:
    from autonomys_farmer.services.devnet.dev_node import DevNode

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 10.0
SYNC_BATCH = 64  # pieces verified together (one MSM and one pairing check per batch)
SYNC_FETCHES = 8  # piece requests in flight to the peer


class PeerError(Exception):
    """A peer that is not on our chain or serves history that does not verify."""


# What a peer can cause: unreachable, gone, an RPC error, or answers of the wrong shape (ValueError covers
# AnnouncementError and the hex/shape errors of the RPC decoders).
PEER_TROUBLE = (OSError, TimeoutError, ConnectionError, RpcError, PeerError, KeyError, TypeError, ValueError)


class PeerLink:
    """Follows one peer for as long as the node runs: its height on every (re)connect, then each block
    it announces. A bad announcement is logged once per kind of problem and dropped."""

    def __init__(self, node: DevNode, url: str) -> None:
        self.node = node
        self.url = url
        self.refused = 0
        self._logged: set[str] = set()
        self._trouble: str | None = None

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                client = await JsonRpcClient.connect(self.url, timeout=5)
            except (OSError, TimeoutError) as e:
                self._report_trouble(f"unreachable ({e or type(e).__name__})")
            else:
                try:
                    await self._follow(client)
                except PEER_TROUBLE as e:
                    self._report_trouble(str(e) or type(e).__name__)
                    delay = 1.0 if isinstance(e, ConnectionError) else delay
                finally:
                    await client.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _follow(self, client: JsonRpcClient) -> None:
        blocks = await client.subscribe(rpc.DEV_BLOCKS.subscribe)
        info = await peer_chain(self.node, client)
        if info.segments == 0:
            raise PeerError("no history yet (archiving genesis or taking it from a peer)")
        self.node.adopt_height(info)
        if self._trouble is not None or not self._logged:
            log.info("following peer %s (block #%d)", self.url, info.best_block)
            self._logged.add("connected")
        self._trouble = None
        async for item in blocks:
            try:
                block = BlockAnnouncement.from_json(item)
            except AnnouncementError as e:
                self._refuse("malformed", str(e))
                continue
            problem = await self.node.import_block(block)
            if problem is not None:
                self._refuse("refused", f"block #{block.number} at slot {block.slot}: {problem}")

    def _refuse(self, kind: str, detail: str) -> None:
        self.refused += 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("peer %s: %s block announcement dropped (%s); further ones counted", self.url, kind, detail)

    def _report_trouble(self, trouble: str) -> None:
        if trouble != self._trouble:
            log.warning("peer %s: %s; retrying", self.url, trouble)
        self._trouble = trouble


async def peer_chain(node: DevNode, client: JsonRpcClient, clock: bool = True) -> ChainInfo:
    """The peer's chain info, PeerError unless it is our chain (and, with `clock`, our slot clock)."""
    info = ChainInfo.from_json(await client.call(rpc.DEV_CHAIN_INFO, timeout=10))
    different = node.chain_info().differs_from(info, clock)
    if different is not None:
        raise PeerError(f"not on our chain: {different}")
    return info


async def sync_history(node: DevNode, peers: tuple[str, ...], wait_log_s: float = 30.0) -> None:
    """Take the history from the first peer that has some, waiting (with a line every `wait_log_s`)
    while none has: the first node of a shape archives genesis, the others verify and copy it."""
    last_log = 0.0
    while True:
        for url in peers:
            try:
                if await _sync_from(node, url):
                    return
            except PEER_TROUBLE as e:
                log.warning("peer %s: history not taken (%s)", url, str(e) or type(e).__name__)
        if time.monotonic() - last_log > wait_log_s:
            log.info("waiting for a peer with an archived history (%s)", ", ".join(peers))
            last_log = time.monotonic()
        await asyncio.sleep(2.0)


async def _sync_from(node: DevNode, url: str) -> bool:
    client = await JsonRpcClient.connect(url, timeout=5)
    try:
        info = await peer_chain(node, client, clock=False)
        if info.segments == 0:
            return False
        started = time.monotonic()
        raw = await client.call(rpc.SEGMENT_HEADERS, [list(range(info.segments))], timeout=30)
        headers = [SegmentHeader.from_json(h) for h in _list(raw, info.segments)]
        previous = bytes(32)
        for index, header in enumerate(headers):
            if header.segment_index != index or header.prev_segment_header_hash != previous:
                raise PeerError(f"segment header {index} does not chain to the one before it")
            previous = header.hash()
        for header in headers:
            node.store_segment(header, await _verified_segment(node, client, header))
            log.info("took segment %d from peer %s (every piece verified)", header.segment_index, url)
        node.adopt_synced_chain(info)
        log.info(
            "history of %d segment(s) taken from %s in %.1fs; at block #%d",
            len(headers), url, time.monotonic() - started, info.best_block,
        )  # fmt: skip
        return True
    finally:
        await client.close()


async def _verified_segment(node: DevNode, client: JsonRpcClient, header: SegmentHeader) -> bytes:
    """The segment's pieces from the peer, each checked (in batches) against the header's commitment."""
    first = header.segment_index * NUM_PIECES
    pieces: list[bytes] = [b""] * NUM_PIECES
    fetches = asyncio.Semaphore(SYNC_FETCHES)

    async def fetch(position: int) -> None:
        async with fetches:
            result = await client.call(rpc.PIECE, [first + position], timeout=60)
        if result is None:
            raise PeerError(f"peer lacks piece {first + position} of segment {header.segment_index}")
        pieces[position] = rpc.hex_bytes(result, PIECE_SIZE, "piece")

    for start in range(0, NUM_PIECES, SYNC_BATCH):
        positions = range(start, min(start + SYNC_BATCH, NUM_PIECES))
        await asyncio.gather(*(fetch(p) for p in positions))
        batch = [(Piece(pieces[p]), header.segment_commitment, p) for p in positions]
        valid = await asyncio.to_thread(are_pieces_valid, node.compute, node.kzg, batch, os.urandom(32))
        if not all(valid):
            bad = [first + p for p, ok in zip(positions, valid, strict=True) if not ok]
            raise PeerError(f"piece(s) {bad[:4]} of segment {header.segment_index} do not verify")
    return b"".join(pieces)


def _list(value: Any, length: int) -> list[Any]:
    if not isinstance(value, list) or len(value) != length or any(item is None for item in value):
        raise PeerError(f"expected {length} segment headers")
    return value
