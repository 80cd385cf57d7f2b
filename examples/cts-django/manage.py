#!/usr/bin/env python
"""Django's command-line utility for the CTS example.

Run it as an instance's workers run, with the virtualenv's python (the one that has Django):
    ctsctl --config ctsd.yaml run jordan -- ../../target/e2e/venv/bin/python manage.py migrate
(ctsctl run sets DJANGO_SETTINGS_MODULE=cts.settings.jordan and the rest of the worker
environment). Without DJANGO_SETTINGS_MODULE, the development instance `local` (no URL
prefix) is used.
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cts.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
