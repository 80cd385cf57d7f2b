from django.apps import AppConfig


class CounterConfig(AppConfig):
    name = "cts.counter"
    label = "counter"
    verbose_name = "Visit counter"
