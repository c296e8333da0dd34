"""R4 validation of incoming resources with the ``fhir.resources.R4B`` models (R4B accepts R4's clinical
resources). Validation runs on write only; stored JSON is served without re-validation.
"""

from __future__ import annotations

import decimal
import typing
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
    if not isinstance(resource_type, str):
        raise InvalidResource("the resource has no resourceType", expression=["resourceType"])
    try:
        model = _model(resource_type)
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
    except RecursionError:  # elements nested hundreds deep (extension in extension ...) exhaust the models' stack
        raise InvalidResource(f"{resource_type} is not valid R4: its elements are nested too deeply") from None
    except KeyError as exc:  # the models look contained resources up by type: an unknown one is a KeyError
        name = str(exc).strip("'\"").removeprefix("R4.").removesuffix("Type")
        raise InvalidResource(f"{resource_type} is not valid R4: {name!r} is not a resource type") from None
    wrong: list[str] = []
    _check_json_types(resource, model, resource_type, wrong)
    if wrong:
        problems = [f"{path}: {kind}" for path, kind in zip(wrong[::2], wrong[1::2], strict=True)]
        raise InvalidResource(
            f"{resource_type} is not valid R4: " + "; ".join(problems[:_MAX_REPORTED]), expression=wrong[::2]
        )


# The models coerce "true", 1 and "7" into booleans and numbers, but FHIR JSON writes booleans as true/false and
# integers and decimals as numbers (R4 json.html): a stored "7" would be missed by every value search.
_JSON_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "boolean": ((bool,), "must be a JSON true or false"),
    "integer": ((int,), "must be a JSON integer"),
    "decimal": ((int, float), "must be a JSON number"),
}


def _check_json_types(value: dict[str, Any], model: Any, path: str, wrong: list[str]) -> None:
    """Append (path, problem) pairs to ``wrong`` for primitives of the wrong JSON type in an already valid value."""
    shape = _shape(model)
    for key, item in value.items():
        kind = shape.get(key)
        if kind is None or item is None:
            continue
        items = item if isinstance(item, list) else [item]
        for index, element in enumerate(items):
            where = f"{path}.{key}" + (f"[{index}]" if isinstance(item, list) else "")
            if kind in _JSON_KINDS:
                allowed, problem = _JSON_KINDS[kind]
                if isinstance(element, bool) != (kind == "boolean") or not isinstance(element, allowed):
                    wrong += [where, f"{problem}, not {element!r}"]
            elif isinstance(element, dict):
                child = kind
                if kind == "resource":  # a contained resource: its own type says which model
                    try:
                        child = _model(element["resourceType"])
                    except (KeyError, ValueError, TypeError, AttributeError):
                        continue
                _check_json_types(element, child, where, wrong)


@cache
def _shape(model: Any) -> dict[str, Any]:
    """JSON name -> "boolean" | "integer" | "decimal", a model class, or "resource" (any resource), for the elements
    of ``model`` whose JSON type the checks above need."""
    shape: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        for leaf in _leaves(field.annotation):
            if leaf is bool:
                shape[field.alias or name] = "boolean"
            elif leaf is int:
                shape[field.alias or name] = "integer"
            elif leaf is decimal.Decimal:
                shape[field.alias or name] = "decimal"
            elif hasattr(leaf, "get_model_klass"):
                klass = leaf.get_model_klass()
                shape[field.alias or name] = "resource" if klass.__name__ == "Resource" else klass
    return shape


def _leaves(annotation: Any) -> list[Any]:
    """The types inside Optional[List[Annotated[int, ...]]] and the like."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    return [leaf for arg in args for leaf in _leaves(arg)] if args else [annotation]


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
