"""crm's routes in /api/v1/ (included by crm/urls.py)."""

from django.urls import path

from crm.api import views

urlpatterns = [
    path("clients/", views.ClientListView.as_view(), name="client-list"),
    path("clients/bulk/", views.ClientBulkView.as_view(), name="client-bulk"),
    path("clients/<int:pk>/", views.ClientCardView.as_view(), name="client-card"),
    path("products/", views.ProductListView.as_view(), name="product-list"),
    path("products/bulk/", views.ProductBulkView.as_view(), name="product-bulk"),
    path("purchases/", views.PurchaseListView.as_view(), name="purchase-list"),
    path("purchases/bulk/", views.PurchaseBulkView.as_view(), name="purchase-bulk"),
    path("events/bulk/", views.EventBulkView.as_view(), name="event-bulk"),
    path("consents/bulk/", views.ConsentBulkView.as_view(), name="consent-bulk"),
]
