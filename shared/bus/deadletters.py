"""List and replay dead-lettered events.

    python -m shared.bus.deadletters list   --service billing
    python -m shared.bus.deadletters replay --service billing [--id EVENT_ID ...]

`list` leaves the queue as it was; `replay` moves the chosen messages (all when no --id is given)
back to the service's queue with the attempt count reset, each acked from the dead-letter queue
only after the broker confirmed the re-publish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aio_pika

from shared.bus.consumer import ATTEMPT_HEADER
from shared.bus.topology import QueueNames


async def _drain(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name, ensure=True)
    messages = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        messages.append(message)
    return messages


def _describe(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    try:
        body = json.loads(message.body)
    except ValueError:
        body = {}
    headers = message.headers or {}
    return {
        "event_id": message.message_id,
        "type": body.get("type"),
        "subject": body.get("subject"),
        "attempts": headers.get(ATTEMPT_HEADER),
        "error": headers.get("x-error"),
    }


async def list_dead(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Describe every dead letter of a queue without removing any."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        messages = await _drain(channel, QueueNames(queue).dead)
        described = [_describe(m) for m in messages]
        for message in messages:
            await message.nack(requeue=True)
    return described


async def replay_dead(amqp_url: str, queue: str, event_ids: set[str] | None = None) -> int:
    """Move dead letters (all, or those with the given event ids) back to the queue. Returns count."""
    names = QueueNames(queue)
    replayed = 0
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for message in await _drain(channel, names.dead):
            if event_ids is not None and message.message_id not in event_ids:
                await message.nack(requeue=True)
                continue
            headers = {k: v for k, v in (message.headers or {}).items() if k not in {ATTEMPT_HEADER, "x-error"}}
            headers["x-replayed"] = True
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=headers,
                    message_id=message.message_id,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    timestamp=message.timestamp,
                ),
                routing_key=names.main,
                mandatory=True,
            )
            await message.ack()
            replayed += 1
    return replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deadletters", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--service", required=True, choices=["catalogue", "enrolment", "billing", "reporting"])
    parser.add_argument("--id", action="append", dest="ids", help="event id to replay (repeatable)")
    parser.add_argument("--amqp-url", default=os.environ.get("TARJOTIN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--queue-prefix", default=os.environ.get("TARJOTIN_QUEUE_PREFIX", "tarjotin"))
    args = parser.parse_args(argv)
    queue = f"{args.queue_prefix}.{args.service}"
    if args.command == "list":
        for entry in asyncio.run(list_dead(args.amqp_url, queue)):
            print(json.dumps(entry, default=str))
        return 0
    count = asyncio.run(replay_dead(args.amqp_url, queue, set(args.ids) if args.ids else None))
    print(f"replayed {count} dead letter(s) to {queue}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
