"""The catalogue consumes no events: it is the source of institutions and offerings."""

from shared.bus import Handler

SUBSCRIPTIONS: dict[str, Handler] = {}
