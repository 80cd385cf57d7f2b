"""ASGI entry point: ``uvicorn --fd 3 cts.asgi:application`` under ctsd."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cts.settings.local")

application = get_asgi_application()
