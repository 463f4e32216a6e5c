"""The RabbitMQ bus: topology, transactional outbox + relay, idempotent consumer, dead letters."""

from shared.bus.consumer import Consumer, Handler
from shared.bus.outbox import Relay, backlog, prune_published, stage, stage_with, unstage
from shared.bus.tables import add_bus_tables, add_inbox_table, add_outbox_table
from shared.bus.topology import QueueNames

__all__ = [
    "Consumer",
    "Handler",
    "QueueNames",
    "Relay",
    "add_bus_tables",
    "add_inbox_table",
    "add_outbox_table",
    "backlog",
    "prune_published",
    "stage",
    "stage_with",
    "unstage",
]
