from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

# REST API v1: each app contributes its routes in <app>/api/urls.py.
api_v1 = [
    path("", include("crm.api.urls")),
    path("segments/", include("segments.api.urls")),
]

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
