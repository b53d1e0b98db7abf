"""The webhook's exception types.

Why a separate module: the engine raises them and the HTTP adapter maps them to status codes; neither
should import the other for that. Only malformed input is an exception; a pod that breaks a rule is a
normal outcome (an AdmissionReview denial), never an exception.
"""

from __future__ import annotations


class ReviewError(Exception):
    """Base of every error about the AdmissionReview itself (not about the pod's contents)."""


class MalformedReviewError(ReviewError):
    """The body is not an AdmissionReview we can answer (bad JSON shape, missing uid, ...): HTTP 400."""
