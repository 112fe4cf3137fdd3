"""Admin for messaging: the contact policy, campaigns (send now with a confirmation, schedule,
pause), trigger scenarios, runs with the reasons clients were left out, and the outbox.

Thin: checks and writes are ``messaging.services`` (``admin_ops``, ``campaigns``), reads
``messaging.selectors``. The outbox and the gateway logs are read-only big tables.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin_utils import BigTableAdmin, ReadOnlyAdminMixin
from crm.models import Channel, Client
from crm.selectors import client_search
from messaging import selectors
from messaging.models import (
    MARKETING_CHANNELS,
    Call,
    CallbackRequest,
    Campaign,
    CampaignRun,
    CampaignStatus,
    ChannelRule,
    ContactPolicy,
    GatewayEvent,
    InboundSms,
    Message,
    NumberBlock,
    OfferContactRule,
    TriggerFiring,
    TriggerScenario,
)
from messaging.services import admin_ops
from messaging.services.campaigns import (
    CampaignError,
    campaign_pause,
    campaign_run_start,
    campaign_schedule,
    campaign_validate,
)

TEXT_HELP = _(
    "Django template syntax: {{ client.first_name }}, {{ client.name }}, {{ client.city }} … "
    "[link] marks where the personal tracked link goes (else it is added at the end)."
)


def _apply_errors(form: forms.BaseForm, errors: dict[str | None, list[str]]) -> None:
    for name, problems in errors.items():
        form.add_error(name if name in form.fields else None, problems)


def _channel_labels(channels: list[str] | None) -> str:
    labels = dict(Channel.choices)
    return " → ".join(str(labels.get(c, c)) for c in channels or []) or "—"


def _search_clients(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    """Rows of a client's (by phone, e-mail, external ID or name) through the client indexes."""
    ids = client_search(Client.objects.all(), term).order_by().values("pk")[:100]
    return queryset.filter(client_id__in=ids)


# Channels in fallback order -----------------------------------------------------------------


class ChannelOrderWidget(forms.MultiWidget):
    """One select per position: first channel, then the fallback, then the next."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        choices = [("", "—"), *Channel.choices]
        super().__init__([forms.Select(choices=choices) for _c in MARKETING_CHANNELS], attrs)

    def decompress(self, value: Any) -> list[Any]:
        return list(value or [])


class ChannelOrderField(forms.MultiValueField):
    """Channels as the JSON list the models store, in the order chosen; no repeats."""

    widget = ChannelOrderWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = [
            forms.ChoiceField(choices=Channel.choices, required=False) for _c in MARKETING_CHANNELS
        ]
        kwargs.setdefault("help_text", _("First the channel to try, then the fallbacks."))
        super().__init__(fields=fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[str]) -> list[str]:
        chosen = [c for c in data_list or [] if c]
        if len(set(chosen)) != len(chosen):
            raise forms.ValidationError(_("Each channel may appear only once."))
        return chosen

    def has_changed(self, initial: Any, data: Any) -> bool:
        return list(initial or []) != self.compress(list(data or []))


# Contact policy -------------------------------------------------------------------------------


class ChannelRuleInline(admin.TabularInline):
    model = ChannelRule
    extra = 0
    fields = (
        "channel",
        "limit",
        "window_days",
        "weekday_start",
        "weekday_end",
        "weekend_start",
        "weekend_end",
    )


class ContactPolicyForm(forms.ModelForm):
    # Not the model field itself: the form would refuse a second active policy (the database
    # constraint), while saving through the service deactivates the other one instead.
    make_active = forms.BooleanField(
        label=_("active"),
        required=False,
        help_text=_("Only one policy is active: making this one active deactivates the other."),
    )

    class Meta:
        model = ContactPolicy
        fields = (
            "name",
            "total_limit",
            "total_window_days",
            "min_gap_hours",
            "morning_start",
            "afternoon_start",
            "evening_start",
            "learn_preferred_time",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["make_active"].initial = self.instance.is_active


@admin.register(ContactPolicy)
class ContactPolicyAdmin(admin.ModelAdmin):
    form = ContactPolicyForm
    inlines = (ChannelRuleInline,)
    list_display = ("name", "is_active", "total_limit", "total_window_days", "min_gap_hours")
    list_filter = ("is_active",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("make_active",)
    fieldsets = (
        (None, {"fields": ("name", "make_active")}),
        (
            _("Caps across channels"),
            {"fields": (("total_limit", "total_window_days"), "min_gap_hours")},
        ),
        (
            _("Parts of the day"),
            {
                "fields": (
                    ("morning_start", "afternoon_start", "evening_start"),
                    "learn_preferred_time",
                )
            },
        ),
        (_("System"), {"fields": ("created_at", "updated_at")}),
    )

    def save_model(self, request: HttpRequest, obj: ContactPolicy, form: Any, change: bool) -> None:
        admin_ops.contact_policy_save(policy=obj, active=bool(form.cleaned_data.get("make_active")))

    @admin.action(description=_("Make the selected policy the active one"), permissions=["change"])
    def make_active(self, request: HttpRequest, queryset: QuerySet[ContactPolicy]) -> None:
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, gettext("Select exactly one policy."), messages.ERROR)
            return
        admin_ops.contact_policy_activate(policy=chosen[0])
        self.message_user(
            request, gettext("“%s” is now the active policy.") % chosen[0].name, messages.SUCCESS
        )


@admin.register(OfferContactRule)
class OfferContactRuleAdmin(admin.ModelAdmin):
    list_display = ("offer", "max_per_client", "window_days", "min_gap_hours", "total_limit")
    list_select_related = ("offer",)
    autocomplete_fields = ("offer",)
    search_fields = ("offer__name",)


# Campaigns ------------------------------------------------------------------------------------


# The message texts of campaigns and scenarios, sized for editing.
TEXT_WIDGETS = {
    "sms_text": forms.Textarea(attrs={"rows": 3, "cols": 80}),
    "voice_script": forms.Textarea(attrs={"rows": 4, "cols": 80}),
    "email_body": forms.Textarea(attrs={"rows": 6, "cols": 80}),
}


def _https_urls(field: Any, **kwargs: Any) -> Any:
    """Form fields for the model fields; a link typed without a scheme is taken as https."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class CampaignForm(forms.ModelForm):
    channels = ChannelOrderField(label=_("channels, in fallback order"))

    class Meta:
        model = Campaign
        formfield_callback = _https_urls
        fields = (
            "name",
            "offer",
            "segment",
            "channels",
            "prefer_client_channel",
            "is_transactional",
            "sms_text",
            "voice_script",
            "email_subject",
            "email_body",
            "landing_url",
            "schedule_kind",
            "run_at",
            "crontab",
            "time_target",
            "throttle_per_second",
        )
        help_texts = {"sms_text": TEXT_HELP}
        widgets = TEXT_WIDGETS

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if not self.errors:
            _apply_errors(self, admin_ops.campaign_check(self.instance))


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    form = CampaignForm
    list_display = (
        "name",
        "offer",
        "audience",
        "channel_list",
        "schedule",
        "status",
        "runs_link",
        "results_link",
    )
    list_filter = ("status", "schedule_kind")
    list_select_related = ("offer", "segment", "crontab")
    search_fields = ("name",)
    autocomplete_fields = ("offer", "segment")
    readonly_fields = ("status", "beat_entry", "recent_runs", "created_by", "updated_at")
    change_form_template = "admin/messaging/campaign/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "status", "offer", "segment")}),
        (
            _("Channels"),
            {"fields": ("channels", "prefer_client_channel", "is_transactional")},
        ),
        (
            _("Plain message (when there is no offer)"),
            {"fields": ("sms_text", "voice_script", "email_subject", "email_body")},
        ),
        (
            _("Schedule and pace"),
            {
                "fields": (
                    "schedule_kind",
                    "run_at",
                    "crontab",
                    "beat_entry",
                    "time_target",
                    "throttle_per_second",
                    "landing_url",
                )
            },
        ),
        (_("Runs"), {"fields": ("recent_runs", "created_by", "updated_at")}),
    )

    @admin.display(description=_("audience"))
    def audience(self, obj: Campaign) -> str:
        if obj.segment_id:
            return str(obj.segment)
        return gettext("the offer's segments") if obj.offer_id else "—"

    @admin.display(description=_("channels"))
    def channel_list(self, obj: Campaign) -> str:
        return _channel_labels(obj.channels)

    @admin.display(description=_("schedule"), ordering="schedule_kind")
    def schedule(self, obj: Campaign) -> str:
        label = obj.get_schedule_kind_display()
        if obj.schedule_kind == "at" and obj.run_at:
            return f"{label}: {timezone.localtime(obj.run_at):%d.%m.%Y %H:%M}"
        if obj.schedule_kind == "recurring" and obj.crontab_id:
            c = obj.crontab
            return (
                f"{label}: {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"  # type: ignore[union-attr]
            )
        return str(label)

    @admin.display(description=_("runs"))
    def runs_link(self, obj: Campaign) -> str:
        url = reverse("admin:messaging_campaignrun_changelist")
        return format_html(
            '<a href="{}?campaign__id__exact={}">{}</a>', url, obj.pk, gettext("runs")
        )

    @admin.display(description=_("results"))
    def results_link(self, obj: Campaign) -> str:
        url = reverse("reports:campaign", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("results"))

    @admin.display(description=_("beat entry"))
    def beat_entry(self, obj: Campaign) -> str:
        if not obj.periodic_task_id:
            return "—"
        task = obj.periodic_task
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        state = gettext("enabled") if task and task.enabled else gettext("disabled")
        return format_html('<a href="{}">{}</a> ({})', url, task, state)

    @admin.display(description=_("recent runs"))
    def recent_runs(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        runs = list(obj.runs.order_by("-started_at")[:10])
        if not runs:
            return gettext("Not run yet.")
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:messaging_campaignrun_change", args=[r.pk]),
                    f"{r.started_at:%d.%m.%Y %H:%M}",
                    r.get_status_display(),
                    r.audience,
                    r.processed,
                    r.planned,
                    r.control,
                    sum(int(v) for v in (r.excluded or {}).values()),
                )
                for r in runs
            ),
        )
        headers = [
            gettext("started"),
            gettext("status"),
            gettext("audience"),
            gettext("processed"),
            gettext("planned"),
            gettext("control group"),
            gettext("excluded"),
        ]
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<th>{}</th>", ((h,) for h in headers)),
            body,
        )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        admin_ops.campaign_save(campaign=obj, user=request.user)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        campaign = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_send": campaign is not None and self.has_change_permission(request, campaign),
            "can_pause": campaign is not None and campaign.status == CampaignStatus.SCHEDULED,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # Send now, schedule, pause ----------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/send/", view(self.send_view), name="messaging_campaign_send"),
            path(
                "<int:pk>/schedule/", view(self.schedule_view), name="messaging_campaign_schedule"
            ),
            path("<int:pk>/pause/", view(self.pause_view), name="messaging_campaign_pause"),
            *super().get_urls(),
        ]

    def _campaign_for_change(self, request: HttpRequest, pk: int) -> Campaign:
        campaign = get_object_or_404(
            Campaign.objects.select_related("offer", "segment", "crontab"), pk=pk
        )
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _back(self, campaign: Campaign) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:messaging_campaign_change", args=[campaign.pk]))

    def send_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: who would get it and what it costs; POST: start a run now."""
        campaign = self._campaign_for_change(request, pk)
        if request.method == "POST":
            try:
                run = campaign_run_start(campaign=campaign, user=request.user)
            except CampaignError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return self._back(campaign)
            self.message_user(
                request,
                gettext("The run has started: the audience is planned in the background."),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:messaging_campaignrun_change", args=[run.pk])
            )
        problem = ""
        try:
            campaign_validate(campaign)
        except CampaignError as exc:
            problem = str(exc)
        estimate = None if problem else selectors.campaign_estimate(campaign)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": gettext("Send “%s” now?") % campaign.name,
            "problem": problem,
            "estimate": estimate,
            "channels": _channel_labels(campaign.channels),
            "audience": self.audience(campaign),
        }
        return TemplateResponse(request, "admin/messaging/campaign/send_confirmation.html", context)

    def schedule_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = self._campaign_for_change(request, pk)
        if request.method != "POST":
            return self._back(campaign)
        try:
            run = campaign_schedule(campaign=campaign, user=request.user)
        except CampaignError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back(campaign)
        if run is not None:
            self.message_user(request, gettext("The run has started."), messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:messaging_campaignrun_change", args=[run.pk])
            )
        self.message_user(
            request,
            gettext("Scheduled: %s.") % self.schedule(campaign),
            messages.SUCCESS,
        )
        return self._back(campaign)

    def pause_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = self._campaign_for_change(request, pk)
        if request.method == "POST":
            campaign_pause(campaign=campaign)
            self.message_user(
                request, gettext("Paused: the schedule will not start new runs."), messages.SUCCESS
            )
        return self._back(campaign)


# Runs -----------------------------------------------------------------------------------------


@admin.register(CampaignRun)
class CampaignRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "campaign",
        "started_at",
        "status",
        "audience",
        "processed",
        "planned",
        "control",
        "excluded_total",
    )
    list_filter = ("status", "campaign")
    list_select_related = ("campaign",)
    ordering = ("-started_at",)
    fields = (
        "campaign",
        "status",
        ("started_at", "finished_at"),
        "started_by",
        "progress",
        "exclusions",
        "message_statuses",
        "error",
    )
    readonly_fields = (
        "campaign",
        "status",
        "started_at",
        "finished_at",
        "started_by",
        "progress",
        "exclusions",
        "message_statuses",
        "error",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[CampaignRun]:
        return super().get_queryset(request).select_related("campaign", "started_by")

    @admin.display(description=_("excluded"))
    def excluded_total(self, obj: CampaignRun) -> int:
        return sum(int(v) for v in (obj.excluded or {}).values())

    @admin.display(description=_("progress"))
    def progress(self, obj: CampaignRun) -> str:
        return format_html(
            "{}: {} · {}: {} · {}: {} · {}: {} · {}: {}",
            gettext("audience"),
            obj.audience,
            gettext("processed"),
            obj.processed,
            gettext("planned"),
            obj.planned,
            gettext("control group"),
            obj.control,
            gettext("excluded"),
            self.excluded_total(obj),
        )

    @admin.display(description=_("why the rest got nothing"))
    def exclusions(self, obj: CampaignRun) -> str:
        rows = selectors.run_exclusions(obj)
        if not rows:
            return gettext("Nobody was excluded.")
        return format_html(
            '<table class="run-exclusions"><thead><tr><th>{}</th><th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            gettext("reason"),
            gettext("clients"),
            format_html_join(
                "",
                '<tr><td title="{}">{}</td><td>{}</td></tr>',
                ((r.reason, r.label, r.count) for r in rows),
            ),
        )

    @admin.display(description=_("messages"))
    def message_statuses(self, obj: CampaignRun) -> str:
        counts = selectors.run_status_counts(obj)
        url = reverse("admin:messaging_message_changelist")
        link = format_html(
            '<a href="{}?run__id__exact={}">{}</a>', url, obj.pk, gettext("all messages of the run")
        )
        if not counts.total:
            return format_html("{} · {}", gettext("No messages yet."), link)
        head = format_html_join("", "<th>{}</th>", ((label,) for _s, label in counts.statuses))
        body = format_html_join(
            "",
            "<tr><th>{}</th>{}<td><strong>{}</strong></td></tr>",
            (
                (label, format_html_join("", "<td>{}</td>", ((n,) for n in cells)), total)
                for label, cells, total in counts.rows()
            ),
        )
        return format_html(
            '<table class="run-statuses"><thead><tr><th>{}</th>{}<th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table><p>{}</p>",
            gettext("channel"),
            head,
            gettext("total"),
            body,
            link,
        )


# Outbox ---------------------------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = (
        "id",
        "scheduled_for",
        "channel",
        "recipient",
        "client",
        "origin",
        "status",
        "sent_at",
        "delivered_at",
    )
    list_filter = ("status", "channel", "run__campaign", "firing__scenario", "is_transactional")
    list_select_related = ("client", "run__campaign", "firing__scenario")
    search_fields = ("recipient",)  # shows the box; the search itself goes through the client
    search_help_text = _("Phone in any format, e-mail, external ID, or last [first] name.")
    ordering = ("-id",)
    fieldsets = (
        (None, {"fields": ("client", "channel", "recipient", "status", "status_reason")}),
        (_("Origin"), {"fields": ("run", "firing", "offer", "variant", "is_transactional")}),
        (
            _("Content"),
            {"fields": ("subject", "text", "reason", "products", "promo_code", "link_token")},
        ),
        (
            _("Timeline"),
            {
                "fields": (
                    "scheduled_for",
                    "expires_at",
                    "sent_at",
                    "delivered_at",
                    "clicked_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        (
            _("Delivery"),
            {
                "fields": (
                    "attempts",
                    "provider_id",
                    "error",
                    "call_duration",
                    "dtmf",
                    "idempotency_key",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .select_related("client", "run__campaign", "firing__scenario", "offer", "variant")
        )

    @admin.display(description=_("from"))
    def origin(self, obj: Message) -> str:
        if obj.run_id:
            return str(obj.run.campaign)  # type: ignore[union-attr]
        if obj.firing_id:
            return str(obj.firing.scenario)  # type: ignore[union-attr]
        return gettext("transactional") if obj.is_transactional else "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        term = (search_term or "").strip()
        return (_search_clients(queryset, term) if term else queryset), False


class _LatestFormSet(BaseInlineFormSet):
    """An inline over the newest rows only; the history template renders no form fields, so
    saving the parent never validates these rows."""

    limit = 50

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset()[: self.limit]
        return self._latest


class MessageHistoryInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The client's messages, newest first (added to the client page below)."""

    model = Message
    formset = _LatestFormSet
    template = "admin/messaging/message/history_inline.html"
    verbose_name_plural = _("messages (latest 50)")
    fields = ("scheduled_for", "channel", "status", "text")
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .select_related("run__campaign", "firing__scenario")
            .order_by("-scheduled_for", "-id")
        )


def _attach_history_to_client_admin() -> None:
    """Show the message history on the client page without editing ``crm/admin.py``: add the
    inline to the registered client admin once (by model, so a re-import adds no second)."""
    client_admin = admin.site.get_model_admin(Client)
    if not any(getattr(i, "model", None) is Message for i in client_admin.inlines):
        client_admin.inlines = (*client_admin.inlines, MessageHistoryInline)  # type: ignore[misc]


_attach_history_to_client_admin()


# Triggers -------------------------------------------------------------------------------------


class TriggerScenarioForm(forms.ModelForm):
    channels = ChannelOrderField(label=_("channels, in fallback order"))

    class Meta:
        model = TriggerScenario
        formfield_callback = _https_urls
        fields = (
            "name",
            "kind",
            "is_active",
            "priority",
            "offer",
            "channels",
            "prefer_client_channel",
            "delay_hours",
            "days",
            "followup_days",
            "max_followups",
            "sms_text",
            "voice_script",
            "email_subject",
            "email_body",
            "landing_url",
        )
        help_texts = {"sms_text": TEXT_HELP}
        widgets = TEXT_WIDGETS

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if not self.errors:
            _apply_errors(self, admin_ops.scenario_check(self.instance))


@admin.register(TriggerScenario)
class TriggerScenarioAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    form = TriggerScenarioForm
    list_display = (
        "name",
        "kind",
        "offer",
        "channel_list",
        "priority",
        "delay_hours",
        "is_active",
        "fired_recent",
        "planned_recent",
        "suppressed_recent",
        "stopped_recent",
    )
    list_editable = ("priority", "is_active")
    list_filter = ("is_active", "kind")
    list_select_related = ("offer",)
    search_fields = ("name",)
    autocomplete_fields = ("offer",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("activate", "deactivate")

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriggerScenario]:
        return selectors.scenarios_with_recent_firings(super().get_queryset(request))

    @admin.display(description=_("channels"))
    def channel_list(self, obj: TriggerScenario) -> str:
        return _channel_labels(obj.channels)

    def _firings_link(self, obj: TriggerScenario, count: int, status: str = "") -> str:
        url = reverse("admin:messaging_triggerfiring_changelist")
        query = f"scenario__id__exact={obj.pk}" + (f"&status__exact={status}" if status else "")
        return format_html('<a href="{}?{}">{}</a>', url, query, count)

    @admin.display(description=_("fired, 7 days"), ordering="fired_recent")
    def fired_recent(self, obj: Any) -> str:
        return self._firings_link(obj, obj.fired_recent)

    @admin.display(description=_("messages planned, 7 days"), ordering="planned_recent")
    def planned_recent(self, obj: Any) -> str:
        return self._firings_link(obj, obj.planned_recent, "planned")

    @admin.display(description=_("suppressed, 7 days"), ordering="suppressed_recent")
    def suppressed_recent(self, obj: Any) -> str:
        return self._firings_link(obj, obj.suppressed_recent, "suppressed")

    @admin.display(description=_("stopped by a purchase, 7 days"), ordering="stopped_recent")
    def stopped_recent(self, obj: Any) -> str:
        return self._firings_link(obj, obj.stopped_recent, "stopped")

    @admin.action(description=_("Activate the selected scenarios"), permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[TriggerScenario]) -> None:
        count = admin_ops.trigger_scenarios_set_active(scenarios=queryset, active=True)
        self.message_user(request, gettext("Activated: %d.") % count, messages.SUCCESS)

    @admin.action(description=_("Deactivate the selected scenarios"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[TriggerScenario]) -> None:
        count = admin_ops.trigger_scenarios_set_active(scenarios=queryset, active=False)
        self.message_user(request, gettext("Deactivated: %d.") % count, messages.SUCCESS)


@admin.register(TriggerFiring)
class TriggerFiringAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = ("fired_at", "scenario", "client", "occasion", "step", "status", "reason_label")
    list_filter = ("status", "scenario")
    list_select_related = ("scenario", "client")
    search_fields = ("occasion",)  # shows the box; the search itself goes through the client
    search_help_text = _("Phone in any format, e-mail, external ID, or last [first] name.")
    ordering = ("-id",)

    @admin.display(description=_("reason"))
    def reason_label(self, obj: TriggerFiring) -> str:
        return selectors.reason_label(obj.reason) if obj.reason else "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TriggerFiring], search_term: str
    ) -> tuple[QuerySet[TriggerFiring], bool]:
        term = (search_term or "").strip()
        return (_search_clients(queryset, term) if term else queryset), False


# Gateways: what came back, calls, callbacks, blocked numbers --------------------------------------


@admin.register(GatewayEvent)
class GatewayEventAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = (
        "received_at",
        "provider",
        "kind",
        "external_id",
        "sequence",
        "message",
        "processed_at",
    )
    list_filter = ("provider", "kind")
    search_fields = ("=external_id",)
    raw_id_fields = ("message",)
    ordering = ("-id",)


@admin.register(InboundSms)
class InboundSmsAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = ("received_at", "sender", "recipient", "text", "client", "is_stop")
    list_filter = ("is_stop", "provider")
    list_select_related = ("client",)
    search_fields = ("=sender",)
    ordering = ("-id",)


@admin.register(Call)
class CallAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = (
        "started_at",
        "direction",
        "from_number",
        "to_number",
        "extension",
        "client",
        "state",
        "disposition",
        "duration",
    )
    list_filter = ("direction", "state", "provider")
    list_select_related = ("client",)
    search_fields = ("=call_id", "=from_number", "=to_number")
    ordering = ("-id",)


@admin.register(CallbackRequest)
class CallbackRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "client", "offer", "source", "status", "taken_by", "taken_at")
    list_filter = ("status", "source")
    list_select_related = ("client", "offer", "taken_by")
    ordering = ("-created_at",)
    show_full_result_count = False


@admin.register(NumberBlock)
class NumberBlockAdmin(admin.ModelAdmin):
    list_display = ("phone", "reason", "created_at", "note")
    list_filter = ("reason",)
    search_fields = ("=phone",)
    ordering = ("-created_at",)
