"""Routes of every gateway's webhooks; each backend's module owns its ``urlpatterns``."""

from django.urls import include, path

from messaging.hooks import kannel, pbx

urlpatterns = [
    path("kannel/", include(kannel.urlpatterns)),
    path("", include(pbx.urlpatterns)),
]
