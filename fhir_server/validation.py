"""R4 validation of incoming resources with the ``fhir.resources.R4B`` models (R4B accepts R4's clinical
resources). Validation runs on write only; stored JSON is served without re-validation.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .errors import InvalidResource

__all__ = ["summary_elements", "validate_resource"]

_MAX_REPORTED = 10


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validate_resource(resource: dict[str, Any]) -> None:
    """Check ``resource`` against its R4B model.

    Raises:
        InvalidResource: naming each failing element by its FHIR path (``Patient.name[0].family``).
    """
    resource_type = resource.get("resourceType")
    try:
        model = _model(resource_type)  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InvalidResource(f"unknown resourceType {resource_type!r}", code="not-supported") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems, paths = [], []
        for error in exc.errors()[:_MAX_REPORTED]:
            path = _fhir_path(resource_type, error["loc"])  # type: ignore[arg-type]
            paths.append(path)
            problems.append(f"{path}: {_message(error)}")
        more = len(exc.errors()) - _MAX_REPORTED
        if more > 0:
            problems.append(f"... and {more} more")
        raise InvalidResource(f"{resource_type} is not valid R4: " + "; ".join(problems), expression=paths) from None
    except (TypeError, ValueError) as exc:  # the models raise these for a few malformed shapes
        raise InvalidResource(f"{resource_type} is not valid R4: {exc}") from None


def _fhir_path(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("function-after[validate_extension(), function-wrap[validate()]]",):
            path += f".{part}"
    return path


def _message(error: Any) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown element"
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """The JSON names of the elements R4 marks isSummary for ``resource_type`` (for ``_summary=true``)."""
    model = _model(resource_type)
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra or {}
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)
