"""Tasks: see messaging/tasks/__init__.py."""
