"""The instance's celery app: ``celery -A cts worker -Q queue_<instance>`` and ``celery -A cts
beat``, each started by ctsd as a program of the instance (see ctsd's README, "Programs,
secrets and deploys"). Its settings are Django's ``CELERY_*`` ones (``cts/settings/base.py``):
the broker from ``CTS_BROKER_URL``, the instance's own queue, and the beat schedule."""

import os
import time

from celery import Celery
from celery.signals import before_task_publish

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cts.settings.local")

app = Celery("cts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@before_task_publish.connect
def record_tick_sent(sender=None, **kwargs):
    """With CTS_TICK_LOG set (a path; ``{instance}`` is replaced), every process that sends the
    periodic task ``tick`` (beat) appends ``<time> <pid>`` to it: when beat fired, whatever
    the workers did after. ctsd's end-to-end test reads it to see one send per period."""
    path = os.environ.get("CTS_TICK_LOG")
    if path and sender == "cts.counter.tasks.tick":
        with open(path.replace("{instance}", os.environ.get("CTS_INSTANCE", "")), "a") as log:
            log.write(f"{time.time():.3f} {os.getpid()}\n")
