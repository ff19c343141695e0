"""A local development node speaking the farmer RPC (node-and-cluster.md §1, §8.2).

It archives its own deterministic history with the real archiver (erasure coding and KZG), issues a
slot every slot_duration, verifies every submitted solution as a node does (protocol.verification,
piece checks included), asks the winner to sign the block with sr25519 (`subspace_reward`), and
persists everything under --base-path so that a restart serves the same history.

Blocks are a pure function of their number (authors are kept beside them, not inside), so after a
restart the archiver is rebuilt from the last segment header and the blocks after it, and several nodes
follow one chain by agreeing on block numbers and slots alone: each tells its peers (`--peer`) of every
block it makes, and a peer adopts it after verifying its solution and signature (devnet.peers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.archiving import (
    ArchivedSegment,
    Archiver,
    SegmentHeader,
    genesis_block_with_padding,
)
from autonomys_farmer.protocol.chain import ChainParams
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import PIECE_SIZE, U64_MAX
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSigningInfo, SlotInfo
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.sector import (
    FarmerProtocolInfo,
    expiration_check_segment_index,
)
from autonomys_farmer.protocol.solution import Solution, SolutionError
from autonomys_farmer.protocol.types import HistorySize, PieceIndex, SlotNumber
from autonomys_farmer.protocol.verification import (
    PieceCheckParams,
    SolutionVerificationError,
    solution_piece_index,
    verify_solution,
)
from autonomys_farmer.services.devnet import peers as peering
from autonomys_farmer.services.devnet.chain import (
    BlockAnnouncement,
    ChainInfo,
    SlotBook,
    block_candidates,
    must_force_block,
    pre_seal_hash,
    slot_at,
    slot_proof_of_time,
)
from autonomys_farmer.services.files import write_atomically
from autonomys_farmer.services.transport.jsonrpc import JsonRpcServer, RpcError

log = logging.getLogger(__name__)
GENESIS_STATE_ROOT = blake3_hash(b"autonomys-farmer dev chain genesis state")
SLOT_HISTORY = 16
REWARD_SIGNATURE_TIMEOUT = 0.5
MAX_SOLUTIONS_PER_SLOT = 10
AUTHOR_ALONE_AFTER_SLOTS = SLOT_HISTORY  # a node whose peers all stay silent this long since it started authors alone


def block_header(number: int) -> bytes:
    return b"DEVB" + struct.pack("<I", number) + blake3_hash(b"dev block parent", struct.pack("<I", number))


def block_bytes(compute: Compute, number: int, payload_size: int) -> bytes:
    """Block `number`: a small header and deterministic ChaCha8 payload (the "extrinsics")."""
    if payload_size == 0:
        return block_header(number)
    key = blake3_hash(b"dev block payload", struct.pack("<I", number))
    return block_header(number) + compute.chacha8_keystream(key, -(-payload_size // 64))[:payload_size].tobytes()


def genesis_hash() -> bytes:
    return blake3_hash(block_header(0))


class Broadcast:
    """Fan-out of items to every current subscriber (each has its own bounded queue)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Any]] = set()

    def publish(self, item: Any) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()  # a slow subscriber skips items, like the official watch channels
            queue.put_nowait(item)

    async def subscribe(self, _params: list[Any]) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)


class DevNode:
    def __init__(
        self, base_path: Path, params: ChainParams, compute: Compute, kzg: Kzg, peers: Sequence[str] = ()
    ) -> None:
        self.base_path = base_path
        self.params = params
        self.compute = compute
        self.kzg = kzg
        self.segments_dir = base_path / "segments"
        self.state_file = base_path / "chain.json"
        self.headers: list[SegmentHeader] = []
        self.best_block = 0
        self.slot = SlotNumber(0)
        self.chain_start = time.time()  # slots count from here, so they keep increasing across restarts
        self.book = SlotBook(SLOT_HISTORY, MAX_SOLUTIONS_PER_SLOT)
        self.slot_info = Broadcast()
        self.reward_signing = Broadcast()
        self.archived_headers = Broadcast()
        self.blocks = Broadcast()  # BlockAnnouncement JSON of every block made here or adopted from a peer
        self.peers = tuple(peers)
        self.peer_followed = False  # since this process started (PeerLink sets it through adopt_height)
        self._first_slot: SlotNumber | None = None
        self._authoring_logged: set[str] = set()
        self._signatures: dict[bytes, asyncio.Future[bytes]] = {}
        self._archiver: Archiver | None = None
        self._archive_lock = asyncio.Lock()
        self._last_block_slot = 0
        self._next_to_archive = 0
        self._background: set[asyncio.Task[None]] = set()
        self.archiving: tuple[int, int, float] | None = None  # (records committed, records, since) of a segment

    # --- persistence -------------------------------------------------------------------------

    def load_or_init(self) -> None:
        self.load_state()
        self.start_archiver()

    def load_state(self) -> None:
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            if state["chain"] != self.params.name:
                raise RuntimeError(f"{self.base_path} holds chain {state['chain']!r}, not {self.params.name!r}")
            self.best_block = state["bestBlock"]
            self._last_block_slot = state.get("lastBlockSlot", 0)
            self.chain_start = state["chainStart"]
            self.headers = [SegmentHeader.from_json(h) for h in state["segmentHeaders"]]
            self.headers = [h for h in self.headers if self._segment_file(h.segment_index).exists()]

    def start_archiver(self) -> None:
        """The archiver as the stored history leaves it (a fresh one for an empty history)."""
        self._archiver = Archiver.with_kzg(self.compute, self.kzg, self._archiving_progress)
        self._next_to_archive = 0
        if self.headers:
            last = self.headers[-1]
            block = last.last_archived_block
            partial = self._archived_block_bytes(block.number) if block.partial is not None else None
            self._archiver = Archiver.resume(self._archiver.archive, last, partial)
            self._next_to_archive = block.number + 1
            log.info("resumed dev chain at block %d with %d segments", self.best_block, len(self.headers))
        else:
            self._save_state()

    def _archived_block_bytes(self, number: int) -> bytes:
        if number == 0:
            return genesis_block_with_padding(self.compute, block_header(0), GENESIS_STATE_ROOT)
        return block_bytes(self.compute, number, self.params.block_payload_size)

    def _segment_file(self, index: int) -> Path:
        return self.segments_dir / f"{index:08d}.pieces"

    def _save_state(self) -> None:
        state = {
            "chain": self.params.name,
            "bestBlock": self.best_block,
            "lastBlockSlot": self._last_block_slot,
            "chainStart": self.chain_start,
            "segmentHeaders": [h.to_json() for h in self.headers],
        }
        write_atomically(self.state_file, json.dumps(state).encode())

    # --- archiving ---------------------------------------------------------------------------

    async def archive_pending(self) -> None:
        """Archive every block that is confirmation_depth_k deep (genesis at once)."""
        async with self._archive_lock:
            assert self._archiver is not None
            while (
                self._next_to_archive == 0
                or self._next_to_archive <= self.best_block - self.params.confirmation_depth_k
            ):
                number = self._next_to_archive
                data = self._archived_block_bytes(number)
                started = time.monotonic()
                segments = await asyncio.to_thread(self._archiver.add_block, data, number)
                self._next_to_archive += 1
                for segment in segments:
                    await asyncio.to_thread(self._store_segment, segment)
                    self.archived_headers.publish(segment.header.to_json())
                    log.info("archived segment %d in %.1fs", segment.header.segment_index, time.monotonic() - started)

    def _archiving_progress(self, done: int, total: int) -> None:
        since = self.archiving[2] if self.archiving is not None and done > 0 else time.monotonic()  # 0: it starts
        self.archiving = (done, total, since) if done < total else None

    async def rpc_archiving_progress(self, _params: list[Any]) -> Any:
        """Dev-only: the segment being archived, for `dev`'s view (null when none is)."""
        if self.archiving is None:
            return None
        done, total, since = self.archiving
        return {"done": done, "total": total, "elapsedSecs": round(time.monotonic() - since, 1)}

    def _store_segment(self, segment: ArchivedSegment) -> None:
        self.store_segment(segment.header, b"".join(p.data for p in segment.pieces))

    def store_segment(self, header: SegmentHeader, pieces: bytes) -> None:
        """Pieces reach the disk (atomically) before the header that announces them."""
        write_atomically(self._segment_file(header.segment_index), pieces)
        self.headers.append(header)
        self._save_state()

    # --- slots and blocks --------------------------------------------------------------------

    def farmer_app_info(self) -> FarmerAppInfo:
        return FarmerAppInfo(
            genesis_hash=genesis_hash(),
            dsn_bootstrap_nodes=(),
            syncing=False,
            farming_timeout_secs=self.params.farming_timeout_secs,
            protocol_info=FarmerProtocolInfo(
                history_size=HistorySize(max(1, len(self.headers))),
                max_pieces_in_sector=self.params.max_pieces_in_sector,
                recent_segments=self.params.recent_segments,
                recent_history_fraction=self.params.recent_history_fraction,
                min_sector_lifetime=self.params.min_sector_lifetime,
            ),
        )

    async def run_slots(self) -> None:
        while True:
            await self.new_slot()
            elapsed = (time.time() - self.chain_start) / self.params.slot_duration_secs
            await asyncio.sleep(max(0.01, (int(elapsed) + 1 - elapsed) * self.params.slot_duration_secs))

    async def new_slot(self) -> None:
        slot = slot_at(time.time(), self.chain_start, self.params.slot_duration_secs)
        if slot <= self.slot:
            return
        self.slot = slot
        self._first_slot = slot if self._first_slot is None else self._first_slot
        state = self.book.open(slot)
        if self.headers:
            info = SlotInfo(slot, state.challenge, self.params.solution_range(), self.params.voting_solution_range())
            self.slot_info.publish(info.to_json())
        for closing in self.book.close_due(slot, self.params.block_authoring_delay):
            await self._claim_slot(closing)

    def may_author(self) -> bool:
        """Whether this node makes blocks now. A node with peers waits until it has followed one since it
        started: restarted, it would otherwise make blocks at heights its peers already made (a fork). If
        none answers for AUTHOR_ALONE_AFTER_SLOTS, it goes on alone (the survivor of a lost cluster)."""
        if not self.peers or self.peer_followed:
            return True
        waited = self.slot - (self.slot if self._first_slot is None else self._first_slot)
        if waited < AUTHOR_ALONE_AFTER_SLOTS:
            self._log_authoring_once("wait", "no peer followed yet: making no blocks until one is")
            return False
        self._log_authoring_once("alone", f"no peer followed in {waited} slots: making blocks alone")
        return True

    def _log_authoring_once(self, kind: str, line: str) -> None:
        if kind not in self._authoring_logged:
            self._authoring_logged.add(kind)
            log.info(line)

    async def _claim_slot(self, slot: SlotNumber) -> None:
        if self._last_block_slot >= slot:
            return  # a peer's block already holds this slot
        if not self.may_author():
            return
        state = self.book.slots[slot]
        block: BlockAnnouncement | None = None
        for solution in block_candidates(state.solutions, self.params.solution_range()):
            number = self.best_block + 1
            signature = await self._request_signature(pre_seal_hash(slot, number, solution), solution.public_key)
            if signature is not None and self.best_block + 1 == number and self._last_block_slot < slot:
                block = BlockAnnouncement(number, slot, self._last_block_slot, solution, signature)
                break
        if block is None and must_force_block(slot, self._last_block_slot, self.params.blocks_per_slot_interval):
            block = BlockAnnouncement(self.best_block + 1, slot, self._last_block_slot)
        if block is not None:
            self._make_block(block)
            author = block.solution.public_key.hex()[:16] if block.solution else None
            log.info(
                "block #%d at slot %d %s",
                block.number,
                slot,
                f"authored by farmer {author}" if author else "(no winning solution)",
            )

    def _make_block(self, block: BlockAnnouncement) -> None:
        """`block` is the new best: kept, archived once deep enough, announced to every peer."""
        self._set_head(block.number, block.slot)
        self.blocks.publish(block.to_json())

    def _set_head(self, number: int, slot: int) -> None:
        self.best_block = number
        self._last_block_slot = slot
        self._save_state()
        task = asyncio.create_task(self.archive_pending())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _request_signature(self, pre_seal_hash: bytes, public_key: bytes) -> bytes | None:
        """The farmer's signature of the pre-seal hash, None when none valid came in time."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._signatures[pre_seal_hash] = fut
        self.reward_signing.publish(RewardSigningInfo(pre_seal_hash, public_key).to_json())
        try:
            signature = await asyncio.wait_for(fut, REWARD_SIGNATURE_TIMEOUT)
        except TimeoutError:
            log.info("no reward signature for %s in time: block not authored", pre_seal_hash.hex()[:16])
            return None
        finally:
            self._signatures.pop(pre_seal_hash, None)
        return signature if reward_signing.verify(public_key, pre_seal_hash, signature) else None

    # --- peers (devnet.peers follows them) ---------------------------------------------------

    def chain_info(self) -> ChainInfo:
        return ChainInfo(
            self.params.name,
            genesis_hash(),
            self.chain_start,
            self.best_block,
            self._last_block_slot,
            len(self.headers),
        )

    async def import_block(self, block: BlockAnnouncement) -> str | None:
        """A peer's block, adopted if it is ahead of ours (by no more blocks than slots have passed since
        our last) and keeps the chain's rules: its solution verifies against the slot's challenge and our
        history and is a winner, and the farmer signed its pre-seal hash. Returns why it was refused
        (None: adopted, or not ahead of us)."""
        if block.number <= self.best_block:
            return None  # one we have (made here at the same slot)
        if not self._within_slots(block.number, block.slot):
            return None  # more blocks than slots since ours: a reconnect's height closes such a gap
        broken = block.rule_broken(self.params.blocks_per_slot_interval)
        if broken is not None:
            return broken
        if block.slot > self.slot + 1:
            return f"slot {block.slot} is ahead of our clock (slot {self.slot})"
        if block.solution is not None and block.signature is not None:
            # The slot's proof of time is a pure function of the slot, so a node that (re)started after the
            # slot opened verifies it all the same: refusing it would fork the chain at that height.
            if block.slot + SLOT_HISTORY < self.slot:
                return f"slot {block.slot} is not among the {SLOT_HISTORY} recent slots this node can verify"
            try:
                distance = await asyncio.to_thread(
                    verify_solution,
                    block.solution,
                    block.slot,
                    slot_proof_of_time(block.slot),
                    self.params.voting_solution_range(),
                    self.kzg,
                    self._piece_check(block.solution),
                )
            except (SolutionVerificationError, RpcError) as e:
                return f"its solution does not verify: {e}"
            if distance > self.params.solution_range() // 2:
                return "its solution is a vote, not a block winner"
            message = pre_seal_hash(block.slot, block.number, block.solution)
            if not reward_signing.verify(block.solution.public_key, message, block.signature):
                return "the farmer's signature does not verify"
        if block.number <= self.best_block or block.slot <= self._last_block_slot:
            return None  # we made this height ourselves while verifying
        self._make_block(block)
        log.info("block #%d at slot %d from a peer", block.number, block.slot)
        return None

    def _within_slots(self, number: int, slot: int) -> bool:
        """Block `number` is ahead of ours by no more blocks than slots up to `slot` since our last block
        (at most one block per slot, one at least)."""
        return 0 < number - self.best_block <= max(1, slot - self._last_block_slot)

    def adopt_synced_chain(self, info: ChainInfo) -> None:
        """After taking a peer's history: its slot clock and its height become ours."""
        self.chain_start = info.chain_start
        self.best_block, self._last_block_slot = info.best_block, info.last_block_slot
        self._save_state()

    def adopt_height(self, info: ChainInfo) -> None:
        """A peer's height on (re)connecting, taken when higher: blocks are a pure function of their number,
        so only the height is news, and at most one block per slot since ours bounds it."""
        self.peer_followed = True
        if self._within_slots(info.best_block, self.slot) and info.last_block_slot <= self.slot + 1:
            log.info("caught up from block #%d to #%d (a peer's height)", self.best_block, info.best_block)
            self._set_head(info.best_block, info.last_block_slot)

    # --- RPC handlers ------------------------------------------------------------------------

    def submit_solution(self, slot: int, solution: Solution) -> int:
        state = self.book.accepting(slot)
        if state is None:
            raise RpcError(rpc.SUBSPACE_ERROR_CODE, rpc.SOLUTION_IGNORED)
        try:
            distance = verify_solution(
                solution,
                slot,
                state.proof_of_time,
                self.params.voting_solution_range(),
                self.kzg,
                self._piece_check(solution),
            )
        except SolutionVerificationError as e:
            raise RpcError(rpc.SUBSPACE_ERROR_CODE, f"Solution rejected: {e}") from e
        state.solutions.append((distance, solution))
        return distance

    def _piece_check(self, solution: Solution) -> PieceCheckParams:
        p = self.params
        piece_index = solution_piece_index(
            solution, p.max_pieces_in_sector, p.recent_segments, p.recent_history_fraction
        )
        segment = piece_index.segment_index()
        if segment >= len(self.headers):
            raise RpcError(rpc.SUBSPACE_ERROR_CODE, f"Solution rejected: SegmentCommitmentNotFound: segment {segment}")
        expiration_segment = expiration_check_segment_index(solution.history_size, p.min_sector_lifetime)
        expiration = self.headers[expiration_segment] if expiration_segment < len(self.headers) else None
        return PieceCheckParams(
            max_pieces_in_sector=p.max_pieces_in_sector,
            segment_commitment=self.headers[segment].segment_commitment,
            recent_segments=p.recent_segments,
            recent_history_fraction=p.recent_history_fraction,
            min_sector_lifetime=p.min_sector_lifetime,
            current_history_size=len(self.headers),
            sector_expiration_check_segment_commitment=None if expiration is None else expiration.segment_commitment,
        )

    def piece(self, piece_index: int) -> bytes | None:
        """The archived piece, None for one the history does not have (yet)."""
        if piece_index < 0:
            return None
        segment, position = PieceIndex(piece_index).segment_index(), PieceIndex(piece_index).position()
        if segment >= len(self.headers):
            return None
        with open(self._segment_file(segment), "rb") as f:
            f.seek(position * PIECE_SIZE)
            return f.read(PIECE_SIZE)

    def rpc_server(self) -> JsonRpcServer:
        """The node's farmer RPC: each method of RPC_METHODS and the three subscriptions."""
        server = JsonRpcServer()
        for method, handler in RPC_METHODS.items():
            server.method(method, getattr(self, handler))
        for sub, source in (
            (rpc.SLOT_INFO, self.slot_info),
            (rpc.REWARD_SIGNING, self.reward_signing),
            (rpc.ARCHIVED_SEGMENT_HEADER, self.archived_headers),
            (rpc.DEV_BLOCKS, self.blocks),
        ):
            server.subscription(sub.subscribe, sub.notification, sub.unsubscribe, source.subscribe)
        return server

    async def rpc_chain_info(self, _params: list[Any]) -> Any:
        return self.chain_info().to_json()

    async def rpc_farmer_app_info(self, _params: list[Any]) -> Any:
        return self.farmer_app_info().to_json()

    async def rpc_submit_solution_response(self, params: list[Any]) -> Any:
        response = _single_object(params, "SolutionResponse")
        try:
            solution = Solution.from_json(response["solution"])
            slot = int(response["slotNumber"])
        except (KeyError, TypeError, ValueError, SolutionError) as e:
            raise RpcError(-32602, f"invalid SolutionResponse: {e}") from e
        self.submit_solution(slot, solution)
        return None

    async def rpc_submit_reward_signature(self, params: list[Any]) -> Any:
        response = rpc.RewardSignatureResponse.from_json(_single_object(params, "RewardSignatureResponse"))
        fut = self._signatures.get(response.hash)
        if fut is not None and not fut.done() and response.signature is not None:
            fut.set_result(response.signature)
        return None

    async def rpc_acknowledge_archived_segment_header(self, _params: list[Any]) -> Any:
        return None

    async def rpc_segment_headers(self, params: list[Any]) -> Any:
        indexes = params[0] if params else []
        if not isinstance(indexes, list) or len(indexes) > rpc.MAX_SEGMENT_HEADERS_PER_REQUEST:
            raise RpcError(
                rpc.SUBSPACE_ERROR_CODE,
                f"segment_indexes length exceeded the limit: {rpc.MAX_SEGMENT_HEADERS_PER_REQUEST}",
            )
        checked = [_uint(i, "segment index", U64_MAX) for i in indexes]
        return [self.headers[i].to_json() if i < len(self.headers) else None for i in checked]

    async def rpc_last_segment_headers(self, params: list[Any]) -> Any:
        limit = _uint(params[0], "limit", U64_MAX) if params else 0
        if limit > rpc.MAX_SEGMENT_HEADERS_PER_REQUEST:
            raise RpcError(rpc.SUBSPACE_ERROR_CODE, f"limit exceeded the limit: {rpc.MAX_SEGMENT_HEADERS_PER_REQUEST}")
        return [h.to_json() for h in self.headers[-limit:]] if limit else []

    async def rpc_piece(self, params: list[Any]) -> Any:
        if len(params) != 1:
            raise RpcError(-32602, "expected one piece index")
        data = await asyncio.to_thread(self.piece, _uint(params[0], "piece index", U64_MAX))
        return None if data is None else data.hex()


RPC_METHODS = {
    rpc.GET_FARMER_APP_INFO: "rpc_farmer_app_info",
    rpc.SUBMIT_SOLUTION_RESPONSE: "rpc_submit_solution_response",
    rpc.SUBMIT_REWARD_SIGNATURE: "rpc_submit_reward_signature",
    rpc.ACKNOWLEDGE_ARCHIVED_SEGMENT_HEADER: "rpc_acknowledge_archived_segment_header",
    rpc.SEGMENT_HEADERS: "rpc_segment_headers",
    rpc.LAST_SEGMENT_HEADERS: "rpc_last_segment_headers",
    rpc.PIECE: "rpc_piece",
    rpc.DEV_ARCHIVING_PROGRESS: "rpc_archiving_progress",
    rpc.DEV_CHAIN_INFO: "rpc_chain_info",
}


def _uint(value: Any, what: str, maximum: int) -> int:
    """A JSON number that is a whole number in 0..maximum (never a bool, a string or a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise RpcError(-32602, f"invalid {what}: expected an integer in 0..{maximum}, got {str(value)[:40]}")
    return value


def _single_object(params: list[Any], what: str) -> dict[str, Any]:
    if len(params) != 1 or not isinstance(params[0], dict):
        raise RpcError(-32602, f"expected one {what} object")
    return params[0]


async def serve(
    base_path: Path,
    params: ChainParams,
    compute: Compute,
    kzg: Kzg,
    host: str,
    port: int,
    ready: asyncio.Event | None = None,
    peers: Sequence[str] = (),
    sync_from_peers: bool = False,
) -> None:
    """Run the dev node until cancelled: take the history from a peer or archive genesis if there is
    none yet, serve RPC, issue slots, follow the peers' blocks."""
    node = DevNode(base_path, params, compute, kzg, peers)
    node.load_state()
    server = await node.rpc_server().serve(host, port)
    log.info("dev node RPC listening on ws://%s:%d (chain %s, pid %d)", host, port, params.name, os.getpid())
    if not node.headers and sync_from_peers and node.peers:
        await peering.sync_history(node, node.peers)
    elif not node.headers:
        log.info("archiving the genesis segment (one-time; about a minute on 2 cores)")
    node.start_archiver()
    await node.archive_pending()
    if ready is not None:
        ready.set()
    links = [asyncio.create_task(peering.PeerLink(node, url).run()) for url in node.peers]
    try:
        await node.run_slots()
    finally:
        for link in links:
            link.cancel()
        server.close()
