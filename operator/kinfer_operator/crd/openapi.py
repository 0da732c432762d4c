"""Turn pydantic's JSON Schema of the spec model into a Kubernetes *structural* OpenAPI v3 schema.

Kubernetes accepts only a subset of JSON Schema in a CRD (every node typed, no ``$ref``, no ``anyOf`` of
types, no ``additionalProperties`` next to ``properties``, OpenAPI 3.0's boolean ``exclusiveMinimum``), so the
conversion inlines references, folds ``X | None`` into ``nullable``, and keeps what the API server can enforce:
types, enums, patterns, ranges, defaults and descriptions. Pure functions, no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

# JSON Schema keywords that carry over unchanged into a structural schema.
_KEPT_KEYWORDS = (
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "format",
    "description",
    "default",
)


def structural_schema(json_schema: dict[str, Any]) -> dict[str, Any]:
    """The structural schema of a pydantic ``model_json_schema(by_alias=True)`` document."""
    definitions = json_schema.get("$defs", {})
    root = {key: value for key, value in json_schema.items() if key != "$defs"}
    return _convert(root, definitions)


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref``; keywords written next to it (default, description) win over the definition's."""
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = copy.deepcopy(definitions[name])
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return _resolve(merged, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, definitions)
    variants = node.get("anyOf") or node.get("oneOf")
    if variants:
        return _convert_union(node, variants, definitions)

    out: dict[str, Any] = {key: copy.deepcopy(node[key]) for key in _KEPT_KEYWORDS if key in node}
    out |= {key: copy.deepcopy(value) for key, value in node.items() if key.startswith("x-kubernetes-")}
    if "exclusiveMinimum" in node:  # JSON Schema 2020 number → OpenAPI 3.0 boolean form
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    if out.get("default", 0) is None:
        del out["default"]  # "no value" is expressed by leaving the field out

    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties")
        if properties:
            out["properties"] = {name: _convert(sub, definitions) for name, sub in properties.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
            _default_nested_objects(out)
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = _convert(node["additionalProperties"], definitions)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = _convert(node.get("items", {}), definitions)
    elif kind is None and "enum" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _convert_union(node: dict[str, Any], variants: list[dict[str, Any]], definitions: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` becomes a nullable X; any other union of scalars becomes an untyped, free value."""
    concrete = [v for v in variants if v.get("type") != "null"]
    nullable = len(concrete) != len(variants)
    siblings = {key: value for key, value in node.items() if key not in ("anyOf", "oneOf")}
    if len(concrete) == 1:
        out = _convert({**concrete[0], **siblings}, definitions)
    else:
        kinds = sorted(str(_resolve(v, definitions).get("type")) for v in concrete)
        out = {key: copy.deepcopy(siblings[key]) for key in ("description",) if key in siblings}
        if kinds == ["integer", "string"]:
            out["x-kubernetes-int-or-string"] = True
        else:
            # e.g. number | string: the API server can't express it; the operator's model validates it.
            out["x-kubernetes-preserve-unknown-fields"] = True
            note = f"One of: {', '.join(kinds)}."
            out["description"] = f"{out['description']} {note}" if "description" in out else note
        if siblings.get("default") is not None:
            out["default"] = siblings["default"]
    if nullable:
        out["nullable"] = True
    return out


def _default_nested_objects(schema: dict[str, Any]) -> None:
    """Give optional sub-objects ``default: {}`` so the API server fills their own defaults in.

    Without it, ``serving.tfserving.grpcPort`` would stay unset until a user writes ``serving: {}`` by hand.
    """
    required = set(schema.get("required", ()))
    for name, sub in schema["properties"].items():
        if name in required or "default" in sub or sub.get("nullable"):
            continue
        if sub.get("type") == "object" and "properties" in sub:
            sub["default"] = {}


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every node of a structural schema with its dotted path (used by tests and CEL placement)."""
    nodes = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        nodes += walk(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes
