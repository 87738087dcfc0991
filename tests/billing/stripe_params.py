"""Request validation for the test Stripe server from stripe-python's generated request types.

``stripe/params/`` holds one TypedDict per endpoint, generated from Stripe's OpenAPI spec for the
API version the pinned SDK speaks: nested keys, required keys and enum values (``Literal``). The
server checks every decoded form body or query string against them, so a misspelt nested key
(``recurring[usage_typ]``, ``tiers[0][flat_amnt]``, ``items[0][prise]``) or an unknown enum value
is a 400 here as it is at Stripe, not a silently ignored parameter.

Form encoding carries strings only: an ``int`` must look like one, a ``bool`` is ``true``/``false``.
``Literal[...]|str`` in the types is the SDK's forward compatibility; the API itself accepts only
the listed values, so they are enforced (``Literal['']|X`` means "empty string unsets", and is
accepted as such).
"""

from __future__ import annotations

import re
import types
import typing
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal, Union

from stripe._request_options import RequestOptions
from typing_extensions import NotRequired, Required, is_typeddict

_SDK_OPTIONS = frozenset(RequestOptions.__annotations__)  # api_key, idempotency_key, ...: not API params
# Names RequestOptions' (inherited, skipped) fields use without the endpoint module importing them.
_LOCALS = {"StripeContext": object, "Mapping": typing.Mapping}
_INT = re.compile(r"-?\d+")


class ParamError(Exception):
    """What Stripe says about a parameter: the message and the param in bracket notation."""

    def __init__(self, param: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


@cache
def _fields(typed_dict: type) -> dict[str, tuple[Any, bool]]:
    """name -> (type, required) of one TypedDict, SDK request options left out."""
    hints = typing.get_type_hints(typed_dict, localns=_LOCALS, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        if name in _SDK_OPTIONS:
            continue
        required = name in typed_dict.__required_keys__
        origin = typing.get_origin(hint)
        if origin in (NotRequired, Required):
            required = origin is Required
            (hint,) = typing.get_args(hint)
        fields[name] = (hint, required)
    return fields


def _name(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if path else str(key)


def _literals(hint: Any) -> list[Any]:
    return list(typing.get_args(hint)) if typing.get_origin(hint) is Literal else []


def validate(params: Any, typed_dict: type, path: str = "") -> None:
    """Raise `ParamError` for the first parameter Stripe would refuse."""
    if not isinstance(params, dict):
        raise ParamError(path, f"Invalid object for {path}")
    fields = _fields(typed_dict)
    for key, value in params.items():
        if key not in fields:
            name = _name(path, key)
            raise ParamError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        _check(value, fields[key][0], _name(path, key))
    for key, (_, required) in fields.items():
        if required and key not in params:
            name = _name(path, key)
            raise ParamError(name, f"Missing required param: {name}.", "parameter_missing")


def _arms(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [arm for sub in typing.get_args(hint) for arm in _arms(sub)]
    return [hint]


def _check(value: Any, hint: Any, path: str) -> None:
    arms = [arm for arm in _arms(hint) if arm is not type(None)]
    literals = [v for arm in arms for v in _literals(arm)]
    others = [arm for arm in arms if not _literals(arm)]
    if any(value == v or value == str(v) for v in literals):
        return
    if literals and literals != [""]:
        others = [arm for arm in others if arm is not str]  # an enum: only its values
    errors: list[ParamError] = []
    for arm in others:
        try:
            _check_one(value, arm, path)
            return
        except ParamError as exc:
            errors.append(exc)
    if errors and not literals:
        raise errors[0]
    allowed = " or ".join(repr(str(v)) for v in literals if v != "")
    raise ParamError(path, f"Invalid {path}: must be one of {allowed}" if allowed else f"Invalid value for {path}")


def _check_one(value: Any, hint: Any, path: str) -> None:
    origin = typing.get_origin(hint)
    if is_typeddict(hint):
        validate(value, hint, path)
    elif origin in (list, typing.List):
        if not isinstance(value, list):
            raise ParamError(path, f"Invalid array for {path}")
        (item,) = typing.get_args(hint)
        for index, element in enumerate(value):
            _check(element, item, _name(path, index))
    elif origin in (dict, typing.Dict) or getattr(hint, "__name__", "") == "UntypedStripeObject" \
            or getattr(origin, "__name__", "") == "UntypedStripeObject":
        if not isinstance(value, dict):
            raise ParamError(path, f"Invalid object for {path}")
    elif hint is bool:
        if value not in ("true", "false"):
            raise ParamError(path, f"Invalid boolean: {value}")
    elif hint is int:
        if not isinstance(value, str) or not _INT.fullmatch(value):
            raise ParamError(path, f"Invalid integer: {value}")
    elif hint is Decimal or hint is float:
        try:
            Decimal(value)
        except (InvalidOperation, TypeError):
            raise ParamError(path, f"Invalid decimal: {value}") from None
    elif hint is str or hint is Any:
        if not isinstance(value, str):
            raise ParamError(path, f"Invalid string for {path}")
    # anything else (forward references to SDK classes the API never receives) is left to the handlers
