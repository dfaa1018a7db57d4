"""Constant Contact's own swagger definitions (a JSON copy shipped in this package), compiled once.

`cc_v3_swagger.json` is `constant-contact-v3.swagger.yaml` (build 3.0.172) converted to JSON; a
test checks it still equals the reference YAML. Validators are built once per definition, so a
request costs one compiled validation, not a schema walk.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

SPEC_FILE = "cc_v3_swagger.json"


@cache
def spec() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator(definition: str) -> Draft4Validator:
    """A compiled validator for `#/definitions/<definition>`."""
    definitions = spec()["definitions"]
    if definition not in definitions:
        raise KeyError(f"no definition {definition!r} in the Constant Contact spec")
    return Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": definitions})


def first_error(definition: str, body: Any) -> str | None:
    """A short message for the first violation, or None; it names the field and the rule but
    never echoes the value (which may be personal data)."""
    best: ValidationError | None = None
    for error in validator(definition).iter_errors(body):
        if best is None or list(error.absolute_path) < list(best.absolute_path):
            best = error
    return None if best is None else describe(best)


def describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "body"
    rule, limit = error.validator, error.validator_value
    if rule == "required":
        missing = [name for name in limit if isinstance(error.instance, dict)
                   and name not in error.instance]
        return f"{where}: required property {', '.join(missing) or limit} is missing"
    if rule == "maxLength":
        return f"{where}: length must be at most {limit}"
    if rule == "minLength":
        return f"{where}: length must be at least {limit}"
    if rule == "maxItems":
        return f"{where}: at most {limit} items are allowed"
    if rule == "minItems":
        return f"{where}: at least {limit} item(s) required"
    if rule == "type":
        return f"{where}: must be of type {limit}"
    if rule == "enum":
        return f"{where}: must be one of {', '.join(map(str, limit))}"
    if rule in ("maximum", "minimum"):
        return f"{where}: must be {'at most' if rule == 'maximum' else 'at least'} {limit}"
    return f"{where}: violates {rule}"


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The spec's response schema of one operation (paths as in the spec, e.g. /contacts)."""
    operation = spec()["paths"][path][method.lower()]
    answer = operation["responses"].get(str(status))
    if answer is None or "schema" not in answer:
        return None
    return {**answer["schema"], "definitions": spec()["definitions"]}


def response_errors(path: str, method: str, status: int, body: Any) -> list[str]:
    """Every violation of the spec's response schema (empty when valid or not described)."""
    schema = response_schema(path, method, status)
    if schema is None:
        return []
    return [describe(error) for error in Draft4Validator(schema).iter_errors(body)]
