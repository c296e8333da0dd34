"""Errors a FHIR request can end in. Each one is a FHIR value: an HTTP status plus an OperationOutcome.

FhirError                     (status, issue code, diagnostics, expression)
├── BadRequest          400   invalid / value / structure
│   ├── InvalidSearch   400   bad search value, unsupported modifier, unknown parameter (strict)
│   └── InvalidResource 400   fails R4 validation; ``expression`` names the element
├── NotFound            404
├── MethodNotAllowed    405
├── Conflict            409
├── Gone                410   the resource was deleted
├── PreconditionFailed  412   If-Match mismatch, conditional with several matches
├── PayloadTooLarge     413
├── UnsupportedMedia    415
└── Unprocessable       422   business rule
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "FhirError",
    "Gone",
    "InvalidResource",
    "InvalidSearch",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Unprocessable",
    "UnsupportedMedia",
    "operation_outcome",
]


class FhirError(Exception):
    """A failed FHIR interaction: renders as an OperationOutcome with ``status``."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __init__(self, diagnostics: str, *, expression: list[str] | None = None, code: str | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression or []
        self.issue_code = code or self.code

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome that describes this error."""
        return operation_outcome("error", self.issue_code, self.diagnostics, self.expression)


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class InvalidSearch(BadRequest):
    code = "invalid"


class InvalidResource(BadRequest):
    code = "structure"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMedia(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    code = "business-rule"


def operation_outcome(
    severity: str, code: str, diagnostics: str, expression: list[str] | None = None
) -> dict[str, Any]:
    """Build an OperationOutcome with one issue."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
