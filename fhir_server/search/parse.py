"""Parse a query string into a ``SearchRequest``. Every bad value and unsupported modifier fails here,
before any SQL exists; unknown parameters are ignored (or rejected under ``Prefer: handling=strict``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InvalidSearch
from ..searchparams import SearchParam, SearchParamRegistry
from .kinds import PARAM_TYPES
from .request import Filter, HasFilter, Include, SearchRequest, SortKey
from .text import split_escaped
from .types import SearchContext

__all__ = ["PageLimits", "parse_search"]

# Parameters that control the result, not the match (R4 search.html#return), and ones we accept and ignore.
_RESULT_PARAMS = {"_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"}
_HARMLESS = {"_format", "_pretty", "_totalMethod"}  # _totalMethod: fhirpy sends it (an Aidbox parameter)
# R4 puts :iterate on the parameter name (_include:iterate=Patient:link); STU3 called it :recurse
_ITERATED = {f"{n}:{m}" for n in ("_include", "_revinclude") for m in ("iterate", "recurse")}


@dataclass(frozen=True)
class PageLimits:
    default: int = 20
    maximum: int = 200


def parse_search(
    resource_type: str,
    items: list[tuple[str, str]],
    registry: SearchParamRegistry,
    ctx: SearchContext,
    *,
    limits: PageLimits = PageLimits(),
    strict: bool = False,
) -> SearchRequest:
    """Turn ``(name, value)`` pairs into a typed request.

    Raises:
        InvalidSearch: a bad value, an unsupported modifier, or (strict) an unknown parameter.
    """
    request = SearchRequest(resource_type=resource_type, count=limits.default)
    for name, value in items:
        if name in _HARMLESS:
            continue
        if name in _RESULT_PARAMS:
            _result_param(request, name, value, registry, limits)
            request.used.append((name, value))
            continue
        if name in _ITERATED:
            include = _include(name.partition(":")[0], value, resource_type, registry)
            request.includes.append(replace(include, iterate=True))
            request.used.append((name, value))
            continue
        if name.startswith("_has:"):
            request.has.append(_has_filter(name, value, registry, ctx))
            request.used.append((name, value))
            continue
        parsed = _filter(resource_type, name, value, registry, ctx, strict)
        if parsed is None:
            request.ignored.append(name)
            continue
        request.filters.append(parsed)
        request.used.append((name, value))
    return request


def _filter(
    resource_type: str, name: str, value: str, registry: SearchParamRegistry, ctx: SearchContext, strict: bool
) -> Filter | None:
    head, _, chain = name.partition(".")
    code, colon, modifier = head.partition(":")
    param = registry.get(resource_type, code)
    if param is None:
        reason = registry.why_unsupported(resource_type, code)
        if reason is not None:  # an R4 parameter we cannot evaluate: ignoring it would return wrong matches
            raise InvalidSearch(
                f"search parameter {code!r} of {resource_type} is not supported by this server ({reason}); "
                "search its components separately",
                code="not-supported",
            )
        if strict:
            raise InvalidSearch(f"unknown search parameter {code!r} for {resource_type}", code="not-supported")
        return None
    if colon and not modifier:  # "code:=x" is malformed, not a plain "code=x"
        raise InvalidSearch(f"search parameter {name!r} has an empty modifier")
    mod = modifier or None
    if chain:
        return _chained(param, mod, chain, value, registry, ctx, strict)
    _check_modifier(param, mod, registry)
    values = [v for v in split_escaped(value, ",") if v != ""]
    if not values:
        raise InvalidSearch(f"search parameter {name!r} has an empty value")
    if mod == "missing":
        if values not in (["true"], ["false"]):
            raise InvalidSearch(f"{name} takes true or false, not {value!r}")
    else:
        kind = PARAM_TYPES[param.type]
        context = _with_targets(ctx, param)
        for v in values:
            kind.clause(v, mod if mod != "not" else None, context)  # raises on a bad value
    return Filter(param=param, modifier=mod, values=values)


def _with_targets(ctx: SearchContext, param: SearchParam) -> SearchContext:
    return replace(ctx, targets=param.targets)


def _check_modifier(param: SearchParam, modifier: str | None, registry: SearchParamRegistry) -> None:
    if modifier is None:
        return
    kind = PARAM_TYPES[param.type]
    if modifier in kind.modifiers:
        return
    if param.type == "reference" and modifier in registry.resource_types:
        if param.targets and modifier not in param.targets:
            raise InvalidSearch(f"{param.code} cannot refer to {modifier}; it refers to {', '.join(param.targets)}")
        return
    allowed = ", ".join(sorted(":" + m for m in kind.modifiers)) + (", :[type]" if param.type == "reference" else "")
    raise InvalidSearch(
        f"modifier :{modifier} is not supported on {param.type} parameter {param.code!r} (supported: {allowed})",
        code="not-supported",
    )


def _chained(
    param: SearchParam,
    modifier: str | None,
    chain: str,
    value: str,
    registry: SearchParamRegistry,
    ctx: SearchContext,
    strict: bool,
) -> Filter:
    if param.type != "reference":
        raise InvalidSearch(f"{param.code} is a {param.type} parameter; only reference parameters can be chained")
    if "." in chain.partition(":")[0]:
        raise InvalidSearch(f"chains of more than one level are not supported ({param.code}.{chain})")
    types = (modifier,) if modifier else param.targets
    types = tuple(t for t in types if t in registry.resource_types)
    chained_code = chain.partition(":")[0]
    usable = tuple(t for t in types if registry.get(t, chained_code) is not None)
    if not usable:
        raise InvalidSearch(f"no type that {param.code} refers to has a search parameter {chained_code!r}")
    inner = None
    for target in usable:
        inner = _filter(target, chain, value, registry, ctx, strict=True)
    assert inner is not None
    return Filter(param=param, modifier=None, values=[], chained=inner, chain_types=usable)


def _has_filter(name: str, value: str, registry: SearchParamRegistry, ctx: SearchContext) -> HasFilter:
    parts = name.split(":", 3)  # the parameter may carry a modifier of its own (_has:Condition:subject:code:text)
    if len(parts) != 4 or not parts[3]:
        raise InvalidSearch(f"{name!r} must be _has:Type:reference:parameter")
    _, source_type, ref_code, inner_name = parts
    if source_type not in registry.resource_types:
        raise InvalidSearch(f"{name}: unknown resource type {source_type!r}")
    reference = registry.get(source_type, ref_code)
    if reference is None or reference.type != "reference":
        raise InvalidSearch(f"{name}: {source_type} has no reference parameter {ref_code!r}")
    inner = _filter(source_type, inner_name, value, registry, ctx, strict=True)
    assert inner is not None
    return HasFilter(source_type=source_type, reference=reference, inner=inner)


def _result_param(
    request: SearchRequest, name: str, value: str, registry: SearchParamRegistry, limits: PageLimits
) -> None:
    if name == "_count":
        request.count = min(_non_negative(name, value), limits.maximum)
        if request.count == 0:
            request.summary = "count"
    elif name == "_offset":
        request.offset = _non_negative(name, value)
    elif name == "_sort":
        for key in (k.strip() for k in value.split(",") if k.strip()):
            descending = key.startswith("-")
            code = key.lstrip("-")
            if code in ("_id", "_lastUpdated"):
                request.sort.append(SortKey(code, None, descending))
                continue
            param = registry.get(request.resource_type, code)
            if param is None:
                raise InvalidSearch(f"cannot sort {request.resource_type} by unknown parameter {code!r}")
            request.sort.append(SortKey(code, param, descending))
    elif name in ("_include", "_revinclude"):
        request.includes.append(_include(name, value, request.resource_type, registry))
    elif name == "_summary":
        if value not in ("true", "text", "data", "count", "false"):
            raise InvalidSearch(f"_summary must be true, text, data, count or false, not {value!r}")
        request.summary = value  # type: ignore[assignment]
    elif name == "_elements":
        request.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise InvalidSearch(f"_total must be none, estimate or accurate, not {value!r}")
        request.total = value  # type: ignore[assignment]


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise InvalidSearch(f"{name} must be a whole number of 0 or more, not {value!r}")
    return int(value)


def _include(name: str, value: str, resource_type: str, registry: SearchParamRegistry) -> Include:
    reverse = name == "_revinclude"
    iterate = False
    if value.endswith(":iterate") or value.endswith(":recurse"):
        iterate, value = True, value.rsplit(":", 1)[0]
    if value == "*":
        return Include(resource_type, None, None, reverse, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise InvalidSearch(f"{name} must be Type:parameter[:TargetType], not {value!r}")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in registry.resource_types:
        raise InvalidSearch(f"{name}: unknown resource type {source!r}")
    if code != "*":
        param = registry.get(source, code)
        if param is None or param.type != "reference":
            raise InvalidSearch(f"{name}: {source} has no reference parameter {code!r}")
    if target is not None and target not in registry.resource_types:
        raise InvalidSearch(f"{name}: unknown target type {target!r}")
    return Include(source, None if code == "*" else code, target, reverse, iterate)
