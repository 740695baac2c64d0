"""Istio's CRD schemas (../shared/istio-crds/, beside the repository) as JSON-schema validators.

Each CRD carries one OpenAPI v3 schema per version (`spec.versions[].schema.openAPIV3Schema`); a
manifest is checked against the schema of its `apiVersion` (group/version) and `kind`. The schemas
are made strict the way the API server's strict field validation is (kubectl's default): an object
schema that lists `properties` and does not say `x-kubernetes-preserve-unknown-fields` refuses
unknown fields. CEL rules (`x-kubernetes-validations`) are not evaluated (no CEL here): the API
server checks those, the enum/pattern/type/required checks are done here.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
# CI clones the repository into a folder with shared/ beside it: the schemas are ../shared/istio-crds/.
CRD_DIR = Path(os.environ.get("ISTIO_CRD_DIR", REPO.parent / "shared" / "istio-crds"))
# The releases the manifests are checked against: the field's (HPE CSM: cray-istio 1.26.0) and the
# newest one copied.
CRD_FILES = {"1.26.0": "istio-1.26.0-crds.yaml", "1.30.3": "istio-1.30.3-crds.yaml"}


class MissingSchemas(Exception):
    pass


def _strict(schema: object, top: bool = False) -> object:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k in ("items", "additionalProperties", "not") else v for k, v in schema.items()}
    for key in ("properties", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: _strict(sub) for name, sub in schema[key].items()}
    for key in ("oneOf", "anyOf", "allOf"):
        if isinstance(schema.get(key), list):
            out[key] = [_strict(sub) for sub in schema[key]]
    if top:  # the object's envelope is not part of openAPIV3Schema
        out["properties"] = {
            **out.get("properties", {}),
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
        }
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass
class Validator:
    release: str
    schemas: dict[tuple[str, str], dict]  # (apiVersion, kind) -> strict schema
    _cache: dict = field(default_factory=dict, repr=False)

    def _validator(self, api_version: str, kind: str) -> jsonschema.Draft7Validator:
        key = (api_version, kind)
        if key not in self._cache:
            self._cache[key] = jsonschema.Draft7Validator(self.schemas[key])
        return self._cache[key]

    def kinds(self) -> set[tuple[str, str]]:
        return set(self.schemas)

    def errors(self, obj: dict) -> list[str]:
        """Every schema violation of `obj`, as `message at path`; [] when valid. Raises KeyError
        for an (apiVersion, kind) the release's CRDs do not define."""
        v = self._validator(obj["apiVersion"], obj["kind"])
        return sorted(
            f"{e.message} at {'.'.join(str(p) for p in e.absolute_path) or '<root>'}" for e in v.iter_errors(obj)
        )


def load(release: str) -> Validator:
    """The validator of an Istio release's CRDs (cached; raises MissingSchemas without the files)."""
    return _load(release, CRD_DIR)


@functools.cache
def _load(release: str, crd_dir: Path) -> Validator:
    path = crd_dir / CRD_FILES[release]
    if not path.is_file():
        raise MissingSchemas(
            f"Istio {release} CRD schemas not found at {path}: the tests need ../shared/istio-crds/ beside the "
            "repository (see /work/shared/istio-crds/README.md), or ISTIO_CRD_DIR pointing at a copy"
        )
    schemas: dict[tuple[str, str], dict] = {}
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for ver in crd["spec"]["versions"]:
            raw = copy.deepcopy(ver["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{ver['name']}", kind)] = _strict(raw, top=True)  # type: ignore[assignment]
    if not schemas:
        raise MissingSchemas(f"{path}: no CustomResourceDefinition in it")
    return Validator(release, schemas)
