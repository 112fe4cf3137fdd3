from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

# REST API v1: each app contributes its routes in <app>/api/urls.py.
api_v1 = [
    path("", include("crm.api.urls")),
    path("segments/", include("segments.api.urls")),
    path("", include("offers.api.urls")),
]

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("hooks/", include("messaging.hooks.urls")),
    path("card/", include("crm.card.urls")),
    path("reports/", include("messaging.report_urls")),
    path("", include("messaging.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]

# JSON 404s under /api/ (the API's one error format), Django's page elsewhere.
handler404 = "crm.api.exceptions.not_found"
