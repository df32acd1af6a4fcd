"""Generate the OREALRun CustomResourceDefinition from the pydantic models.

The models' JSON Schema (draft 2020-12) is rewritten into the structural OpenAPI v3 subset that
Kubernetes accepts: references inlined, `anyOf [X, null]` turned into `nullable`, integer-or-string
unions into `x-kubernetes-int-or-string`, tuples into fixed-length arrays, exclusive bounds into
OpenAPI 3.0 booleans, object defaults reduced to `{}` so the API server fills nested defaults, and
the cross-field rules of `models.CEL_RULES` attached as `x-kubernetes-validations`.

Free-form Kubernetes objects (podTemplate's affinity, volumes, env, ...) become objects with
`x-kubernetes-preserve-unknown-fields` (the API server checks them when the operator creates the
JobSet). `status.conditions` is a map keyed by type (`x-kubernetes-list-type: map`). Rules on the
whole resource (`ROOT_RULES`): the name fits the names of the run's JobSet, Jobs and pods, and once
the status shows the run started (`status.policyVersion`), only what `oreal.spec.frozen`
lets a started run change may change (one transition rule per section of the spec).

`crds/orealrun.yaml` is the output of `oreal crd`; a test regenerates it and fails on any change.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from oreal.spec.frozen import MUTABLE_PATHS
from oreal.spec.models import API_GROUP, API_VERSION, CEL_RULES, KIND, PLURAL, OREALRun

DROP_KEYS = {"title", "$defs", "discriminator"}
# The longest run name whose JobSet, Jobs and pods get valid names: a pod is called
# <run>-<replicatedJob>-<job index>-<pod index>-<5 random characters>, at most 63 characters,
# with the longest replicatedJob name (verifier) and up to 100 pods per role.
MAX_RUN_NAME = 63 - len("-verifier-0-99-abcde")
STARTED = "has(oldSelf.status) && has(oldSelf.status.policyVersion)"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
    {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
    {"name": "Total", "type": "integer", "jsonPath": ".status.totalSteps"},
    {"name": "Pass Rate", "type": "number", "jsonPath": ".status.lastMetrics.passRate"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def openapi_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of the OREALRun resource."""
    raw = OREALRun.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _convert(raw, defs)
    props = schema["properties"]
    # Kubernetes owns metadata's schema; a CRD may only say it is an object.
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    schema["required"] = ["spec"]
    schema.pop("default", None)
    conditions = props["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema["x-kubernetes-validations"] = root_rules(props["spec"])
    return schema


def root_rules(spec: dict[str, Any]) -> list[dict[str, str]]:
    """CEL rules on the whole resource: the name's length, and what a started run may not change."""
    rules = [
        {
            "rule": f"!has(self.metadata.name) || self.metadata.name.size() <= {MAX_RUN_NAME}",
            "message": f"metadata.name must be at most {MAX_RUN_NAME} characters: the names of the run's "
            "JobSet, Jobs and pods are made from it",
        }
    ]
    mutable = {".".join(path) for path in MUTABLE_PATHS}
    for section, node in spec["properties"].items():
        if section in mutable:
            continue
        if any(m.startswith(f"{section}.") for m in mutable):
            fields = [f"{section}.{f}" for f in node.get("properties", {}) if f"{section}.{f}" not in mutable]
            parent = node
        else:
            fields, parent = [section], spec
        same = " && ".join(_unchanged(f"spec.{f}", parent, f.rsplit(".", 1)[-1]) for f in fields)
        rules.append(
            {
                "rule": f"!({STARTED}) || ({same})",
                "message": f"spec.{section}: {_what(fields, section)} cannot change once the run has started "
                "(status.policyVersion is set): the bucket holds its results; create a new run instead",
            }
        )
    return rules


def _unchanged(path: str, parent: dict[str, Any], name: str) -> str:
    """CEL: the field at `path` is the same in self and oldSelf (absent in both counts as the same)."""
    always_there = "default" in parent["properties"][name] or name in parent.get("required", [])
    if always_there:
        return f"self.{path} == oldSelf.{path}"
    return f"(has(self.{path}) ? has(oldSelf.{path}) && self.{path} == oldSelf.{path} : !has(oldSelf.{path}))"


def _what(fields: list[str], section: str) -> str:
    return (
        "this section"
        if fields == [section]
        else "all but "
        + ", ".join(
            sorted(
                p.split(".", 1)[1]
                for p in (".".join(m) for m in MUTABLE_PATHS)
                if p.startswith(f"{section}.")
            )
        )
    )


def crd_manifest() -> dict[str, Any]:
    """The whole apiextensions.k8s.io/v1 CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "oreal", "app.kubernetes.io/part-of": "oreal"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["oreal"],
                "categories": ["ml"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `oreal crd` from trainer/oreal/spec/models.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


def _convert(node: Any, defs: dict[str, Any], class_name: str | None = None) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, class_name=name)
    if "anyOf" in node:
        return _convert_any_of(node, defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
            if class_name is not None:
                _add_factory_defaults(class_name, out[key])
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, defs) if isinstance(value, dict) else value
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value

    if "prefixItems" in out:  # tuple[float, float] -> fixed-length array of one type
        items = [_convert(i, defs) for i in out.pop("prefixItems")]
        out["items"] = items[0]
        out["minItems"] = out["maxItems"] = len(items)
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in out and not isinstance(out[bound], bool):
            out[plain] = out.pop(bound)
            out[bound] = True
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        out.pop("additionalProperties")  # extra="forbid": structural schemas prune unknown fields
    if out.get("type") == "object" and out.get("additionalProperties") is True and "properties" not in out:
        out.pop("additionalProperties")  # dict[str, Any]: a Kubernetes object passed through as written
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "default" in out:
        default = out["default"]
        if default is None:
            out.pop("default")
        elif isinstance(default, dict) and "properties" in out:
            out["default"] = {}
    if class_name and class_name in CEL_RULES:
        out["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in CEL_RULES[class_name]]
    return out


def _models_by_name(model: type[BaseModel], found: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    found[model.__name__] = model
    for field in model.model_fields.values():
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if (
                isinstance(candidate, type)
                and issubclass(candidate, BaseModel)
                and candidate.__name__ not in found
            ):
                _models_by_name(candidate, found)
    return found


MODELS = _models_by_name(OREALRun, {})


def _add_factory_defaults(class_name: str, properties: dict[str, Any]) -> None:
    """Give object fields built by a default_factory a server-side default.

    `{}` is enough when the nested object has no required field: the API server then fills its
    nested defaults. Otherwise (optimisers) the whole default object is written out.
    """
    model = MODELS.get(class_name)
    if model is None:
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.default_factory is None or key not in properties:
            continue
        value = field.default_factory()
        if isinstance(value, BaseModel):
            sub = properties[key]
            sub["default"] = value.model_dump(mode="json", by_alias=True) if sub.get("required") else {}
        elif isinstance(value, (list, dict)):
            properties[key]["default"] = value


def _convert_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    nullable = len(options) < len(node["anyOf"])
    extras = {k: v for k, v in node.items() if k not in ("anyOf", *DROP_KEYS)}
    types = {o.get("type") for o in options}
    if len(options) == 1:
        out = {**_convert(options[0], defs), **_convert(extras, defs)}
    elif types == {"integer", "string"}:
        out = {"x-kubernetes-int-or-string": True, **extras}
        enums = [v for o in options for v in ([o["const"]] if "const" in o else o.get("enum", []))]
        mins = [o["minimum"] for o in options if "minimum" in o]
        if enums:  # e.g. keepPerPrompt: an integer >= 1 or the string 'all'
            allowed = " || ".join(f"self == '{e}'" for e in enums)
            int_rule = f"self >= {mins[0]}" if mins else "true"
            out["x-kubernetes-validations"] = [
                {
                    "rule": f"type(self) == int ? {int_rule} : ({allowed})",
                    "message": f"must be an integer{f' >= {mins[0]}' if mins else ''} or one of {enums}",
                }
            ]
    else:
        raise ValueError(f"cannot express anyOf {node['anyOf']} as a structural schema")
    if nullable:
        out["nullable"] = True
    if out.get("default", 0) is None:
        out.pop("default")
    return out
