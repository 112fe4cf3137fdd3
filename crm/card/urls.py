"""The operator's card, mounted at /card/."""

from django.urls import URLPattern, path
from django.views.generic import RedirectView

from crm.card import views

app_name = "card"

urlpatterns: list[URLPattern] = [
    path("", RedirectView.as_view(pattern_name="card:search", permanent=False), name="index"),
    path("search", views.search, name="search"),
    path("queue/", views.queue, name="queue"),
    path("queue/<int:request_id>/take", views.take, name="take"),
    path("extension", views.extension, name="extension"),
    path("incoming.json", views.incoming, name="incoming"),
    path("<int:client_id>/", views.card, name="card"),
    path("<int:client_id>.json", views.card_json, name="card-json"),
    path("<int:client_id>/offers", views.offers, name="offers"),
    path("<int:client_id>/offers.json", views.offers_json, name="offers-json"),
    path("<int:client_id>/outcome", views.outcome, name="outcome"),
    path("<int:client_id>/consent", views.consent, name="consent"),
    path("<int:client_id>/send-offer", views.send_offer, name="send-offer"),
    path("<int:client_id>/call", views.call, name="call"),
]
