"""Messaging's periodic tasks, upserted into django-celery-beat by ``manage.py setup_schedules``."""

from django.utils.translation import gettext_lazy as _

from crm.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="messaging: dispatch due messages",
        task="messaging.tasks.dispatch.dispatch_messages",
        crontab={},
        queue="messaging",
        description=_(
            "Every minute: sends the messages whose time has come, re-checking consent, expiry "
            "and quiet hours; settles messages left by a crashed worker."
        ),
    ),
    Schedule(
        name="messaging: evaluate trigger scenarios",
        task="messaging.tasks.triggers.evaluate_triggers",
        crontab={"minute": "*/15"},
        queue="messaging",
        description=_(
            "Every 15 minutes: finds the clients each active trigger scenario fires for "
            "(abandoned cart, birthday, win-back...), stops follow-ups of clients who bought, "
            "and plans the messages under the contact policy."
        ),
    ),
    Schedule(
        name="messaging: attribute purchases to messages",
        task="messaging.tasks.results.recompute_attribution",
        crontab={"minute": "30", "hour": "3"},
        queue="messaging",
        description=_(
            "Nightly: credits the purchases of the last weeks to the last message (or control "
            "record) that reached the client within the offer's window, for the results reports."
        ),
    ),
    Schedule(
        name="messaging: apply waiting gateway events",
        task="messaging.tasks.gateways.gateway_events_sweep_task",
        crontab={},
        queue="messaging",
        description=_(
            "Every minute: applies delivery reports and inbound SMS that arrived before their "
            "message was recorded as sent, or while the broker was down."
        ),
    ),
    Schedule(
        name="messaging: apply waiting call events",
        task="messaging.tasks.calls.call_events_sweep_task",
        crontab={},
        queue="messaging",
        description=_(
            "Every minute: applies call events (answered, digits, ended) that are still waiting, "
            "and closes calls a crashed dialer left open."
        ),
    ),
]
