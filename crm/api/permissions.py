"""API permissions from the staff groups (``crm.roles``): each view names the permissions it
needs (``required_perms``); reading needs ``view_*``, bulk writing ``crm.api_write`` plus the
model's ``add_*`` (the Integration group)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class HasViewPerms(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.has_perms(getattr(view, "required_perms", ()))
