"""The pure core: a neutral span view becomes PostHog events.

No OpenTelemetry SDK, no I/O: every rule about which span makes which event, the person,
session and request id of an event, header and UUID rules, secret scrubbing and settings.
Both the in-process SDK adapter (``otel_posthog.sdk``) and the OTLP receiver build on it.
"""
