"""Celery tasks of messaging (thin wrappers over ``messaging.services``), one module per area.

Celery's autodiscovery imports this package; each module registers its tasks on import.
"""

from messaging.tasks import calls, campaigns, dispatch, gateways, results, triggers  # noqa: F401
