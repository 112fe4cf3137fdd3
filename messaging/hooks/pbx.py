"""Webhooks: see messaging/hooks/urls.py."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
