"""REST API of segments (serializers, views, urls)."""
