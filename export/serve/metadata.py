"""Bundle facts in an ONNX file's ``metadata_props``: one entry per fact, key ``morphcat.<fact>``,
value the fact as a JSON string, so a lone ``.onnx`` file still says what it is."""

from __future__ import annotations

import json

PREFIX = "morphcat."


def set_facts(proto, facts: dict) -> None:
    """Replace ``proto``'s morphcat entries by ``facts`` (other producers' entries are kept)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    for key, value in kept + [(PREFIX + k, json.dumps(v, sort_keys=True)) for k, v in sorted(facts.items())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_facts(props: dict[str, str]) -> dict:
    """``{fact: value}`` from a key → string map (``proto.metadata_props`` as a dict, or an
    onnxruntime session's ``get_modelmeta().custom_metadata_map``)."""
    return {k[len(PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)}


def proto_props(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}
