"""The two responses that carry a stored message's own content to the browser.

That content was written by whoever the application mailed on behalf of, so it is treated as
hostile: the HTML body is served under a Content-Security-Policy that lets it run nothing and
fetch nothing (and the admin page frames it with a ``sandbox`` attribute as well), and an
attachment is only ever downloaded, never rendered by the browser.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from .content import StoredAttachment

#: For the HTML body: inline styles and data: images only; no script, no remote fetch, no
#: form, no navigation of the framing page. ``sandbox`` also covers the URL opened by itself.
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)
#: For an attachment: nothing at all, should a browser render it despite the disposition.
ATTACHMENT_POLICY = "default-src 'none'; sandbox"


def html_preview(html: str) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # Set here, so that neither Django 6's CSP middleware nor a project's own policy
    # (both keep a header a view has set) replaces it with a looser one.
    response["Content-Security-Policy"] = PREVIEW_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    # The admin page frames this; XFrameOptionsMiddleware's DENY default would blank it.
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


def attachment_download(attachment: StoredAttachment) -> HttpResponse:
    response = HttpResponse(
        attachment.content, content_type=attachment.mimetype or "application/octet-stream"
    )
    response["Content-Disposition"] = (
        content_disposition_header(as_attachment=True, filename=attachment.filename) or "attachment"
    )
    response["Content-Security-Policy"] = ATTACHMENT_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    return response
