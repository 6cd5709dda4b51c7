"""The Django project set up in code: ``configure()`` plus Django's instrumentor, then the
WSGI application (``runserver`` finds it through ``WSGI_APPLICATION``)."""

import os

from django.core.wsgi import get_wsgi_application
from opentelemetry.instrumentation.django import DjangoInstrumentor

import otel_posthog

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")
otel_posthog.configure()
DjangoInstrumentor().instrument()
application = get_wsgi_application()
