"""Validate a resource against the generated CRD the way the API server does (minus admission).

Order as in kube-apiserver: prune nothing (our schema forbids unknown fields by pydantic; the
API server would prune them, so we report them), apply structural defaults, check the OpenAPI
schema, then evaluate every `x-kubernetes-validations` CEL rule where it is attached.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema

_CEL = celpy.Environment()


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural) -> JSON Schema draft 7, for `jsonschema`."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("x-kubernetes-validations", "default", "nullable", "x-kubernetes-int-or-string"):
            continue
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if value:
                out[key] = node["minimum" if key == "exclusiveMinimum" else "maximum"]
        else:
            out[key] = value
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in out:
            out.pop(plain, None)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("type") == "object" and "properties" in node:
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_errors(schema: dict[str, Any], value: Any, path: str = "", old: Any = None) -> list[str]:
    """Errors of the CEL rules under `schema`. Transition rules (those reading `oldSelf`) run only
    when `old` is given, as the API server runs them only on updates; only the root's use it here."""
    errors: list[str] = []
    if value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue
        program = _CEL.program(_CEL.compile(rule["rule"]))
        bindings = {"self": celpy.json_to_cel(value)}
        if old is not None:
            bindings["oldSelf"] = celpy.json_to_cel(old)
        result = program.evaluate(bindings)
        if not isinstance(result, celpy.celtypes.BoolType) or not bool(result):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def validate_against_crd(
    crd: dict[str, Any], resource: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    """Problems the API server would report for `resource` (an update of `old` when given); []
    when it would accept it."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    resource = apply_defaults(schema, copy.deepcopy(resource))
    if old is not None:
        old = apply_defaults(schema, copy.deepcopy(old))
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(resource)]
    return errors or cel_errors(schema, resource, old=old)
