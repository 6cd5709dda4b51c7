"""Glue for ``opentelemetry-instrument``: the ``posthog`` distro and configurator, and the
environment variables the launcher lists.
"""
