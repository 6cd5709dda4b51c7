"""The in-process OpenTelemetry SDK adapter: processor, exporter and propagators over one
bridge object (``pipeline.Pipeline``), the public API's process state, and the framework
layers that put ``X-Request-ID`` on responses.
"""
