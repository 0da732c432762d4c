"""Every field of the InferencePipeline spec carries a description into the CRD, for ``kubectl explain``.

The description comes from the field's ``Field(description=...)`` or, for an object-typed field without one, from
its model's docstring. The synthetic ``[]`` (array item) and ``{}`` (map value) nodes are not fields and are skipped.
"""

from __future__ import annotations

from kinfer_operator.crd.generate import spec_schema
from kinfer_operator.crd.openapi import walk


def undescribed_fields() -> list[str]:
    """Dotted paths of the spec's fields whose schema node has no non-empty description."""
    return [
        path
        for path, node in walk(spec_schema())
        if path and not path.endswith(("[]", "{}")) and not str(node.get("description", "")).strip()
    ]


def test_every_spec_field_has_a_description() -> None:
    missing = undescribed_fields()
    assert not missing, f"{len(missing)} spec fields have no description:\n" + "\n".join(missing)
