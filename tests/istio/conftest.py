"""Fixtures of tests/istio: `istio`, the IstioStack (istiod 1.26.0 in file mode + the stack's Envoy
as ingress gateway + RGW + issuer + authorizer), started once per session and stopped at the end.
test_manifests.py needs none of it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture(scope="session")
def istio() -> Iterator:
    import istiod

    st = istiod.IstioStack()
    previous = signal.signal(signal.SIGTERM, _sigterm)
    st.down()  # leftovers of a killed session
    try:
        st.up()
        st.timings = {"istiod_ready_s": st.start_istiod()}
        yield st
    finally:
        st.down()
        signal.signal(signal.SIGTERM, previous)
