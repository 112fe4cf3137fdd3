"""REST API of crm (serializers, views, urls)."""
