"""The ``otel-posthog`` command line.

Subcommands live in their own modules; each exposes ``add_parser(subparsers)``, which adds
one or more subparsers and sets ``func`` (``args -> exit code``) on each with
``set_defaults``. To add a subcommand, append its module to ``SUBCOMMAND_MODULES``.
Modules import their heavy dependencies inside ``func`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._version import __version__

# One module per line; each defines ``add_parser(subparsers) -> None``.
SUBCOMMAND_MODULES: list[str] = [
    "otel_posthog.sink.commands",  # sink, journey, slow, errors
    "otel_posthog.demo.command",  # demo
    "otel_posthog.receiver.cli",  # receive
    "otel_posthog.dashboards.commands",  # dashboards apply | plan | destroy | init
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-posthog",
        description="OpenTelemetry to PostHog bridge: local sink, journeys, demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-posthog`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `otel-posthog journey ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
