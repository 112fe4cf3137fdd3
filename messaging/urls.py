"""Public pages of messaging: tracked links and one-click unsubscribe."""

from django.urls import URLPattern, path

from messaging import views

urlpatterns: list[URLPattern] = [
    path("o/<str:token>", views.tracked_link, name="messaging-link"),
    path("u/<str:token>", views.unsubscribe, name="messaging-unsubscribe"),
]
