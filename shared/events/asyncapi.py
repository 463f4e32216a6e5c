"""The AsyncAPI 3.0 document for partners, generated from the event catalogue.

python -m shared.events.asyncapi > docs/asyncapi.json
"""

from __future__ import annotations

import json
from typing import Any

from shared.events import CATALOGUE, Envelope, EventData

EXCHANGE = "tarjotin.events"


def _message_name(model: type[EventData]) -> str:
    return model.__name__


def document() -> dict[str, Any]:
    """Channels (one per routing key on the topic exchange), messages, and CloudEvents payload schemas."""
    envelope = Envelope.model_json_schema()
    envelope_props = {k: v for k, v in envelope["properties"].items() if k != "data"}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for model in CATALOGUE:
        name = _message_name(model)
        data_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in data_schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[name] = data_schema
        messages[name] = {
            "name": model.type_name(),
            "title": name,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "payload": {
                "type": "object",
                "required": [
                    "specversion",
                    "id",
                    "source",
                    "type",
                    "subject",
                    "time",
                    "correlationid",
                    "sequence",
                    "data",
                ],
                "properties": {
                    **envelope_props,
                    "type": {"type": "string", "const": model.type_name()},
                    "data": {"$ref": f"#/components/schemas/{name}"},
                },
            },
        }
        channel = model.name.replace(".", "_")
        channels[channel] = {
            "address": model.name,
            "description": f"Routing key `{model.name}` on the durable topic exchange `{EXCHANGE}`.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
                }
            },
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"Subscribe to {model.type_name()} (bind a queue of yours to `{model.name}`).",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tarjotin events",
            "version": "1.0.0",
            "description": "Integration events of the Tarjotin course tray, CloudEvents 1.0 in structured JSON "
            "mode with `correlationid` and `sequence` (per-aggregate version). Delivery is at least once, in "
            "any order: deduplicate by `id`, order by `sequence`. No personal data: students are `student_ref`.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {"local": {"host": "127.0.0.1:5672", "protocol": "amqp", "description": "local run"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True, default=str))
