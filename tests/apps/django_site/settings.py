"""A minimal Django project (no database) for the framework tests."""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["tests.apps.django_site.urls.own_request_id"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None
WSGI_APPLICATION = "tests.apps.django_site.wsgi_configured.application"  # runserver's
