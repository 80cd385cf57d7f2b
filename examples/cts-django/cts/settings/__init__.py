"""Settings, one module per instance: ``cts.settings.<instance key>``.

``base`` holds everything; each instance module (``turkey``, ``iraq``, ``jordan``, and ``local`` for
development) only names its instance and calls :func:`cts.settings.base.instance`. ctsd starts every
worker with ``DJANGO_SETTINGS_MODULE=cts.settings.<key>``.
"""
