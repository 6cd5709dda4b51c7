"""The demo: the ``otel-posthog demo`` command (:mod:`.command`) and the example app it runs
(:mod:`.fastapi_app`: the API, its page with posthog-js, a local OpenAI-compatible model).

Shipped in the package, so ``pip install 'otel-posthog[demo]'`` and ``otel-posthog demo``
work outside a clone. Importing this package loads nothing else.
"""
