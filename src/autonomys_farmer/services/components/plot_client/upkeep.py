"""What a plot client does for its farms besides plotting and farming slots: find sectors about to
expire (each new segment) and sign rewards for its farms' keys."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from autonomys_farmer.cluster import farming
from autonomys_farmer.cluster.messages import FarmEvent, FarmEventKind
from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.farmer_rpc import RewardSignatureResponse, RewardSigningInfo
from autonomys_farmer.protocol.sector import FarmerProtocolInfo
from autonomys_farmer.protocol.types import HistorySize, SectorIndex, SegmentIndex
from autonomys_farmer.services.storage.farm import Farm

log = logging.getLogger(__name__)


class Expiry:
    """Sectors that expire by the next segment are scheduled for replotting (`replot[farm id]`), before
    the node would refuse their solutions."""

    def __init__(
        self,
        farms: list[Farm],
        replot: dict[str, set[SectorIndex]],
        commitments: Callable[[Iterable[SegmentIndex]], Awaitable[Mapping[SegmentIndex, bytes]]],
        farm_event: Callable[[FarmEvent], Awaitable[None]],
    ) -> None:
        self.farms = farms
        self.replot = replot
        self.commitments = commitments
        self.farm_event = farm_event

    async def check(self, current_segment: SegmentIndex, info: FarmerProtocolInfo) -> None:
        sectors = {
            (farm, SectorIndex(int(index))): farming.PlottedSector(
                farm.sectors_in_memory.sector_id(index), HistorySize(int(farm.sectors_in_memory.history_sizes[index]))
            )
            for farm in self.farms
            for index in farm.plotted_indices()
        }
        segments = farming.expiry_check_segments(sectors.values(), info.min_sector_lifetime)
        commitments = await self.commitments(segments)
        for farm, index in farming.sectors_to_replot(sectors, commitments, current_segment, info.min_sector_lifetime):
            if index in self.replot[farm.id]:
                continue
            log.info("farm %s: sector %d expires by the next segment: replotting", farm.id[:8], index)
            self.replot[farm.id].add(index)
            await self.farm_event(FarmEvent(farm.id, FarmEventKind.REPLOTTING, index))


class RewardSigner:
    """Signs a reward-signing request for a key of one of its farms (sr25519, context subspace_reward)."""

    def __init__(self, farms: list[Farm], send: Callable[[RewardSignatureResponse], Awaitable[None]]) -> None:
        self.farms = farms
        self.send = send

    async def on_request(self, info: RewardSigningInfo) -> None:
        for farm in self.farms:
            if farm.public_key == info.public_key:
                signature = reward_signing.sign(farm.secret_key, farm.public_key, info.hash)
                await self.send(RewardSignatureResponse(info.hash, signature))
                return
