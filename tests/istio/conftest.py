"""Fixtures of tests/istio: `istio`, the IstioStack (istiod 1.26.0 in file mode + the stack's Envoy
as ingress gateway + RGW + issuer + authorizer), started once per session and stopped at the end.
test_manifests.py needs none of it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ISTIO_RELEASE = "1.26.0"


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture(scope="session")
def istio() -> Iterator:
    import istiod

    st = istiod.IstioStack()
    for name in ("placement.md", "swap.md", "NOTE.md"):
        (st.cfg.state_dir / name).unlink(missing_ok=True)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    st.down()  # leftovers of a killed session
    t0 = time.monotonic()
    st.timings = {}
    try:
        st.up()
        st.timings["stack_up_s"] = round(time.monotonic() - t0, 1)
        st.timings["istiod_xds_listening_s"] = round(st.start_istiod(), 1)
        yield st
    finally:
        st.timings["session_s"] = round(time.monotonic() - t0, 1)
        write_note(st)
        st.down()
        signal.signal(signal.SIGTERM, previous)


def write_note(st) -> None:  # type: ignore[no-untyped-def]
    """target/istio-stack/NOTE.md: the Istio release, timings, the placement table and the swap counts."""
    out = st.cfg.state_dir
    parts = [
        f"# make istio-e2e, {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
        f"Istio {ISTIO_RELEASE} pilot-discovery ({os.environ.get('PILOT_DISCOVERY', 'default cache path')}), "
        f"Envoy {st.cfg.envoy_bin}",
        f"timings: {st.timings}",
    ]
    swap_head = (
        "| manifest | mints | failed | by status | listener version before -> after |\n"
        "| --- | --- | --- | --- | --- |\n"
    )
    for name, title, head in (
        ("placement.md", "## Placement (Envoy's /config_dump, pushed by istiod)", ""),
        ("swap.md", "## Module swap (new sha256) under a load of mints, 8 keep-alive connections", swap_head),
    ):
        if (out / name).exists():
            parts += [title, head + (out / name).read_text()]
    (out / "NOTE.md").write_text("\n\n".join(parts) + "\n")
