from django.db import models


class Counter(models.Model):
    """A named counter in the instance's own database; the home page counts ``visits``."""

    name = models.CharField(max_length=50, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.name}={self.value}"


class Tick(models.Model):
    """One run of the periodic task ``tick`` that beat sends (see ``tasks.py``)."""

    at = models.DateTimeField(auto_now_add=True)
    pid = models.IntegerField()
