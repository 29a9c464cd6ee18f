"""An example classifier rule, of the kind users add through MAILROOM["CLASSIFIERS"]."""

from __future__ import annotations

from mailroom.outcomes import Classification, Verdict
from tests.support.thirdparty_backend import VendorAPIException


def vendor_rejections_are_permanent(exc: BaseException) -> Classification | None:
    if isinstance(exc, VendorAPIException) and "Code: 1902" in str(exc):
        return Classification(
            verdict=Verdict.FAILED, reason="vendor rejected the message (code 1902)"
        )
    return None
