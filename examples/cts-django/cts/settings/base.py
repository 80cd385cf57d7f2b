"""Settings shared by every CTS instance. An instance module (``turkey``, ``iraq``, ``jordan``,
``local``) star-imports this one and adds only what differs, through :func:`instance`.

Read from the environment (an unset or empty variable means the default):

ctsd sets these for each worker (see ctsd's worker contract):
    CTS_INSTANCE        the instance key; CTS_INSTANCE_NAME, CTS_PREFIX and CTS_CURRENCY
                        override the instance module's name, URL prefix and currency only
                        when CTS_INSTANCE names that same instance
    CTS_INSTANCE_NAME   display name
    CTS_PREFIX          URL prefix (``/JO``), becomes FORCE_SCRIPT_NAME
    CTS_CURRENCY        three-letter currency code
    CTS_ENVIRONMENT     dev | staging | production (shown, not acted on)

the deployment sets these:
    CTS_DB_HOST         PostgreSQL host name, IP address or socket directory. When set, the
                        instance uses PostgreSQL; otherwise SQLite.
    CTS_DB_PORT         PostgreSQL port (default: libpq's, 5432)
    CTS_DB_USER         PostgreSQL user (default: libpq's, the OS user)
    CTS_DB_PASSWORD     PostgreSQL password (default: none)
    CTS_DB_NAME         PostgreSQL database name; ``{instance}`` is replaced by the instance key
                        (default ``cts_{instance}``: cts_turkey, cts_iraq, cts_jordan)
    CTS_DATA_DIR        directory of the SQLite files ``<instance>.sqlite3`` (default: ``var/``
                        beside manage.py); created when missing
    CTS_ALLOWED_HOSTS   comma-separated host names accepted besides 127.0.0.1, localhost, [::1]
    CTS_SECRET_KEY      Django's SECRET_KEY (default: an insecure example key)
    CTS_DEBUG           ``1`` turns DEBUG on
    CTS_BROKER_URL      celery's broker (``redis://127.0.0.1:6379/0``); each instance has its
                        own queue ``queue_<instance>`` on it (default: ``memory://``, no worker)
    CTS_BEAT_SECONDS    the period of the periodic task ``tick`` (default 60)
    CTS_MEMCACHED       ``host:port`` of memcached: the cache, with KEY_PREFIX the instance key
                        (default: a local memory cache)
"""

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def env(name, default=""):
    """The variable's value, or ``default`` when it is unset or empty."""
    return os.environ.get(name) or default


SECRET_KEY = env("CTS_SECRET_KEY", "insecure-cts-example-key-do-not-use-in-production")
DEBUG = env("CTS_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"] + [
    host.strip() for host in env("CTS_ALLOWED_HOSTS").split(",") if host.strip()
]
CTS_ENVIRONMENT = env("CTS_ENVIRONMENT", "production")

# Behind nginx. nginx proxies the full path (/JO/...) to the instance's port and passes the
# client's Host header (`proxy_set_header Host $http_host`), so Django needs no
# X-Forwarded-Host. Only the scheme comes from a header: nginx overwrites X-Forwarded-Proto, and
# the instance ports are bound on 127.0.0.1, so no client can set it directly.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = ["cts.counter"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "cts.urls"
WSGI_APPLICATION = "cts.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Everything to stdout: ctsd captures the workers' stdout and stderr into
# <log_dir>/<instance>/output.log. (logging's StreamHandler flushes each record, so a pipe's
# block buffering does not hold lines back.)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{levelname} {name} [{process}] {message}", "style": "{"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
}


def databases(key):
    """DATABASES for instance ``key``: PostgreSQL ``cts_<key>`` when CTS_DB_HOST is set, else
    the SQLite file ``<CTS_DATA_DIR>/<key>.sqlite3``."""
    host = env("CTS_DB_HOST")
    if host:
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": env("CTS_DB_NAME", "cts_{instance}").replace("{instance}", key),
                "HOST": host,
                "PORT": env("CTS_DB_PORT"),
                "USER": env("CTS_DB_USER"),
                "PASSWORD": env("CTS_DB_PASSWORD"),
            }
        }
    data_dir = Path(env("CTS_DATA_DIR", str(PROJECT_DIR / "var")))
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": data_dir / f"{key}.sqlite3",
            # Several workers write to the file: take the write lock at BEGIN and wait for it.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    }


CELERY_BROKER_URL = env("CTS_BROKER_URL", "memory://")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False


def caches(key):
    """CACHES for instance ``key``: memcached at CTS_MEMCACHED with the key as KEY_PREFIX (one
    memcached serves every instance), else a local memory cache."""
    location = env("CTS_MEMCACHED")
    if location:
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": location,
                "KEY_PREFIX": key,
            }
        }
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def instance(key, *, name, prefix, currency):
    """The settings that differ between instances, as a dict for the instance module's
    ``globals().update(...)``. When ctsd started this process for the same instance
    (CTS_INSTANCE == key), its CTS_INSTANCE_NAME, CTS_PREFIX and CTS_CURRENCY win: the instance
    list that ctsd reads is the one source of truth."""
    if os.environ.get("CTS_INSTANCE") == key:
        name = env("CTS_INSTANCE_NAME", name)
        prefix = os.environ.get("CTS_PREFIX", prefix)
        currency = env("CTS_CURRENCY", currency)
    prefix = prefix.rstrip("/")
    queue = f"queue_{key}"
    return {
        # The instance's own queue: its web sends there, its worker (-Q queue_<key>) reads it.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_BEAT_SCHEDULE": {
            "tick": {
                "task": "cts.counter.tasks.tick",
                "schedule": float(env("CTS_BEAT_SECONDS", "60")),
                "options": {"queue": queue},
            },
        },
        "CACHES": caches(key),
        "INSTANCE": key,
        "INSTANCE_NAME": name,
        "URL_PREFIX": prefix,
        "CURRENCY": currency,
        # The prefix is the script name whatever the server says: reverse() carries it in
        # requests (WSGI and ASGI alike) and in management commands; under ASGI Django also
        # strips it from the request path itself. Under gunicorn, the SCRIPT_NAME variable that
        # ctsd sets makes gunicorn strip it from PATH_INFO.
        "FORCE_SCRIPT_NAME": prefix or None,
        "DATABASES": databases(key),
    }
