"""Iraq, served at /IQ/."""

from .base import *  # noqa: F403
from .base import instance

globals().update(instance("iraq", name="Iraq", prefix="/IQ", currency="IQD"))
