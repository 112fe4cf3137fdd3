"""Results pages for marketers, under /reports/ (included from crm/urls.py)."""

from django.urls import URLPattern, path

from messaging import report_views

app_name = "reports"

urlpatterns: list[URLPattern] = [
    path("", report_views.dashboard_view, name="dashboard"),
    path("campaigns/<int:pk>/", report_views.campaign_view, name="campaign"),
    path("campaigns/<int:pk>/recompute/", report_views.recompute_view, name="recompute"),
    path("offers/<int:pk>/", report_views.offer_view, name="offer"),
    path("triggers/<int:pk>/", report_views.trigger_view, name="trigger"),
]
