"""The node's farmer RPC (node-and-cluster.md §1): method names and message shapes as frozen
dataclasses with their exact JSON forms (hex without 0x, numbers for u64, camelCase fields)."""

from __future__ import annotations

from dataclasses import dataclass

from autonomys_farmer.protocol.hexjson import HexError, hex_bytes, json_uint
from autonomys_farmer.protocol.sector import FarmerProtocolInfo
from autonomys_farmer.protocol.types import SlotNumber

__all__ = ["HexError", "hex_bytes", "json_uint"]  # re-exported for RPC clients

SUBSPACE_ERROR_CODE = 9001
SOLUTION_IGNORED = "Solution was ignored"  # the dev node's answer for a slot it no longer takes: late

GET_FARMER_APP_INFO = "subspace_getFarmerAppInfo"
SUBMIT_SOLUTION_RESPONSE = "subspace_submitSolutionResponse"
SUBMIT_REWARD_SIGNATURE = "subspace_submitRewardSignature"
ACKNOWLEDGE_ARCHIVED_SEGMENT_HEADER = "subspace_acknowledgeArchivedSegmentHeader"
SEGMENT_HEADERS = "subspace_segmentHeaders"
LAST_SEGMENT_HEADERS = "subspace_lastSegmentHeaders"
PIECE = "subspace_piece"
DEV_ARCHIVING_PROGRESS = "autonomys_devArchivingProgress"  # our dev node only: the segment being archived
DEV_CHAIN_INFO = "autonomys_devChainInfo"  # our dev node only: chain, start, height (for peers)
MAX_SEGMENT_HEADERS_PER_REQUEST = 1000


@dataclass(frozen=True)
class Subscription:
    subscribe: str
    notification: str
    unsubscribe: str


SLOT_INFO = Subscription("subspace_subscribeSlotInfo", "subspace_slot_info", "subspace_unsubscribeSlotInfo")
REWARD_SIGNING = Subscription(
    "subspace_subscribeRewardSigning", "subspace_reward_signing", "subspace_unsubscribeRewardSigning"
)
ARCHIVED_SEGMENT_HEADER = Subscription(
    "subspace_subscribeArchivedSegmentHeader",
    "subspace_archived_segment_header",
    "subspace_unsubscribeArchivedSegmentHeader",
)

DEV_BLOCKS = Subscription(  # our dev node only: blocks as they are made or adopted (peers follow one chain)
    "autonomys_devSubscribeBlocks", "autonomys_devBlock", "autonomys_devUnsubscribeBlocks"
)


RpcShapeError = HexError  # the shape errors callers catch when decoding RPC items


@dataclass(frozen=True)
class FarmerAppInfo:
    genesis_hash: bytes
    dsn_bootstrap_nodes: tuple[str, ...]
    syncing: bool
    farming_timeout_secs: float
    protocol_info: FarmerProtocolInfo

    def to_json(self) -> dict[str, object]:
        secs = int(self.farming_timeout_secs)
        return {
            "genesisHash": self.genesis_hash.hex(),
            "dsnBootstrapNodes": list(self.dsn_bootstrap_nodes),
            "syncing": self.syncing,
            "farmingTimeout": {"secs": secs, "nanos": round((self.farming_timeout_secs - secs) * 1e9)},
            "protocolInfo": self.protocol_info.to_json(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> FarmerAppInfo:
        timeout = obj["farmingTimeout"]
        if not isinstance(timeout, dict):
            raise RpcShapeError(f"farmingTimeout must be {{secs, nanos}}, got {timeout!r}")
        nodes = obj.get("dsnBootstrapNodes") or []
        if not isinstance(nodes, list) or not all(isinstance(node, str) for node in nodes):
            raise RpcShapeError(f"dsnBootstrapNodes must be a list of strings, got {nodes!r}")
        protocol_info = obj["protocolInfo"]
        if not isinstance(protocol_info, dict):
            raise RpcShapeError(f"protocolInfo must be an object, got {protocol_info!r}")
        syncing = obj["syncing"]
        if not isinstance(syncing, bool):
            raise RpcShapeError(f"syncing must be true or false, got {syncing!r}")
        return cls(
            genesis_hash=hex_bytes(obj["genesisHash"], 32, "genesisHash"),
            dsn_bootstrap_nodes=tuple(nodes),
            syncing=syncing,
            farming_timeout_secs=json_uint(timeout, "secs") + json_uint(timeout, "nanos", 32) / 1e9,
            protocol_info=FarmerProtocolInfo.from_json(protocol_info),
        )


@dataclass(frozen=True)
class SlotInfo:
    slot_number: SlotNumber
    global_challenge: bytes
    solution_range: int
    voting_solution_range: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_number", SlotNumber(self.slot_number))

    def to_json(self) -> dict[str, object]:
        return {
            "slotNumber": self.slot_number,
            "globalChallenge": self.global_challenge.hex(),
            "solutionRange": self.solution_range,
            "votingSolutionRange": self.voting_solution_range,
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> SlotInfo:
        return cls(
            slot_number=SlotNumber(json_uint(obj, "slotNumber")),
            global_challenge=hex_bytes(obj["globalChallenge"], 32, "globalChallenge"),
            solution_range=json_uint(obj, "solutionRange"),
            voting_solution_range=json_uint(obj, "votingSolutionRange"),
        )


@dataclass(frozen=True)
class RewardSigningInfo:
    hash: bytes
    public_key: bytes

    def to_json(self) -> dict[str, object]:
        return {"hash": self.hash.hex(), "publicKey": self.public_key.hex()}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> RewardSigningInfo:
        return cls(hex_bytes(obj["hash"], 32, "hash"), hex_bytes(obj["publicKey"], 32, "publicKey"))


@dataclass(frozen=True)
class RewardSignatureResponse:
    hash: bytes
    signature: bytes | None

    def to_json(self) -> dict[str, object]:
        return {"hash": self.hash.hex(), "signature": None if self.signature is None else self.signature.hex()}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> RewardSignatureResponse:
        sig = obj.get("signature")
        return cls(hex_bytes(obj["hash"], 32, "hash"), None if sig is None else hex_bytes(sig, 64, "signature"))
