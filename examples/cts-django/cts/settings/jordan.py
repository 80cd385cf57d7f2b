"""Jordan, served at /JO/."""

from .base import *  # noqa: F403
from .base import instance

globals().update(instance("jordan", name="Jordan", prefix="/JO", currency="JOD"))
