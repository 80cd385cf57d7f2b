"""CTS, reduced to what ctsd's end-to-end test needs: one settings module per country instance,
a celery app (when celery is installed) with a task and a periodic task."""

try:
    from .celery import app as celery_app
except ImportError:  # celery is optional: the web pages do not need it
    celery_app = None

__all__ = ["celery_app"]
