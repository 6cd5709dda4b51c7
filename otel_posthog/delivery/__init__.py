"""Delivery: events to PostHog's ``/batch/``, with an optional on-disk spool.

``sender`` (the queue and its worker thread), ``policy`` (retry, backoff, spool or drop),
``poster`` (the ``/batch/`` wire format), ``spool`` (SQLite), ``before_send`` (the user's
hook). Callers import the module they need; importing the package loads no HTTP client.
"""
