"""Turkey, served at /TR/."""

from .base import *  # noqa: F403
from .base import instance

globals().update(instance("turkey", name="Turkey", prefix="/TR", currency="TRY"))
