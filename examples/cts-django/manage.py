#!/usr/bin/env python
"""Django's command-line utility for the CTS example.

Pick the instance with DJANGO_SETTINGS_MODULE (ctsd sets it for its workers):
    DJANGO_SETTINGS_MODULE=cts.settings.jordan python manage.py migrate
Without it, the development instance `local` (no URL prefix) is used.
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cts.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
