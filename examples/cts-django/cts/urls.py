from django.urls import path

from cts.counter import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/", views.api, name="api"),
    path("hits/", views.hits, name="hits"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("counters/", views.counters, name="counters"),
]
