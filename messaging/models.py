"""Messaging: contact policy, campaigns, trigger scenarios and the outbox of messages.

Rows here are written by ``messaging/services.py`` only (planning, dispatch, webhooks); the admin
and tasks call those services. The outbox ``Message`` carries a unique idempotency key per
(campaign run or trigger firing, client, channel), which is what makes planning safe to repeat.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from crm.models import Channel, TimeStamped

MARKETING_CHANNELS = [Channel.SMS, Channel.CALL, Channel.EMAIL]


# Contact policy ---------------------------------------------------------------------------------


class ContactPolicy(TimeStamped):
    """Caps, gaps and quiet hours. One policy is active; offers may override parts of it."""

    name = models.CharField(_("name"), max_length=150, unique=True)
    is_active = models.BooleanField(
        _("active"), default=False, help_text=_("Only one policy can be active at a time.")
    )
    total_limit = models.PositiveSmallIntegerField(
        _("all channels: at most"),
        default=3,
        help_text=_("Marketing messages per client across all channels in the window."),
    )
    total_window_days = models.PositiveSmallIntegerField(_("all channels: window, days"), default=7)
    min_gap_hours = models.PositiveSmallIntegerField(
        _("minimum gap, hours"),
        default=24,
        help_text=_("Least time between two marketing messages to one client, any channel."),
    )
    morning_start = models.TimeField(_("morning starts"), default=dt.time(9, 0))
    afternoon_start = models.TimeField(_("afternoon starts"), default=dt.time(12, 0))
    evening_start = models.TimeField(
        _("evening starts"),
        default=dt.time(18, 0),
        help_text=_("Also the start of 'evening after work' for campaigns that target it."),
    )
    learn_preferred_time = models.BooleanField(
        _("learn preferred time from purchases"),
        default=True,
        help_text=_(
            "When a client has not set a preferred part of the day, use the part in which "
            "they buy most often."
        ),
    )

    class Meta:
        verbose_name = _("contact policy")
        verbose_name_plural = _("contact policies")
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_contact_policy"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ChannelRule(models.Model):
    """Per-channel cap and quiet hours (local time of the client) of a policy."""

    policy = models.ForeignKey(
        ContactPolicy, on_delete=models.CASCADE, related_name="channel_rules"
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    limit = models.PositiveSmallIntegerField(_("at most"), default=2)
    window_days = models.PositiveSmallIntegerField(_("window, days"), default=7)
    weekday_start = models.TimeField(_("weekdays from"), default=dt.time(9, 0))
    weekday_end = models.TimeField(_("weekdays until"), default=dt.time(21, 0))
    weekend_start = models.TimeField(_("weekends from"), default=dt.time(10, 0))
    weekend_end = models.TimeField(_("weekends until"), default=dt.time(20, 0))

    class Meta:
        verbose_name = _("channel rule")
        verbose_name_plural = _("channel rules")
        constraints = [
            models.UniqueConstraint(fields=["policy", "channel"], name="one_rule_per_channel"),
            models.CheckConstraint(
                condition=Q(weekday_start__lt=models.F("weekday_end"))
                & Q(weekend_start__lt=models.F("weekend_end")),
                name="channel_rule_window_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.policy}: {self.get_channel_display()}"


class OfferContactRule(models.Model):
    """Per-offer overrides: how often one offer may reach one client, and policy exceptions."""

    offer = models.OneToOneField(
        "offers.Offer",
        on_delete=models.CASCADE,
        related_name="contact_rule",
        verbose_name=_("offer"),
    )
    max_per_client = models.PositiveSmallIntegerField(
        _("at most, per client"), default=1, help_text=_("Times this offer may reach one client.")
    )
    window_days = models.PositiveSmallIntegerField(_("in a window of, days"), default=30)
    min_gap_hours = models.PositiveSmallIntegerField(
        _("minimum gap, hours"),
        null=True,
        blank=True,
        help_text=_("Overrides the policy's minimum gap for this offer; empty keeps it."),
    )
    total_limit = models.PositiveSmallIntegerField(
        _("all channels: at most"),
        null=True,
        blank=True,
        help_text=_("Overrides the policy's cap across channels for this offer; empty keeps it."),
    )

    class Meta:
        verbose_name = _("offer contact rule")
        verbose_name_plural = _("offer contact rules")

    def __str__(self) -> str:
        return str(self.offer)


# Campaigns --------------------------------------------------------------------------------------


class ScheduleKind(models.TextChoices):
    NOW = "now", _("once, now")
    AT = "at", _("once, at a time")
    RECURRING = "recurring", _("recurring (crontab)")


class TimeTarget(models.TextChoices):
    PREFERRED = "", _("the client's preferred part of the day, else as soon as allowed")
    ASAP = "asap", _("as soon as the quiet hours allow")
    WEEKEND = "weekend", _("weekend")
    EVENING = "evening", _("evening after work (weekdays)")


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    SCHEDULED = "scheduled", _("scheduled")
    RUNNING = "running", _("running")
    PAUSED = "paused", _("paused")
    FINISHED = "finished", _("finished")


OFFER_NOT_TRANSACTIONAL = _(
    "An offer is marketing: a campaign with an offer cannot be transactional, which would skip "
    "consent, caps and quiet hours."
)


class Campaign(TimeStamped):
    name = models.CharField(_("name"), max_length=200, unique=True)
    offer = models.ForeignKey(
        "offers.Offer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("offer"),
        help_text=_("Leave empty for a plain message written below."),
    )
    segment = models.ForeignKey(
        "segments.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("audience"),
        help_text=_("Empty: the offer's own segments."),
    )
    channels = models.JSONField(
        _("channels"),
        default=list,
        help_text=_("In fallback order, e.g. SMS, then e-mail."),
    )
    prefer_client_channel = models.BooleanField(_("client's preferred channel first"), default=True)
    is_transactional = models.BooleanField(
        _("transactional"),
        default=False,
        help_text=_("Service messages: exempt from caps and marketing consent. Use with care."),
    )
    sms_text = models.TextField(_("SMS text"), blank=True)
    voice_script = models.TextField(_("voice script"), blank=True)
    email_subject = models.CharField(_("e-mail subject"), max_length=255, blank=True)
    email_body = models.TextField(_("e-mail body"), blank=True)
    landing_url = models.URLField(
        _("landing page"),
        blank=True,
        help_text=_(
            "Where the personal tracked link leads. The link replaces [link] in a text, or is "
            "added at its end."
        ),
    )
    schedule_kind = models.CharField(
        _("schedule"), max_length=10, choices=ScheduleKind.choices, default=ScheduleKind.NOW
    )
    run_at = models.DateTimeField(_("run at"), null=True, blank=True)
    crontab = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("crontab"),
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    time_target = models.CharField(
        _("send time"), max_length=10, choices=TimeTarget.choices, blank=True
    )
    throttle_per_second = models.PositiveIntegerField(
        _("messages per second"),
        default=50,
        help_text=_(
            "Upper bound on the rate at which this campaign's messages are sent; 0: no limit of "
            "its own (the gateway's limit still applies)."
        ),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        constraints = [
            # Transactional messages skip consent, caps and quiet hours; an offer never may.
            models.CheckConstraint(
                condition=Q(is_transactional=False) | Q(offer__isnull=True),
                name="campaign_offer_is_not_transactional",
                violation_error_message=OFFER_NOT_TRANSACTIONAL,
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    PLANNING = "planning", _("planning")
    PLANNED = "planned", _("planned")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


class CampaignRun(models.Model):
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="runs", verbose_name=_("campaign")
    )
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=RunStatus.choices, default=RunStatus.PLANNING
    )
    audience = models.PositiveIntegerField(_("audience"), default=0)
    processed = models.PositiveIntegerField(_("processed"), default=0)
    # Keyset position in the audience snapshot: a resumed or concurrent planner goes on from here.
    last_client_id = models.BigIntegerField(default=0, editable=False)
    planned = models.PositiveIntegerField(_("planned"), default=0)
    control = models.PositiveIntegerField(_("control group"), default=0)
    excluded = models.JSONField(_("excluded, by reason"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("started by"),
    )

    class Meta:
        verbose_name = _("campaign run")
        verbose_name_plural = _("campaign runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.campaign} @ {self.started_at:%Y-%m-%d %H:%M}"


# Triggers ---------------------------------------------------------------------------------------


class TriggerKind(models.TextChoices):
    ABANDONED_CART = "abandoned_cart", _("abandoned cart")
    BROWSE_ABANDONMENT = "browse_abandonment", _("browse abandonment")
    CROSS_SELL = "cross_sell", _("post-purchase cross-sell")
    REPLENISHMENT = "replenishment", _("replenishment due")
    BIRTHDAY = "birthday", _("birthday")
    WIN_BACK = "win_back", _("win-back")
    PRICE_DROP = "price_drop", _("price drop in an abandoned cart")


class TriggerScenario(TimeStamped):
    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=TriggerKind.choices)
    offer = models.ForeignKey(
        "offers.Offer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trigger_scenarios",
        verbose_name=_("offer"),
    )
    channels = models.JSONField(_("channels"), default=list)
    prefer_client_channel = models.BooleanField(_("client's preferred channel first"), default=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"),
        default=50,
        help_text=_("When several scenarios fire for a client at once, only the highest is sent."),
    )
    delay_hours = models.PositiveIntegerField(
        _("delay, hours"),
        default=2,
        help_text=_("Hours after the event (cart, view, purchase) before the first message."),
    )
    days = models.PositiveIntegerField(
        _("days"),
        default=30,
        help_text=_(
            "Cross-sell: days after the purchase; birthday: days before; win-back: days without "
            "a purchase; browse/cart: how far back events count."
        ),
    )
    followup_days = models.PositiveSmallIntegerField(
        _("follow up every, days"), default=0, help_text=_("0: no follow-ups.")
    )
    max_followups = models.PositiveSmallIntegerField(_("follow-ups at most"), default=0)
    sms_text = models.TextField(_("SMS text"), blank=True)
    voice_script = models.TextField(_("voice script"), blank=True)
    email_subject = models.CharField(_("e-mail subject"), max_length=255, blank=True)
    email_body = models.TextField(_("e-mail body"), blank=True)
    landing_url = models.URLField(_("landing page"), blank=True)
    is_active = models.BooleanField(_("active"), default=False)

    class Meta:
        verbose_name = _("trigger scenario")
        verbose_name_plural = _("trigger scenarios")
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name


class FiringStatus(models.TextChoices):
    PLANNED = "planned", _("message planned")
    SUPPRESSED = "suppressed", _("suppressed")
    STOPPED = "stopped", _("stopped by a purchase")


class TriggerFiring(models.Model):
    """One occasion a scenario fired for a client (one step of a follow-up chain)."""

    scenario = models.ForeignKey(TriggerScenario, on_delete=models.CASCADE, related_name="firings")
    client = models.ForeignKey(
        "crm.Client", on_delete=models.CASCADE, related_name="trigger_firings"
    )
    occasion = models.CharField(
        _("occasion"),
        max_length=100,
        help_text=_("What fired it: the cart event, the purchase, the birthday year."),
    )
    step = models.PositiveSmallIntegerField(_("step"), default=0)
    fired_at = models.DateTimeField(_("fired"))
    status = models.CharField(
        _("status"), max_length=12, choices=FiringStatus.choices, default=FiringStatus.PLANNED
    )
    reason = models.CharField(_("reason"), max_length=40, blank=True)

    class Meta:
        verbose_name = _("trigger firing")
        verbose_name_plural = _("trigger firings")
        constraints = [
            models.UniqueConstraint(
                fields=["scenario", "client", "occasion", "step"], name="one_firing_per_step"
            )
        ]
        indexes = [models.Index(fields=["client", "fired_at"], name="firing_client_time")]

    def __str__(self) -> str:
        return f"{self.scenario} → {self.client_id} ({self.occasion}#{self.step})"


# Outbox -----------------------------------------------------------------------------------------


class MessageStatus(models.TextChoices):
    PLANNED = "planned", _("planned")
    QUEUED = "queued", _("queued")
    SENT = "sent", _("sent")
    DELIVERED = "delivered", _("delivered")
    FAILED = "failed", _("failed")
    UNDELIVERED = "undelivered", _("undelivered")
    CANCELLED = "cancelled", _("cancelled")
    EXPIRED = "expired", pgettext_lazy("message status", "expired")
    CONTROL = "control", _("control group (not sent)")
    DIALING = "dialing", _("dialing")
    ANSWERED = "answered", _("answered")
    BUSY = "busy", _("busy")
    NO_ANSWER = "no_answer", _("no answer")


# Messages that count against caps and gaps: everything that went or may still go out.
COUNTED_STATUSES = [
    MessageStatus.PLANNED,
    MessageStatus.QUEUED,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.DIALING,
    MessageStatus.ANSWERED,
    MessageStatus.BUSY,
    MessageStatus.NO_ANSWER,
]
PENDING_STATUSES = [MessageStatus.PLANNED, MessageStatus.QUEUED]


class Message(models.Model):
    client = models.ForeignKey(
        "crm.Client", on_delete=models.CASCADE, related_name="messages", verbose_name=_("client")
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    run = models.ForeignKey(
        CampaignRun,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("campaign run"),
    )
    firing = models.ForeignKey(
        TriggerFiring,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("trigger firing"),
    )
    offer = models.ForeignKey(
        "offers.Offer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("offer"),
    )
    variant = models.ForeignKey(
        "offers.OfferVariant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("variant"),
    )
    is_transactional = models.BooleanField(_("transactional"), default=False)
    recipient = models.CharField(pgettext_lazy("addressee", "to"), max_length=254)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    text = models.TextField(_("text"))
    reason = models.TextField(_("reason"), blank=True)
    products = models.JSONField(_("products"), default=list, blank=True)
    promo_code = models.CharField(_("promo code"), max_length=64, blank=True)
    link_token = models.CharField(_("link token"), max_length=24, unique=True, null=True)
    scheduled_for = models.DateTimeField(_("scheduled for"))
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=12, choices=MessageStatus.choices, default=MessageStatus.PLANNED
    )
    status_reason = models.CharField(_("status reason"), max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    provider_id = models.CharField(_("provider id"), max_length=100, blank=True)
    error = models.TextField(_("error"), blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=80, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("first click"), null=True, blank=True)
    call_duration = models.PositiveIntegerField(_("call duration, s"), null=True, blank=True)
    dtmf = models.CharField(_("digits pressed"), max_length=20, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        indexes = [
            # Dispatch: due messages in order.
            models.Index(
                fields=["scheduled_for"],
                condition=Q(status__in=["planned", "queued"]),
                name="message_due_idx",
            ),
            # Caps, gaps and the client's history.
            models.Index(fields=["client", "scheduled_for"], name="message_client_time_idx"),
            models.Index(fields=["run", "status"], name="message_run_status_idx"),
            models.Index(fields=["provider_id"], name="message_provider_idx"),
            # Per-number call caps: when a number was dialled this week (dispatch, retries).
            models.Index(
                fields=["recipient", "sent_at"],
                condition=Q(channel="call"),
                name="message_call_dials_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~(Q(run__isnull=False) & Q(firing__isnull=False)),
                name="message_one_origin",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} → {self.recipient} ({self.get_status_display()})"


class LinkClick(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="clicks")
    clicked_at = models.DateTimeField(_("clicked"))
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("link click")
        verbose_name_plural = _("link clicks")

    def __str__(self) -> str:
        return f"{self.message_id} @ {self.clicked_at:%Y-%m-%d %H:%M}"


class RateBucket(models.Model):
    """A token bucket shared by every dispatcher: keeps a gateway's or a campaign's rate."""

    key = models.CharField(max_length=100, primary_key=True)
    tokens = models.FloatField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key


# Gateways: events coming back, inbound SMS, calls, callback requests ----------------------------


class EventKind(models.TextChoices):
    DELIVERY_REPORT = "dlr", _("delivery report")
    INBOUND_SMS = "mo", _("inbound SMS")
    CALL = "call", _("call event")


class GatewayEvent(models.Model):
    """Every event a gateway reported, once: replays hit the unique key and change nothing."""

    provider = models.CharField(_("provider"), max_length=30)
    kind = models.CharField(_("kind"), max_length=5, choices=EventKind.choices)
    external_id = models.CharField(_("provider's id"), max_length=120)
    sequence = models.CharField(
        _("sequence / state"),
        max_length=60,
        help_text=_("Orders the events of one id; with it, the event's unique key."),
    )
    occurred_at = models.DateTimeField(_("occurred"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="gateway_events",
        verbose_name=_("message"),
    )
    payload = models.JSONField(_("payload"), default=dict)

    class Meta:
        verbose_name = _("gateway event")
        verbose_name_plural = _("gateway events")
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "kind", "external_id", "sequence"], name="gateway_event_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True),
                name="gateway_event_unprocessed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.get_kind_display()} {self.external_id}/{self.sequence}"


class InboundSms(models.Model):
    provider = models.CharField(_("provider"), max_length=30)
    sender = models.CharField(pgettext_lazy("sender", "from"), max_length=32)
    recipient = models.CharField(pgettext_lazy("addressee", "to"), max_length=32, blank=True)
    text = models.TextField(_("text"))
    received_at = models.DateTimeField(_("received"))
    client = models.ForeignKey(
        "crm.Client",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_sms",
        verbose_name=_("client"),
    )
    is_stop = models.BooleanField(_("opt-out"), default=False)

    class Meta:
        verbose_name = _("inbound SMS")
        verbose_name_plural = _("inbound SMS")

    def __str__(self) -> str:
        return f"{self.sender}: {self.text[:40]}"


class CallDirection(models.TextChoices):
    INBOUND = "in", _("incoming")
    OUTBOUND = "out", _("outgoing")


class CallState(models.TextChoices):
    RINGING = "ringing", _("ringing")
    ANSWERED = "answered", _("answered")
    DTMF = "dtmf", _("digits")
    ENDED = "ended", _("ended")


class Call(models.Model):
    """A call as the PBX or our autodialer reported it; the card's "incoming call" reads these."""

    provider = models.CharField(_("provider"), max_length=30)
    call_id = models.CharField(_("call id"), max_length=120)
    direction = models.CharField(_("direction"), max_length=3, choices=CallDirection.choices)
    from_number = models.CharField(pgettext_lazy("sender", "from"), max_length=32, blank=True)
    to_number = models.CharField(pgettext_lazy("addressee", "to"), max_length=32, blank=True)
    extension = models.CharField(_("operator extension"), max_length=32, blank=True)
    client = models.ForeignKey(
        "crm.Client",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("client"),
    )
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("message"),
    )
    state = models.CharField(_("state"), max_length=10, choices=CallState.choices)
    disposition = models.CharField(_("disposition"), max_length=30, blank=True)
    digits = models.CharField(_("digits"), max_length=20, blank=True)
    duration = models.PositiveIntegerField(_("duration, s"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"))
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        constraints = [
            models.UniqueConstraint(fields=["provider", "call_id"], name="call_once_per_provider")
        ]
        indexes = [
            models.Index(fields=["extension", "-started_at"], name="call_extension_recent"),
            models.Index(fields=["client", "-started_at"], name="call_client_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.from_number} → {self.to_number}"


class CallbackStatus(models.TextChoices):
    OPEN = "open", _("waiting")
    TAKEN = "taken", _("taken")
    DONE = "done", _("done")


class CallbackSource(models.TextChoices):
    IVR = "ivr", _("pressed 1 in an autodial call")
    WEB = "web", _("asked on the web")
    OPERATOR = "operator", _("operator")


class CallbackRequest(models.Model):
    client = models.ForeignKey(
        "crm.Client",
        on_delete=models.CASCADE,
        related_name="callback_requests",
        verbose_name=_("client"),
    )
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callback_requests",
        verbose_name=_("message"),
    )
    offer = models.ForeignKey(
        "offers.Offer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callback_requests",
        verbose_name=_("offer"),
    )
    reason = models.TextField(_("reason"), blank=True)
    source = models.CharField(_("source"), max_length=10, choices=CallbackSource.choices)
    status = models.CharField(
        _("status"), max_length=6, choices=CallbackStatus.choices, default=CallbackStatus.OPEN
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    taken_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("taken by"),
    )
    taken_at = models.DateTimeField(_("taken"), null=True, blank=True)

    class Meta:
        verbose_name = _("callback request")
        verbose_name_plural = _("callback requests")
        constraints = [
            # One open request per message: a replayed "pressed 1" does not queue a second.
            models.UniqueConstraint(
                fields=["message"], condition=Q(message__isnull=False), name="callback_per_message"
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(status="open"), name="callback_open_queue"
            )
        ]

    def __str__(self) -> str:
        return f"{self.client_id}: {self.get_status_display()}"


class NumberBlockReason(models.TextChoices):
    DO_NOT_CALL = "do_not_call", _("do not call")
    WRONG_NUMBER = "wrong_number", _("wrong number")


class NumberBlock(models.Model):
    """Numbers that must never be dialled again (asked not to be called, or a wrong number)."""

    phone = models.CharField(_("phone"), max_length=32)
    reason = models.CharField(_("reason"), max_length=15, choices=NumberBlockReason.choices)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("blocked number")
        verbose_name_plural = _("blocked numbers")
        constraints = [models.UniqueConstraint(fields=["phone"], name="number_block_once")]

    def __str__(self) -> str:
        return f"{self.phone} ({self.get_reason_display()})"


# results ----------------------------------------------------------------------------------------
# Attribution of purchases to messages and its per-offer rule (issue 8, "Results and experiments").
# Rows are written by ``messaging.services.attribution`` only; ``messaging.reports`` reads them.


class AttributionScope(models.TextChoices):
    OFFER = "offer", _("products or categories of the offer")
    ANY = "any", _("any purchase")


ATTRIBUTION_WINDOW_DAYS = 7


class OfferAttributionRule(models.Model):
    """How an offer's messages earn purchases: the window after the message and what counts."""

    offer = models.OneToOneField(
        "offers.Offer",
        on_delete=models.CASCADE,
        related_name="attribution_rule",
        verbose_name=_("offer"),
    )
    window_days = models.PositiveSmallIntegerField(
        _("attribution window, days"),
        default=ATTRIBUTION_WINDOW_DAYS,
        help_text=_("A purchase this many days after the message at most is credited to it."),
    )
    scope = models.CharField(
        _("what counts"),
        max_length=10,
        choices=AttributionScope.choices,
        default=AttributionScope.OFFER,
        help_text=_(
            "Only purchases of the offer's products or categories (and the products named in "
            "the message), or any purchase."
        ),
    )

    class Meta:
        verbose_name = _("attribution rule")
        verbose_name_plural = _("attribution rules")
        constraints = [
            models.CheckConstraint(
                condition=Q(window_days__gte=1) & Q(window_days__lte=90),
                name="attribution_window_range",
            )
        ]

    def __str__(self) -> str:
        return f"{self.offer}: {self.window_days} d, {self.get_scope_display()}"


class Attribution(models.Model):
    """A purchase credited to the last message (sent, delivered, answered, or a holdout's control
    record) that reached its client within the window. A purchase is credited at most once."""

    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="attributions",
        verbose_name=_("message"),
    )
    purchase = models.ForeignKey(
        "crm.Purchase",
        on_delete=models.CASCADE,
        related_name="attributions",
        verbose_name=_("purchase"),
        db_index=False,  # the unique constraint below indexes it
    )
    client = models.ForeignKey(
        "crm.Client", on_delete=models.CASCADE, related_name="+", verbose_name=_("client")
    )
    # Copied from the message and the purchase so reports and the recompute read one table.
    run = models.ForeignKey(
        CampaignRun,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("campaign run"),
    )
    firing = models.ForeignKey(
        TriggerFiring,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("trigger firing"),
    )
    offer = models.ForeignKey(
        "offers.Offer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attributions",
        verbose_name=_("offer"),
    )
    variant = models.ForeignKey(
        "offers.OfferVariant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("variant"),
        db_index=False,  # read through run, firing or offer
    )
    is_control = models.BooleanField(_("control group"), default=False)
    purchased_at = models.DateTimeField(_("purchased at"))
    revenue = models.DecimalField(_("revenue"), max_digits=14, decimal_places=2, default=0)
    margin = models.DecimalField(_("margin"), max_digits=14, decimal_places=2, default=0)
    discount = models.DecimalField(_("discount cost"), max_digits=14, decimal_places=2, default=0)
    attributed_at = models.DateTimeField(_("attributed at"))

    class Meta:
        verbose_name = _("attribution")
        verbose_name_plural = _("attributions")
        permissions = [("view_results", _("Can see campaign results and export reports"))]
        constraints = [
            # Last touch: one message per purchase (so also one row per message and purchase).
            models.UniqueConstraint(fields=["purchase"], name="attribution_one_per_purchase"),
        ]
        indexes = [
            # The recompute replaces a window of purchases.
            models.Index(fields=["purchased_at"], name="attribution_purchased_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.purchase_id} → {self.message_id}"
