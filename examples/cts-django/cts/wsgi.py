"""WSGI entry point: ``gunicorn --bind fd://3 --workers 1 cts.wsgi:application`` under ctsd."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cts.settings.local")

application = get_wsgi_application()
