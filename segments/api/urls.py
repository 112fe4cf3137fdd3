"""segments' routes in /api/v1/segments/ (included by crm/urls.py)."""

from django.urls import path

from segments.api import views

urlpatterns = [
    path("", views.SegmentListView.as_view(), name="segment-list"),
    path("fields/", views.FieldsView.as_view(), name="segment-fields"),
    path("preview/", views.PreviewView.as_view(), name="segment-preview"),
    path("<int:pk>/", views.SegmentDetailView.as_view(), name="segment-detail"),
    path("<int:pk>/count/", views.SegmentCountView.as_view(), name="segment-count"),
    path("<int:pk>/members/", views.SegmentMembersView.as_view(), name="segment-members"),
]
