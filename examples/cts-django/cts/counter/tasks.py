"""Celery tasks, each recording in the database of the instance whose worker ran it.

    record(sent_by)   a counter ``task:<sent_by>@<ran in>``: the web view ``/enqueue/`` of
                      instance ``sent_by`` sends it; the worker that runs it adds its own
                      instance (``CTS_INSTANCE``), so a task run by another instance's worker
                      shows as ``task:iraq@jordan`` (in jordan's database)
    tick()            one ``Tick`` row per run: what beat sends every CTS_BEAT_SECONDS; two
                      beats alive at once would send it twice per period
"""

import os

from celery import shared_task
from django.db.models import F

from .models import Counter, Tick


@shared_task
def record(sent_by):
    name = f"task:{sent_by}@{os.environ.get('CTS_INSTANCE', '?')}"
    # Two workers may create the row at once: get_or_create copes with that.
    Counter.objects.get_or_create(name=name, defaults={"value": 0})
    Counter.objects.filter(name=name).update(value=F("value") + 1)


@shared_task
def tick():
    Tick.objects.create(pid=os.getpid())
