"""``OTEL_POSTHOG_*`` settings for ``opentelemetry-instrument --help`` and its flags.

Registered under the ``opentelemetry_environment_variables`` entry point: the launcher
turns every ``OTEL_*`` attribute here into a flag (``--posthog_jwt_secret`` sets
``OTEL_POSTHOG_JWT_SECRET``). ``POSTHOG_API_KEY`` and ``POSTHOG_HOST`` have no ``OTEL_``
prefix, so they are environment variables only.

The launcher loads this module before it starts the app, which is the one moment our code
runs even when another distro will be selected: an ambiguous choice is reported there.
"""

from __future__ import annotations

import os
import sys

from ..core.settings import ENVIRONMENT_VARIABLES

for _name in ENVIRONMENT_VARIABLES:
    if _name.startswith("OTEL_"):
        globals()[_name] = _name


def warn_if_ambiguous() -> str | None:
    """PostHog wanted (``POSTHOG_API_KEY`` set) but another distro chosen, or none among
    several: say what to set. Returns the message printed, if any."""
    if not os.environ.get("POSTHOG_API_KEY"):
        return None
    from importlib.metadata import entry_points

    names = sorted({ep.name for ep in entry_points(group="opentelemetry_distro")})
    chosen = os.environ.get("OTEL_PYTHON_DISTRO")
    configurator = os.environ.get("OTEL_PYTHON_CONFIGURATOR")
    if chosen and chosen != "posthog":
        problem = f"OTEL_PYTHON_DISTRO={chosen} selects another distro than PostHog's"
    elif not chosen and len(names) > 1 and "posthog" in names:
        problem = (
            f"several OpenTelemetry distros are installed ({', '.join(names)}) and "
            "OTEL_PYTHON_DISTRO is not set, so opentelemetry-instrument picks one arbitrarily"
        )
    elif configurator and configurator != "posthog":
        problem = f"OTEL_PYTHON_CONFIGURATOR={configurator} skips PostHog's configurator"
    else:
        return None
    message = (
        f"otel_posthog: {problem}; unless the app calls otel_posthog.configure(), "
        "set OTEL_PYTHON_DISTRO=posthog (and OTEL_PYTHON_CONFIGURATOR=posthog) for PostHog "
        "events with identity and X-Request-ID."
    )
    print(message, file=sys.stderr)
    return message


if os.path.basename(sys.argv[0] if sys.argv else "") == "opentelemetry-instrument":
    warn_if_ambiguous()
