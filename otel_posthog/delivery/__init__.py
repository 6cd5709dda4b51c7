"""Delivery: events to PostHog's ``/batch/``, with an optional on-disk spool.

``sender`` (the queue and its worker thread), ``policy`` (retry, backoff, spool or drop),
``poster`` (the ``/batch/`` wire format), ``spool`` (SQLite), ``before_send`` (the user's
hook). The names below are imported on first use, so importing the package loads no HTTP
client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .before_send import apply_before_send
    from .sender import EventSender
    from .spool import Spool, open_spool

# public name -> the module that defines it
_LAZY = {
    "apply_before_send": ".before_send",
    "EventSender": ".sender",
    "Spool": ".spool",
    "open_spool": ".spool",
}

__all__ = ["EventSender", "Spool", "apply_before_send", "open_spool"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module_name, __name__), name)
    globals()[name] = value
    return value
