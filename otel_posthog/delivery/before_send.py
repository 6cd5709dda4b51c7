"""The user's ``before_send`` hook, run on events of the SDK path and the OTLP receiver alike."""

from __future__ import annotations

from ..core.mapping import Event
from ..core.settings import Settings
from ..counters import STATS


def apply_before_send(events: list[Event], settings: Settings) -> list[Event]:
    """Run the user's ``before_send`` hook: an event back (changed or not) or None to drop.

    A hook that raises is counted and its event sent unchanged.
    """
    hook = settings.before_send
    if hook is None:
        return events
    out = []
    for event in events:
        try:
            result = hook(event)
        except Exception as exc:
            STATS.error("before_send", exc)
            result = event
        if result is not None:
            out.append(result)
    return out
