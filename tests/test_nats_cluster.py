"""A 3-server NATS cluster with JetStream replicated 3 ways: losing one server loses no plot job, no
shard map and no request/reply path (the cluster's control plane keeps working)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import subjects
from autonomys_farmer.protocol.sector import FarmerProtocolInfo
from autonomys_farmer.protocol.types import HistorySize, SectorIndex
from autonomys_farmer.services.devnet.dev import DevLayout
from autonomys_farmer.services.transport.nats_bus import Bus, retry_forever


@dataclass(frozen=True)
class Ping:
    text: str


PING = subjects.Request("test.ping", Ping, Ping, "q")


async def eventually(action: Callable[[], Awaitable[object]], timeout: float = 30.0) -> None:
    """Retry while the new cluster elects JetStream leaders (meta, then each stream's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_jetstream_state_survives_losing_one_of_three_servers(tmp_path: Path) -> None:
    layout = DevLayout(tmp_path, nats_servers=3, nats_auth=False)  # replication, not roles, is tested here
    urls = layout.nats_urls

    async def run() -> None:
        async with layout.supervisord(layout.nats_programs()) as supervisor:
            producer = await Bus.connect([urls[0]], "producer")
            consumer = await Bus.connect(urls, "consumer")
            try:
                assert producer.clustered_server  # from its server's INFO, whether or not its routes are up yet
                assert await producer.replicas_for_new_state() == 3  # discovered the other two from the first
                await eventually(
                    lambda: producer.create_state((subjects.MEMBERS, subjects.SHARDS), subjects.PLOT_JOBS, 60.0)
                )
                assert (await producer.js.stream_info(subjects.PLOT_JOBS.stream)).config.num_replicas == 3
                shard_map = m.ShardMap("sharded-cache.piece", (m.ShardMember("a", "127.0.0.1:1"),))
                await eventually(lambda: producer.kv_put(subjects.SHARDS, shard_map.group, shard_map))
                info = FarmerProtocolInfo(HistorySize(1), 8, 5, (1, 10), 4)
                jobs = [
                    m.PlotJob(f"{i:032x}", "01JDV2K3M4N5P6Q7R8S9T0VWXY", bytes(32), SectorIndex(i), 8, info)
                    for i in range(3)
                ]
                for job in jobs:
                    await eventually(lambda job=job: producer.enqueue(subjects.PLOT_JOBS, job, job.job_id))

                async def answer(ping: Ping) -> Ping:
                    return Ping("pong:" + ping.text)

                await consumer.serve(PING, answer)
                await producer.nc.flush()

                await supervisor.down("nats-server-0")  # the producer's own server, lost
                await asyncio.sleep(1.0)

                after = await Bus.connect(urls[1:], "after")
                assert await after.request(PING, Ping("1"), timeout=2, deadline=20) == Ping("pong:1")
                stored = await asyncio.wait_for(
                    retry_forever("shard map", lambda: after.kv_get(subjects.SHARDS, shard_map.group)), 60
                )
                assert stored == shard_map
                # The stream may be electing a new leader (its old one died with the server): retry as the
                # plot server does.
                subscription = await asyncio.wait_for(after.work_queue_consumer(subjects.PLOT_JOBS), 60)
                received = []
                deadline = time.monotonic() + 60
                while len(received) < len(jobs) and time.monotonic() < deadline:
                    try:
                        for msg in await subscription.fetch(len(jobs) - len(received), timeout=5):
                            received.append(subjects.PLOT_JOBS.codec.decode(msg.data))
                            await msg.ack()
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                assert sorted(j.job_id for j in received) == [j.job_id for j in jobs]
                await after.close()
            finally:
                for bus in (producer, consumer):
                    try:
                        await asyncio.wait_for(bus.nc.close(), 5)
                    except Exception:
                        pass

    asyncio.run(run())
