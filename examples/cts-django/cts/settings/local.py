"""The development instance (`ctsd --env dev`, `manage.py runserver`): no URL prefix."""

from .base import *  # noqa: F403
from .base import instance

globals().update(instance("local", name="Local", prefix="", currency="XXX"))
