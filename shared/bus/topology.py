"""Exchange, queues, delayed retries and dead letters, declared by code at start-up.

Per consuming service `svc` (queue prefix `tarjotin`):

    tarjotin.events (topic) ──binding keys──▶ tarjotin.svc (quorum)
    failed delivery ─▶ tarjotin.svc.retry.<ms> (quorum, TTL) ──expires──▶ tarjotin.svc
    after max attempts, or rejected ─▶ tarjotin.svc.dead (quorum), replayed by the admin CLI
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# A message that crashes the process before it is acked comes back; after this many deliveries
# the broker dead-letters it instead of letting it take the consumer down forever.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class QueueNames:
    main: str

    @property
    def dead(self) -> str:
        return f"{self.main}.dead"

    def retry(self, delay_ms: int) -> str:
        return f"{self.main}.retry.{delay_ms}ms"


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_consumer_queues(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    names: QueueNames,
    binding_keys: Iterable[str],
    retry_delays_ms: Iterable[int],
) -> AbstractQueue:
    """Declare a service's queue, its retry queues and dead-letter queue; bind it; return it."""
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}
    await channel.declare_queue(names.dead, durable=True, arguments=quorum)
    for delay in retry_delays_ms:
        await channel.declare_queue(
            names.retry(delay),
            durable=True,
            arguments={
                **quorum,
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.main,
            },
        )
    queue = await channel.declare_queue(
        names.main,
        durable=True,
        arguments={
            **quorum,
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.dead,
        },
    )
    for key in binding_keys:
        await queue.bind(exchange, routing_key=key)
    return queue
