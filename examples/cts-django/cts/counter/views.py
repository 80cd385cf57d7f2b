"""The instance's home page, its JSON twin and the page its link points to.

    /          HTML: name, currency, a reverse()d link, the visit counter (counts this visit)
    /?format=json, /api/
               the same as JSON (counts this visit)
    /hits/     JSON, the same fields without counting a visit (the link's target)
    /enqueue/  sends the celery task ``record`` (see tasks.py); JSON {"sent": task id}
    /counters/ JSON: every counter of the instance's database, the ticks (times of the
               periodic task's runs), and what the cache holds under a fixed key

JSON fields: instance, name, currency, prefix, environment, link (reverse("hits"), which
carries the prefix: /JO/hits/), absolute_link (request.build_absolute_uri(link)), count,
database (the database actually connected to: PostgreSQL's current_database() or the SQLite
file), vendor (postgresql or sqlite), pid (of the process that answered).
"""

import logging
import os

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.html import format_html

from .models import Counter, Tick

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CTS {name}</title></head>
<body>
<h1>CTS {name}</h1>
<p>Instance <code>{instance}</code> ({environment}), currency <strong id="currency">{currency}</strong>.</p>
<p>Visits: <strong id="count">{count}</strong> &middot; <a id="link" href="{link}">{link}</a></p>
<p>Database {vendor} <code>{database}</code>, answered by pid {pid}.</p>
</body></html>
"""


def count_visit():
    """Adds one to the ``visits`` counter in one statement and returns the new value (which may
    include concurrent visits)."""
    if not Counter.objects.filter(name="visits").update(value=F("value") + 1):
        Counter.objects.get_or_create(name="visits", defaults={"value": 0})
        Counter.objects.filter(name="visits").update(value=F("value") + 1)
    return Counter.objects.get(name="visits").value


def current_count():
    counter = Counter.objects.filter(name="visits").first()
    return counter.value if counter else 0


def database_used():
    """What the connection is really attached to, not what the settings say."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT current_database()")
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA database_list")
            return next(row[2] for row in cursor.fetchall() if row[1] == "main")
    return str(connection.settings_dict["NAME"])


def info(request, count):
    link = reverse("hits")
    return {
        "instance": settings.INSTANCE,
        "name": settings.INSTANCE_NAME,
        "currency": settings.CURRENCY,
        "prefix": settings.URL_PREFIX,
        "environment": settings.CTS_ENVIRONMENT,
        "link": link,
        "absolute_link": request.build_absolute_uri(link),
        "count": count,
        "database": database_used(),
        "vendor": connection.vendor,
        "pid": os.getpid(),
    }


def home(request):
    data = info(request, count_visit())
    log.info("%s: visit %d", data["instance"], data["count"])
    if request.GET.get("format") == "json":
        return JsonResponse(data)
    return HttpResponse(format_html(PAGE, **data))


def api(request):
    data = info(request, count_visit())
    log.info("%s: visit %d", data["instance"], data["count"])
    return JsonResponse(data)


def hits(request):
    return JsonResponse(info(request, current_count()))


def enqueue(request):
    from .tasks import record

    result = record.delay(settings.INSTANCE)
    return JsonResponse({"sent": result.id, "instance": settings.INSTANCE})


def counters(request):
    from django.core.cache import cache

    # The cache is the instance's: KEY_PREFIX keeps one memcached shared by every instance apart.
    cache.add("owner", settings.INSTANCE, timeout=None)
    return JsonResponse(
        {
            "instance": settings.INSTANCE,
            "counters": {c.name: c.value for c in Counter.objects.all()},
            "ticks": [t.at.timestamp() for t in Tick.objects.order_by("at")],
            "cache_owner": cache.get("owner"),
            "cache_backend": settings.CACHES["default"]["BACKEND"],
        }
    )
