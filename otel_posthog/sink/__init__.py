"""The local PostHog stand-in (``otel-posthog sink``): capture endpoints, an SQLite store,
journey queries, a subset of PostHog's REST API for dashboards, and the web view."""
