"""Public, unauthenticated views: a tracked link and a one-click unsubscribe."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messaging.services.outbox import email_unsubscribe, link_click_record, unsubscribe_message


@require_http_methods(["GET", "HEAD"])
def tracked_link(request: HttpRequest, token: str) -> HttpResponse:
    landing = link_click_record(token=token, user_agent=request.headers.get("User-Agent", ""))
    if landing is None:
        raise Http404
    return HttpResponseRedirect(landing)


# Mail clients POST "List-Unsubscribe=One-Click" (RFC 8058) without a CSRF token; the signed
# token in the URL is what authorizes the request.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    message = unsubscribe_message(token)
    if message is None:
        raise Http404
    if request.method == "POST":
        email_unsubscribe(message=message, evidence=f"message {message.pk}, one-click link")
        return render(request, "messaging/unsubscribed.html", {"email": message.recipient})
    # A GET only asks: link scanners in mail systems must not unsubscribe anybody.
    return render(request, "messaging/unsubscribe.html", {"email": message.recipient})
