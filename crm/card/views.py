"""The operator's pages: search, card (and its JSON), callback queue, incoming calls, actions.

Views check permissions, call one selector or service and show the result; every action is a
POST with CSRF that redirects back to the card (post/redirect/get) with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from crm.card import permissions as perms
from crm.card import selectors
from crm.models import (
    AuditAction,
    Channel,
    Client,
    ConsentAction,
    ConsentPurpose,
    ConsentSource,
    OperatorProfile,
)
from crm.services import ConsentError, audit_write, consent_record

View = Callable[..., HttpResponse]


def staff_permission(permission: str) -> Callable[[View], View]:
    """Staff only (else the admin login), and the permission (else 403)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return staff_member_required(wrapped, login_url="admin:login")

    return decorator


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    # The admin's base template shows the user links only with has_permission.
    return {"has_permission": True, "site_header": _("Lichno CRM"), **extra}


def _page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


# Search ------------------------------------------------------------------------------------------


@require_GET
@staff_permission(perms.VIEW_CARD)
def search(request: HttpRequest) -> HttpResponse:
    term = request.GET.get("q", "").strip()
    results = selectors.card_search(term) if term else []
    if len(results) == 1:
        return redirect("card:card", client_id=results[0].pk)
    return render(
        request,
        "card/search.html",
        _context(request, title=_("Find a client"), q=term, results=results, searched=bool(term)),
    )


# The card ----------------------------------------------------------------------------------------


@require_GET
@staff_permission(perms.VIEW_CARD)
def card(request: HttpRequest, client_id: int) -> HttpResponse:
    data = selectors.card_read(client_id=client_id, page=_page(request))
    if data is None:
        raise Http404(gettext("No such client."))
    audit_write(
        action=AuditAction.CARD_VIEWED,
        client_id=client_id,
        actor=request.user,
        changes={"via": "card"},
    )
    user = request.user
    return render(
        request,
        "card/card.html",
        _context(
            request,
            title=data["client"]["name"],
            card=data,
            direction=request.GET.get("direction", "out"),
            callback=selectors.callback_request(request.GET.get("callback", ""), client_id),
            outcomes=_outcomes(),
            can_outcome=user.has_perm(perms.RECORD_OUTCOME),
            can_consent=user.has_perm(perms.RECORD_CONSENT),
            can_send=user.has_perm(perms.SEND_OFFER),
            can_call=user.has_perm(perms.CLICK_TO_CALL),
            consent_channels=Channel.choices,
        ),
    )


@require_GET
@staff_permission(perms.VIEW_CARD)
def card_json(request: HttpRequest, client_id: int) -> HttpResponse:
    data = selectors.card_read(client_id=client_id, page=_page(request))
    if data is None:
        return JsonResponse({"detail": gettext("No such client.")}, status=404)
    audit_write(
        action=AuditAction.CARD_VIEWED,
        client_id=client_id,
        actor=request.user,
        changes={"via": "card-json"},
    )
    # Like the page, which fills its offers panel from this address.
    data["offers_url"] = reverse("card:offers-json", kwargs={"client_id": client_id})
    return JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"ensure_ascii": False})


@require_GET
@staff_permission(perms.VIEW_CARD)
def offers(request: HttpRequest, client_id: int) -> HttpResponse:
    """The card's offers panel (an HTML fragment the card page loads right after itself)."""
    if not Client.objects.filter(pk=client_id).exists():
        raise Http404(gettext("No such client."))
    # Reasons are read off the client's purchases: a read of personal data like the card's.
    audit_write(
        action=AuditAction.CARD_VIEWED,
        client_id=client_id,
        actor=request.user,
        changes={"via": "card-offers"},
    )
    return render(
        request,
        "card/_offers.html",
        {
            "client_id": client_id,
            "offers": selectors.next_offers(client_id=client_id),
            "can_send": request.user.has_perm(perms.SEND_OFFER),
        },
    )


@require_GET
@staff_permission(perms.VIEW_CARD)
def offers_json(request: HttpRequest, client_id: int) -> HttpResponse:
    if not Client.objects.filter(pk=client_id).exists():
        return JsonResponse({"detail": gettext("No such client.")}, status=404)
    audit_write(
        action=AuditAction.CARD_VIEWED,
        client_id=client_id,
        actor=request.user,
        changes={"via": "card-offers-json"},
    )
    return JsonResponse(
        {"client_id": client_id, "offers": selectors.next_offers(client_id=client_id)},
        encoder=DjangoJSONEncoder,
        json_dumps_params={"ensure_ascii": False},
    )


def _outcomes() -> list[tuple[str, str]]:
    from messaging.services.operator import CallOutcome

    return [(value, str(label)) for value, label in CallOutcome.choices]


# Actions -----------------------------------------------------------------------------------------


def _back(request: HttpRequest, client_id: int) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect("card:card", client_id=client_id)


@require_POST
@staff_permission(perms.RECORD_OUTCOME)
def outcome(request: HttpRequest, client_id: int) -> HttpResponse:
    from messaging.models import CallDirection
    from messaging.services.operator import CallOutcome, OperatorError, call_outcome_record

    client = get_object_or_404(Client, pk=client_id)
    value = request.POST.get("outcome", "")
    direction = (
        CallDirection.INBOUND
        if request.POST.get("direction") == CallDirection.INBOUND
        else CallDirection.OUTBOUND
    )
    try:
        call_outcome_record(
            client=client,
            user=request.user,
            outcome=value,
            note=request.POST.get("note", ""),
            direction=direction,
        )
    except OperatorError as exc:
        messages.error(request, str(exc))
    else:
        label = CallOutcome(value).label
        messages.success(
            request, gettext("Call outcome recorded: %(outcome)s.") % {"outcome": label}
        )
    return _back(request, client_id)


@require_POST
@staff_permission(perms.RECORD_CONSENT)
def consent(request: HttpRequest, client_id: int) -> HttpResponse:
    """A consent given or withdrawn on the phone, with the version of the wording read out."""
    client = get_object_or_404(Client, pk=client_id)
    action = request.POST.get("action", "")
    channel = request.POST.get("channel", "")
    wording = request.POST.get("wording_version", "").strip()
    try:
        consent_record(
            client=client,
            channel=channel,
            purpose=request.POST.get("purpose") or ConsentPurpose.MARKETING,
            action=action,
            source=ConsentSource.CALL_CENTER,
            wording_version=wording,
            actor=request.user,
            evidence=request.POST.get("note", "")[:500],
        )
    except ConsentError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        text = (
            gettext("Consent recorded: %(channel)s.")
            if action == ConsentAction.GRANTED
            else gettext("Consent withdrawn: %(channel)s.")
        )
        messages.success(request, text % {"channel": Channel(channel).label})
    return _back(request, client_id)


@require_POST
@staff_permission(perms.SEND_OFFER)
def send_offer(request: HttpRequest, client_id: int) -> HttpResponse:
    from messaging.services.operator import offer_send_now
    from offers.models import Offer

    client = get_object_or_404(Client, pk=client_id)
    offer = get_object_or_404(Offer, pk=request.POST.get("offer") or 0)
    result = offer_send_now(client=client, offer=offer, user=request.user)
    if not result.planned:
        messages.error(request, result.detail)
    elif result.deferred:
        messages.warning(request, result.detail)
    else:
        messages.success(request, result.detail)
    return _back(request, client_id)


@require_POST
@staff_permission(perms.CLICK_TO_CALL)
def call(request: HttpRequest, client_id: int) -> HttpResponse:
    client = get_object_or_404(Client, pk=client_id)
    extension = selectors.operator_extension(request.user)
    from messaging.backends.voice import NotSupported
    from messaging.services.calls import click_to_call

    if not extension:
        messages.error(request, gettext("Set your PBX extension first (on the queue page)."))
        return _back(request, client_id)
    try:
        click_to_call(
            operator_extension=extension, client=client, reference=f"card:{request.user.pk}"
        )
    except NotSupported as exc:
        messages.error(
            request, gettext("The call could not be started: %(error)s") % {"error": exc}
        )
    except Exception as exc:  # noqa: BLE001 - a PBX failure is shown, not a 500
        messages.error(request, gettext("The PBX did not answer: %(error)s") % {"error": exc})
    else:
        messages.success(
            request,
            gettext("Calling: your phone %(extension)s rings first.") % {"extension": extension},
        )
    return _back(request, client_id)


# Queue and incoming calls ------------------------------------------------------------------------


@require_GET
@staff_permission(perms.VIEW_CARD)
def queue(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "card/queue.html",
        _context(
            request,
            title=_("Callback requests"),
            requests=list(selectors.callback_queue()),
            mine=list(selectors.callbacks_taken_by(user=request.user)),
            extension=selectors.operator_extension(request.user),
            can_take=request.user.has_perm(perms.TAKE_CALLBACK),
        ),
    )


@require_POST
@staff_permission(perms.TAKE_CALLBACK)
def take(request: HttpRequest, request_id: int) -> HttpResponse:
    from messaging.models import CallbackRequest
    from messaging.services.operator import callback_take

    if callback_take(request_id=request_id, user=request.user):
        client_id = CallbackRequest.objects.values_list("client_id", flat=True).get(pk=request_id)
        url = reverse("card:card", kwargs={"client_id": client_id})
        return HttpResponseRedirect(f"{url}?callback={request_id}")
    messages.warning(request, gettext("Another operator has already taken this request."))
    return redirect("card:queue")


@require_POST
@staff_permission(perms.VIEW_CARD)
def extension(request: HttpRequest) -> HttpResponse:
    """The operator's own PBX extension (for click-to-call and the incoming-call pop-up)."""
    value = request.POST.get("extension", "").strip()[:32]
    if value and not value.replace("*", "").replace("#", "").isalnum():
        messages.error(request, gettext("An extension is digits, like 101."))
    else:
        # Staff only (the decorator): an authenticated user with a primary key.
        user_id = cast(int, request.user.pk)
        OperatorProfile.objects.update_or_create(user_id=user_id, defaults={"extension": value})
        messages.success(request, gettext("Your extension is saved."))
    return redirect("card:queue")


@require_GET
@staff_permission(perms.VIEW_CARD)
def incoming(request: HttpRequest) -> HttpResponse:
    """The call ringing the operator's extension now, if any (polled by the card pages)."""
    ext = request.GET.get("ext", "").strip() or selectors.operator_extension(request.user)
    call = selectors.incoming_call(extension=ext)
    if call is not None and call["client_id"]:
        url = reverse("card:card", kwargs={"client_id": call["client_id"]})
        call["url"] = f"{url}?direction=in"
    elif call is not None:
        call["url"] = reverse("card:search") + "?" + urlencode({"q": call["from"]})
    return JsonResponse(
        {"extension": ext, "call": call, "now": timezone.now()},
        encoder=DjangoJSONEncoder,
        json_dumps_params={"ensure_ascii": False},
    )
