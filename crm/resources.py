"""django-import-export resources: the columns of client exports (CSV/XLSX). The same column
names are what file import reads (``crm.importing.COLUMNS``)."""

from __future__ import annotations

from import_export import fields, resources

from crm.bulk import CLIENT_FILE_COLUMNS
from crm.models import Client


class ClientResource(resources.ModelResource):
    phone = fields.Field(attribute="phone", column_name="phone")
    time_zone = fields.Field(attribute="time_zone", column_name="time_zone")

    class Meta:
        model = Client
        fields = ("id", *CLIENT_FILE_COLUMNS, "source", "created_at")
        export_order = fields

    def dehydrate_phone(self, client: Client) -> str:
        return client.phone.as_e164 if client.phone else ""

    def dehydrate_time_zone(self, client: Client) -> str:
        return str(client.time_zone)
