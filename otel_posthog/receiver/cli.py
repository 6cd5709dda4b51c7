"""``otel-posthog receive``: serve the OTLP/HTTP traces receiver under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

DEFAULT_PORT = 4319


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "receive",
        help="OTLP/HTTP traces receiver: spans from any service become PostHog events",
        description=(
            "Accept OTLP/HTTP traces (protobuf or JSON) at /v1/traces and send PostHog "
            "events. Configured by the same environment variables as the bridge "
            "(POSTHOG_API_KEY, POSTHOG_HOST, OTEL_POSTHOG_*); OTEL_POSTHOG_RECEIVER_TOKEN "
            "requires senders to present 'Authorization: Bearer <token>'."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 4319)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without OTEL_POSTHOG_RECEIVER_TOKEN",
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=16.0, help="largest request body on the wire"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..core.settings import ConfigError, resolve_settings
    from .app import create_app

    try:
        settings = resolve_settings()
    except ConfigError as exc:
        print(f"otel-posthog receive: {exc}", file=sys.stderr)
        return 2
    if not settings.enabled:
        print("otel-posthog receive: set POSTHOG_API_KEY (events need a project)", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not settings.receiver_token and not args.insecure:
        print(
            f"otel-posthog receive: refusing to listen on {args.host} without "
            "OTEL_POSTHOG_RECEIVER_TOKEN (set it, or pass --insecure)",
            file=sys.stderr,
        )
        return 2
    max_body = int(args.max_body_mb * 1024 * 1024)
    app = create_app(settings, max_body_bytes=max_body, max_decoded_bytes=4 * max_body)
    print(
        f"otel-posthog receive: OTLP/HTTP on http://{args.host}:{args.port}/v1/traces "
        f"-> {settings.host}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on")
    return 0
