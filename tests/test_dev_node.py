"""The dev node and the farmer-side client over a real WebSocket (a dev-node subprocess)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time

import pytest
from processes import DevNodeProcess

from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.auditing import audit_sector
from autonomys_farmer.protocol.chain import DEV
from autonomys_farmer.protocol.constants import PIECE_SIZE, RECORDED_HISTORY_SEGMENT_SIZE
from autonomys_farmer.protocol.farmer_rpc import RewardSignatureResponse, RewardSigningInfo
from autonomys_farmer.protocol.pieces import is_piece_valid
from autonomys_farmer.protocol.plotting import plot_sector_in_memory
from autonomys_farmer.protocol.proving import prove_audit, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.protocol.types import SlotNumber
from autonomys_farmer.protocol.verification import verify_solution
from autonomys_farmer.services.deploy.supervisord import free_port
from autonomys_farmer.services.devnet.chain import (
    AnnouncementError,
    BlockAnnouncement,
    ChainInfo,
    pre_seal_hash,
    slot_proof_of_time,
)
from autonomys_farmer.services.devnet.dev_node import AUTHOR_ALONE_AFTER_SLOTS, SLOT_HISTORY, DevNode
from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient, RpcError
from autonomys_farmer.services.transport.node_client import NodeClient

pytestmark = pytest.mark.xdist_group("archived-chain")  # one worker archives the genesis segment
PUBLIC_KEY, SECRET_KEY = reward_signing.keypair_from_entropy(bytes(range(32)))


@pytest.fixture(scope="module")
def dev_node(tmp_path_factory, archived_chain):
    base = tmp_path_factory.mktemp("dev-node") / "chain"
    shutil.copytree(archived_chain, base)
    node = DevNodeProcess(base, free_port())
    node.start()
    yield node
    node.stop()


def test_raw_json_shapes(dev_node):
    async def run():
        client = await JsonRpcClient.connect(dev_node.url)
        info = await client.call(rpc.GET_FARMER_APP_INFO)
        assert info["farmingTimeout"] == {"secs": 4, "nanos": 0}
        assert info["protocolInfo"] == {
            "historySize": 1, "maxPiecesInSector": DEV.max_pieces_in_sector, "recentSegments": 5,
            "recentHistoryFraction": [1, 10], "minSectorLifetime": 4,
        }  # fmt: skip
        assert len(info["genesisHash"]) == 64 and info["syncing"] is False
        headers = await client.call(rpc.SEGMENT_HEADERS, [[0, 1]])
        assert headers[1] is None
        genesis = headers[0]["v0"]
        assert genesis["segmentIndex"] == 0
        assert genesis["prevSegmentHeaderHash"] == "00" * 32
        # Genesis fills segment 0 and spills 6 bytes: {number 0, Partial(SIZE - 6)}.
        assert genesis["lastArchivedBlock"] == {"number": 0, "archivedProgress": {"partial": 130023418}}
        assert RECORDED_HISTORY_SEGMENT_SIZE - 6 == 130023418
        piece = await client.call(rpc.PIECE, [7])
        assert isinstance(piece, str) and len(piece) == 2 * PIECE_SIZE
        assert await client.call(rpc.PIECE, [256]) is None
        assert await client.call(rpc.ACKNOWLEDGE_ARCHIVED_SEGMENT_HEADER, [0]) is None
        assert len(await client.call(rpc.LAST_SEGMENT_HEADERS, [5])) == 1
        with pytest.raises(RpcError) as err:
            await client.call(rpc.SEGMENT_HEADERS, [list(range(1001))])
        assert err.value.code == 9001
        with pytest.raises(RpcError) as err:
            await client.call("subspace_noSuchMethod")
        assert err.value.code == -32601
        await client.close()

    asyncio.run(run())


def test_pieces_are_valid_against_segment_commitments(dev_node, compute, kzg):
    async def run():
        client = NodeClient(dev_node.url)
        (header,) = await client.all_segment_headers()
        for index in (0, 1, 128, 255):
            piece = await client.piece(index)
            assert piece is not None and is_piece_valid(compute, kzg, piece, header.segment_commitment, index)
        await client.close()

    asyncio.run(run())


def test_solutions_are_verified_as_a_node_does(dev_node, compute, kzg, archived_chain, tmp_path):
    async def run():
        client = NodeClient(dev_node.url)
        info = (await client.farmer_app_info()).protocol_info
        sid = sec.derive_sector_id(PUBLIC_KEY, 0, info.history_size)
        indices = sec.derive_sector_piece_indices(sid, 2, info)
        pieces = [await client.piece(i) for i in indices]
        plotted = plot_sector_in_memory(compute, PUBLIC_KEY, 0, info.history_size, pieces)
        view = PlottedSectorView.open(plotted.data, plotted.metadata)
        first_slot = None
        async for slot in client.slot_info():
            # Slots count from the chain's start (wall clock), which was archived before other tests ran.
            first_slot = slot.slot_number if first_slot is None else first_slot
            audit = audit_sector(
                compute, PUBLIC_KEY, slot.global_challenge, slot.voting_solution_range, plotted.data, plotted.metadata
            )
            if winning_records(view, audit):
                proofs = prove_audit(compute, kzg, PUBLIC_KEY, PUBLIC_KEY, view, audit)
                solution = await asyncio.to_thread(next, proofs)
                try:
                    await client.submit_solution_response(slot.slot_number, solution)
                    break
                except RpcError as e:
                    # A cold numba cache (first proof on a fresh clone) can miss the slot's
                    # authoring deadline; the node then ignores it and we try the next win.
                    assert "Solution was ignored" in str(e)
            assert slot.slot_number - first_slot < 400, "no winning slot"
        bad_proof = bytearray(solution.proof_of_space)
        bad_proof[3] ^= 1
        cases = {
            "InvalidProofOfSpace": dataclasses.replace(solution, proof_of_space=bytes(bad_proof)),
            "InvalidChunkWitness": dataclasses.replace(solution, chunk_witness=solution.record_witness),
            "InvalidPiece": dataclasses.replace(solution, record_witness=solution.chunk_witness),
        }
        for reason, tampered in cases.items():
            with pytest.raises(RpcError, match=reason) as err:
                await client.submit_solution_response(slot.slot_number, tampered)
            assert err.value.code == 9001
        with pytest.raises(RpcError, match="Solution was ignored"):
            await client.submit_solution_response(slot.slot_number + 1000, solution)
        await client.close()
        await peer_blocks_are_verified(solution, slot.slot_number, cases["InvalidProofOfSpace"])

    async def peer_blocks_are_verified(solution, slot, tampered):
        """A peer's authored block is adopted only with a solution that verifies here, that wins the
        block (not just a vote) and that its farmer signed for this block number and slot."""
        shutil.copytree(archived_chain, tmp_path / "follower")

        def follower(params):
            node = DevNode(tmp_path / "follower", params, compute, kzg)
            node.load_or_init()
            node.slot = slot + 3  # (re)started after the block's slot opened: it verifies that slot all the same
            return node

        def authored(solution, number=1, secret=SECRET_KEY):
            signature = reward_signing.sign(secret, PUBLIC_KEY, pre_seal_hash(slot, number, solution))
            return BlockAnnouncement(number, slot, 0, solution, signature)

        node = follower(DEV)
        distance = verify_solution(solution, slot, slot_proof_of_time(slot), DEV.voting_solution_range(), kzg,
                                   node._piece_check(solution))  # fmt: skip
        if distance > DEV.solution_range() // 2:  # most wins are votes, which author nothing
            assert await node.import_block(authored(solution)) == "its solution is a vote, not a block winner"
        # On a chain whose blocks this solution wins:
        node = follower(dataclasses.replace(DEV, expected_plotted_pieces=1, slot_probability=(1, 1)))
        announced = asyncio.create_task(anext(node.blocks.subscribe([])))
        await asyncio.sleep(0)  # subscribed
        assert "does not verify" in await node.import_block(authored(tampered))
        other_secret = reward_signing.keypair_from_entropy(bytes(32))[1]
        assert "signature does not verify" in await node.import_block(authored(solution, secret=other_secret))
        too_far = authored(solution, number=slot + 2)  # more blocks than slots since the last one
        assert await node.import_block(too_far) is None and node.best_block == 0
        block = authored(solution)
        node.slot = slot + SLOT_HISTORY + 1
        assert "not among the 16 recent slots" in await node.import_block(block) and node.best_block == 0
        node.slot = slot + 3
        assert await node.import_block(block) is None and node.best_block == 1
        assert BlockAnnouncement.from_json(await asyncio.wait_for(announced, 5)) == block  # passed on to peers
        await asyncio.sleep(0.1)  # the archiving check the new block started

    asyncio.run(run())


def test_peer_block_rules_and_chain_info(tmp_path, compute, kzg):
    """What any node refuses from a peer without looking at its state, and how it recognises its chain."""
    forced = BlockAnnouncement(7, SlotNumber(20), 14)
    assert forced.rule_broken(DEV.blocks_per_slot_interval) is None
    assert "only 3 slot(s) after its parent" in BlockAnnouncement(7, SlotNumber(20), 17).rule_broken(6)
    assert "not before" in BlockAnnouncement(7, SlotNumber(20), 20).rule_broken(6)
    assert BlockAnnouncement.from_json(forced.to_json()) == forced
    for bad in ([], {"number": 1}, {**forced.to_json(), "signature": "00" * 64}, {**forced.to_json(), "slot": -1},
                {**forced.to_json(), "number": True}):  # fmt: skip
        with pytest.raises(AnnouncementError):
            BlockAnnouncement.from_json(bad)
    node = DevNode(tmp_path, DEV, compute, kzg)
    ours = node.chain_info()
    assert ChainInfo.from_json(ours.to_json()) == ours and ours.differs_from(ours) is None
    later_start = dataclasses.replace(ours, chain_start=ours.chain_start + 5)
    assert "another start" in ours.differs_from(later_start) and ours.differs_from(later_start, clock=False) is None
    assert "not ours" in ours.differs_from(dataclasses.replace(ours, genesis_hash=bytes(32)))
    with pytest.raises(AnnouncementError):
        ChainInfo.from_json({**ours.to_json(), "chainStart": "soon"})


def test_a_node_with_peers_makes_blocks_once_it_follows_one(tmp_path, compute, kzg):
    """Restarted, a node would otherwise make blocks at heights its peers made while it was down (a fork);
    if no peer answers for a while it is the survivor and goes on alone."""
    assert DevNode(tmp_path, DEV, compute, kzg).may_author()  # a lone node
    for followed in (False, True):
        node = DevNode(tmp_path, DEV, compute, kzg, peers=("ws://127.0.0.1:9",))
        node.chain_start = time.time() - 99.5
        asyncio.run(node.new_slot())  # its first slot since it started
        assert node.slot == 100 and not node.may_author()
        if followed:
            node.adopt_height(node.chain_info())  # a peer at our height: nothing to take, but followed
            assert node.may_author() and node.best_block == 0
        node.slot = SlotNumber(100 + AUTHOR_ALONE_AFTER_SLOTS - 1)
        assert node.may_author() == followed
        node.slot = SlotNumber(100 + AUTHOR_ALONE_AFTER_SLOTS)
        assert node.may_author()


def test_restart_keeps_history_and_client_reconnects(dev_node):
    async def before():
        client = NodeClient(dev_node.url)
        return await client.all_segment_headers(), await client.piece(3)

    headers, piece = asyncio.run(before())

    async def across_restart():
        client = NodeClient(dev_node.url, backoff_max=0.5)
        slots = client.slot_info()
        first = await anext(slots)
        dev_node.stop()
        restarted = asyncio.create_task(asyncio.to_thread(dev_node.start, 60.0))
        info = await client.farmer_app_info()  # blocks until the node is back
        startup = await restarted
        later = await anext(slots)  # the subscription was re-established
        assert later.slot_number > first.slot_number
        assert info.protocol_info.history_size == len(headers)
        assert await client.all_segment_headers() == headers
        assert await client.piece(3) == piece
        assert client.reconnects >= 2
        await client.close()
        return startup

    startup = asyncio.run(across_restart())
    assert startup < 60  # no re-archiving of the genesis segment


def test_reward_signing_round_trip(tmp_path, compute, kzg):
    async def run():
        node = DevNode(tmp_path, DEV, compute, kzg)
        server = node.rpc_server()
        requests = node.reward_signing.subscribe([])

        async def answer_next_request(secret: bytes, public: bytes) -> None:
            request = RewardSigningInfo.from_json(await anext(requests))
            signature = reward_signing.sign(secret, public, request.hash)
            await server.methods[rpc.SUBMIT_REWARD_SIGNATURE](
                [RewardSignatureResponse(request.hash, signature).to_json()]
            )

        task = asyncio.create_task(answer_next_request(SECRET_KEY, PUBLIC_KEY))
        await asyncio.sleep(0)
        assert await node._request_signature(b"\x11" * 32, PUBLIC_KEY)
        await task
        # A signature by another key, or none in time, authors nothing.
        other_public, other_secret = reward_signing.keypair_from_entropy(bytes(32))
        task = asyncio.create_task(answer_next_request(other_secret, other_public))
        await asyncio.sleep(0)
        assert not await node._request_signature(b"\x22" * 32, PUBLIC_KEY)
        await task
        assert not await node._request_signature(b"\x33" * 32, PUBLIC_KEY)

    asyncio.run(run())


def test_identity_and_signing_vectors():
    assert PUBLIC_KEY.hex() == "4a50a9606f3b0c47e0582f9a2dce9da3ec59819c6e15468f6f03f07e7fcfed23"
    assert reward_signing.identity_file_bytes(bytes(range(32))).hex() == "80" + bytes(range(32)).hex()
    import sr25519

    message = b"\x42" * 32
    assert sr25519.verify(reward_signing.sign(SECRET_KEY, PUBLIC_KEY, message, b"substrate"), message, PUBLIC_KEY)
    assert reward_signing.verify(
        PUBLIC_KEY, message, bytes(sr25519.sign((PUBLIC_KEY, SECRET_KEY), message)), b"substrate"
    )
    signature = reward_signing.sign(SECRET_KEY, PUBLIC_KEY, message)
    assert reward_signing.verify(PUBLIC_KEY, message, signature)
    assert not reward_signing.verify(PUBLIC_KEY, message, signature, b"substrate")
    assert not reward_signing.verify(PUBLIC_KEY, b"\x43" * 32, signature)
    alice = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
    assert reward_signing.ss58_encode(alice) == "sufsKsx4kZ26i7bJXc1TFguysVzjkzsDtE2VDiCEBY2WjyGAj"
    assert reward_signing.ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY") == alice
    with pytest.raises(reward_signing.SigningError, match="checksum"):
        reward_signing.ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ")


if os.environ.get("AUTONOMYS_FARMER_SKIP_DEV_NODE"):
    pytestmark = pytest.mark.skip("AUTONOMYS_FARMER_SKIP_DEV_NODE is set")


def test_export_piece_writes_a_full_cache_directory_and_resumes(dev_node, compute, kzg, tmp_path):
    """`NODE_URL=http://... autonomys-export-piece`: every piece, checked against its segment commitment,
    in the piece_cache.bin format the full-piece cache opens as is; run again after losing some, it
    fetches only those; a piece that fails the check is never written."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import KZG_PARAMETERS

    from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
    from autonomys_farmer.services.storage.piece_store import PieceStore
    from autonomys_farmer.services.tools.export_piece import export_pieces

    http_url = dev_node.url.replace("ws://", "http://")
    command = Path(sys.executable).parent / "autonomys-export-piece"  # the operators' own command
    done = subprocess.run(
        [str(command), "--kzg-parameters", str(KZG_PARAMETERS), "--backend", "cpu"],
        cwd=tmp_path, env={**os.environ, "NODE_URL": http_url}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "256 pieces: 0 already there, 256 written" in done.stdout
    output = tmp_path / "full-cache-tmp"
    store = PieceStore(output, PIECE_SIZE)
    assert sorted(store.keys()) == list(range(256))
    for lost in (3, 100, 255):
        store.delete(lost)
    store.close()
    refuse_all = asyncio.run(export_pieces(http_url, output, verifier=lambda triples: [False] * len(triples)))
    assert (refuse_all.written, refuse_all.invalid) == (0, [3, 100, 255])  # a failed piece is never written

    def verifier(triples):
        return are_pieces_valid(compute, kzg, triples, os.urandom(16))

    result = asyncio.run(export_pieces(http_url, output, verifier=verifier))
    assert (result.already, result.written, result.unavailable, result.invalid) == (253, 3, [], [])

    async def commitment() -> bytes:
        node = NodeClient(dev_node.url)
        (header,) = await node.segment_headers([0])
        await node.close()
        return header.segment_commitment

    store = PieceStore(output, PIECE_SIZE)
    segment_commitment = asyncio.run(commitment())
    triples = [(Piece(store.get(i)), segment_commitment, i) for i in (0, 3, 100, 255)]
    assert are_pieces_valid(compute, kzg, triples, os.urandom(16)) == [True] * 4
    store.close()
    with pytest.raises(ValueError, match="expected http://"):
        asyncio.run(export_pieces("ftp://nowhere", output))


def test_hostile_rpc_input_is_answered_and_the_connection_lives(dev_node):
    """Valid JSON that is not a request, JSON nested past the parser, bad params of every kind: each
    gets a JSON-RPC error, never a path, a dropped connection or a dead handler."""
    import json

    import websockets

    async def run() -> None:
        async with websockets.connect(dev_node.url, max_size=None) as ws:

            async def ask(raw: str) -> dict:
                await ws.send(raw)
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

            for raw in ("[1, 2]", "5", '"x"', "null", '{"id": 1}', '{"id": [1], "method": 7}', "[" * 100_000, "{"):
                reply = await ask(raw)
                assert reply["error"]["code"] in (-32600, -32700), (raw[:20], reply)
            for bad in (-1, "abc", True, 1.5, 2**70, None, [1]):
                reply = await ask(json.dumps({"jsonrpc": "2.0", "id": 3, "method": rpc.PIECE, "params": [bad]}))
                assert reply["id"] == 3 and reply["error"]["code"] == -32602, (bad, reply)
                assert "/" not in reply["error"]["message"], reply  # no filesystem path leaks out
            reply = await ask(json.dumps({"jsonrpc": "2.0", "id": 4, "method": rpc.SEGMENT_HEADERS, "params": [["0"]]}))
            assert reply["error"]["code"] == -32602
            reply = await ask(json.dumps({"jsonrpc": "2.0", "id": 6, "method": rpc.DEV_ARCHIVING_PROGRESS}))
            assert reply["id"] == 6 and reply["result"] is None  # genesis is archived: nothing in progress
            reply = await ask(json.dumps({"jsonrpc": "2.0", "id": 5, "method": rpc.GET_FARMER_APP_INFO}))
            assert reply["id"] == 5 and reply["result"]["protocolInfo"]["historySize"] >= 1  # still serving

    asyncio.run(run())
