"""offers' routes in /api/v1/ (included by crm/urls.py)."""

from django.urls import path

from offers.api import views

urlpatterns = [
    path("offers/", views.OfferListView.as_view(), name="offer-list"),
    path("clients/<int:pk>/offers/", views.ClientOffersView.as_view(), name="client-offers"),
    path("promo-codes/redeem/", views.PromoRedeemView.as_view(), name="promo-code-redeem"),
]
