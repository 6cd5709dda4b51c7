"""Dashboards as code: the user-journey guide's dashboards, alerts and cohorts for PostHog.

``definitions.json`` (data a user edits) is compiled by ``definitions`` into PostHog objects,
checked against PostHog's query schema (``schema``), and applied idempotently through PostHog's
REST API (``api``, ``engine``) by ``otel-posthog dashboards`` (``commands``).
"""
