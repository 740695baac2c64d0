"""The generated Istio manifests against Istio's own CRD schemas (no stack needed).

- every Istio resource that `envoy/generate.py --istio-release R` writes is valid against the CRD
  schema of each supported release >= R (1.26.0, the field's, and 1.30.3), for its apiVersion;
- the default (1.26) WasmPlugin says FAIL_CLOSE, 1.27 and later FAIL_RELOAD;
- positive controls: the 1.27 WasmPlugin (FAIL_RELOAD) is refused by the 1.26.0 schema, and an
  unknown field is refused by both (so a validator that accepts everything fails here).
The schemas are read from ../shared/istio-crds/ beside the repository; without them this fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "envoy"))

import crds  # noqa: E402

import generate  # noqa: E402

SHA = "0123456789abcdef" * 4
RELEASES = ["1.26", "1.27", "1.30"]
# The generated files that are not Istio resources (Kubernetes core/apps: no Istio CRD schema).
NOT_ISTIO = {("v1", "Secret"), ("apps/v1", "Deployment")}


@pytest.fixture(params=sorted(crds.CRD_FILES))
def schema(request):
    try:
        return crds.load(request.param)
    except crds.MissingSchemas as e:
        pytest.fail(str(e))  # never a skip: CI must have the schemas


def manifests(release: str, url: str | None = None) -> dict[str, list[dict]]:
    files = generate.generate(
        generate.load_source(), generate.TEMPLATE.read_text(), sha256=SHA, url=url, release=release
    )
    return {
        rel: [d for d in yaml.safe_load_all(text) if d] for rel, text in files.items() if rel.startswith("envoy/istio/")
    }


def release_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def istio_objects(release: str, url: str | None = None) -> list[tuple[str, dict]]:
    out = []
    for rel, docs in manifests(release, url).items():
        for d in docs:
            if (d["apiVersion"], d["kind"]) not in NOT_ISTIO:
                out.append((rel, d))
    return out


def test_schemas_define_the_kinds_the_manifests_use(schema):
    used = {(d["apiVersion"], d["kind"]) for r in RELEASES for _, d in istio_objects(r)}
    assert used == {("extensions.istio.io/v1alpha1", "WasmPlugin"), ("networking.istio.io/v1alpha3", "EnvoyFilter")}
    assert used <= schema.kinds(), f"Istio {schema.release} has no CRD version for {used - schema.kinds()}"


# (schema release, --istio-release): each generated set against every supported release it targets.
PAIRS = [(s, r) for s in sorted(crds.CRD_FILES) for r in RELEASES if release_tuple(r) <= release_tuple(s)]
URLS = [None, "file:///var/lib/sts-gateway/sts_gateway.wasm", "https://example.invalid/m.wasm"]


@pytest.mark.parametrize(("schema_release", "release"), PAIRS)
@pytest.mark.parametrize("url", URLS)
def test_every_manifest_is_valid_for_each_release_it_targets(schema_release, release, url):
    try:
        schema = crds.load(schema_release)
    except crds.MissingSchemas as e:
        pytest.fail(str(e))
    objs = istio_objects(release, url)
    assert len(objs) == 4  # wasmplugin, envoyfilter, envoyfilter-before-router (NMN and CMN)
    for rel, obj in objs:
        assert schema.errors(obj) == [], f"{rel} (--istio-release {release}) invalid for Istio {schema_release}"


def test_pairs_cover_both_schemas():
    assert ("1.26.0", "1.26") in PAIRS and ("1.30.3", "1.26") in PAIRS and ("1.30.3", "1.30") in PAIRS
    assert ("1.26.0", "1.27") not in PAIRS


def test_fail_strategy_per_release():
    def strategy(release):
        (wp,) = manifests(release)["envoy/istio/wasmplugin.yaml"]
        return wp["spec"]["failStrategy"]

    assert strategy(generate.DEFAULT_ISTIO_RELEASE) == "FAIL_CLOSE"
    assert generate.DEFAULT_ISTIO_RELEASE == "1.26"
    assert strategy("1.26.0") == "FAIL_CLOSE"
    for r in ("1.27", "1.27.0", "1.30", "1.30.3"):
        assert strategy(r) == "FAIL_RELOAD", r
    for bad in ("1.25", "2.0", "1", "latest"):
        with pytest.raises(ValueError):
            generate.istio_release(bad)


def test_committed_wasmplugin_targets_the_field_release():
    (wp,) = [d for d in yaml.safe_load_all((generate.REPO / "envoy/istio/wasmplugin.yaml").read_text()) if d]
    assert wp["spec"]["failStrategy"] == "FAIL_CLOSE"


def test_positive_control_fail_reload_is_refused_by_1_26_0():
    """The check can fail: Istio 1.26.0 refuses the 1.27 WasmPlugin, for its failStrategy only."""
    v126 = crds.load("1.26.0")
    (wp,) = manifests("1.27")["envoy/istio/wasmplugin.yaml"]
    assert v126.errors(wp) == ["'FAIL_RELOAD' is not one of ['FAIL_CLOSE', 'FAIL_OPEN'] at spec.failStrategy"]
    assert crds.load("1.30.3").errors(wp) == []


def test_positive_control_unknown_and_mistyped_fields_are_refused(schema):
    (wp,) = manifests("1.26")["envoy/istio/wasmplugin.yaml"]
    wp["spec"]["phaze"] = "STATS"
    wp["spec"]["priority"] = "10"
    errs = schema.errors(wp)
    assert any("'phaze' was unexpected" in e for e in errs), errs
    assert any("'10' is not of type 'integer' at spec.priority" in e for e in errs), errs
    (ef,) = manifests("1.26")["envoy/istio/envoyfilter.yaml"]
    ef["spec"]["configPatches"][0]["patch"]["operation"] = "INSERT_SOMEWHERE"
    assert any("spec.configPatches.0.patch.operation" in e for e in schema.errors(ef))


def test_missing_schemas_fail_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(crds, "CRD_DIR", tmp_path)
    with pytest.raises(crds.MissingSchemas, match="shared/istio-crds"):
        crds.load("1.26.0")
