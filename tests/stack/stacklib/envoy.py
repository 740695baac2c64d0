"""Envoy: its configuration (rendered by envoy/generate.py), start, restart with variants, stats."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import REPO, StackError
from .procs import http_get, log, tail, wait_for


def generator():  # type: ignore[no-untyped-def]
    """envoy/generate.py, the one owner of the Envoy configuration's structure (imported lazily:
    it needs PyYAML from .venv, which `stack.py down` can do without)."""
    if str(REPO / "envoy") not in sys.path:
        sys.path.insert(0, str(REPO / "envoy"))
    import generate

    return generate


def deep_merge(base: dict, over: dict) -> dict:
    """Merge `over` into `base` (in place): dicts recurse, None deletes, anything else replaces."""
    for k, v in over.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


MOCK_CLUSTER = "mock_issuer"  # envoy/envoy.yaml.in: the mock issuer, routes /mock/...


class EnvoyMixin:
    def render_envoy(
        self,
        plugin_overrides: dict | Callable[[dict], dict | None] | None = None,
        extra_clusters: list[dict] | None = None,
        envoy_patch: Callable[[dict], dict | None] | None = None,
    ) -> dict:
        """The local Envoy configuration (envoy/generate.py renders it, as it renders
        envoy/envoy.yaml) with this stack's ports, absolute paths, issuer and RGW, plus overrides.

        plugin_overrides: a dict deep-merged into the plugin's JSON configuration (None deletes a
        key, lists replace), or a callable that edits (or returns) that configuration.
        extra_clusters: Envoy cluster dicts added (or replacing ones of the same name).
        envoy_patch: a callable that edits (or returns) the whole Envoy config dict (use the
        structure helpers of envoy/generate.py: wasm_filters(), add_route(), ...).
        """
        generate = generator()
        cfg = self.cfg
        plugin = generate.plugin_config(generate.load_source(), "local")
        # Two issuers: Keycloak (envoy/envoy.yaml's only one, the field's, cluster `keycloak`)
        # first, then the mock issuer on its own URL (cluster `mock_issuer`, JWKS at /jwks) for
        # the tests that need what Keycloak cannot do (hostile raw tokens, timed JWKS outages).
        plugin["issuers"][0]["issuer"] = cfg.issuer_url
        mock = copy.deepcopy(plugin["issuers"][0])
        mock["issuer"] = cfg.mock_issuer_url
        mock["jwks"].update(cluster=MOCK_CLUSTER, path="/jwks")
        plugin["issuers"].append(mock)
        plugin["rgw"].update(
            authority=f"127.0.0.1:{cfg.ports['rgw']}", endpoint_url=cfg.rgw_endpoint, role_arn=cfg.role_arn
        )
        if callable(plugin_overrides):
            plugin = plugin_overrides(plugin) or plugin
        elif plugin_overrides:
            deep_merge(plugin, plugin_overrides)
        params = {
            "ADMIN_PORT": cfg.ports["admin"],
            "HTTPS_PORT": cfg.ports["https"],
            "HTTP_PORT": cfg.ports["http"],
            "RGW_PORT": cfg.ports["rgw"],
            "KEYCLOAK_PORT": cfg.ports["keycloak"],
            "ISSUER_PORT": cfg.ports["issuer"],
            "TLS_DIR": cfg.tls_dir,
            "WASM": cfg.wasm,
        }
        doc = generate.local_envoy(params, plugin)
        generate.add_clusters(doc, extra_clusters or [])
        if envoy_patch is not None:
            doc = envoy_patch(doc) or doc
        return doc

    def mock_issuer_entry(self, plugin: dict) -> dict:
        """The mock issuer's entry of a plugin configuration, found by its issuer URL."""
        return next(i for i in plugin["issuers"] if i["issuer"] == self.cfg.mock_issuer_url)

    def mock_jwks(self, plugin: dict) -> dict:
        """The mock issuer's `jwks` settings in a plugin configuration (for plugin_overrides)."""
        return self.mock_issuer_entry(plugin)["jwks"]

    def only_mock_issuer(self, plugin: dict) -> dict:
        """The plugin configuration with the mock issuer as its only issuer (one JWKS source):
        for tests whose oracle counts JWKS fetches or times a kid-miss refetch of that source."""
        plugin["issuers"] = [self.mock_issuer_entry(plugin)]
        return plugin

    @staticmethod
    def plugin_config(doc: dict) -> dict:
        """The plugin JSON configuration inside a rendered Envoy config (first wasm filter)."""
        return generator().plugin_of(doc)

    def envoy_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Envoy's process environment: the token-service keys the filter reads through
        host_env_keys (never part of the configuration), plus `extra`."""
        return {
            **os.environ,
            "STS_GATEWAY_ACCESS_KEY_ID": self.cfg.access_key,
            "STS_GATEWAY_SECRET_ACCESS_KEY": self.cfg.secret_key,
            **(extra or {}),
        }

    def _write_envoy_config(self, doc: dict) -> tuple[Path, str]:
        import yaml

        d = self.cfg.state_dir / "envoy"
        d.mkdir(parents=True, exist_ok=True)
        text = (
            "# generated by tests/stack/stack.py (envoy/generate.py) from envoy/envoy.yaml.in; do not edit\n"
            + yaml.safe_dump(doc, sort_keys=False, width=120)
        )
        path = d / "envoy.yaml"
        path.write_text(text)
        h = hashlib.sha256(text.encode())
        h.update(self.cfg.wasm.read_bytes())
        return path, h.hexdigest()

    def ensure_envoy(self) -> None:
        """Start Envoy with the default config, or restart it if its config or the wasm changed."""
        path, fingerprint = self._write_envoy_config(self.render_envoy())
        fp_file = self.cfg.state_dir / "envoy" / "fingerprint"
        if self.envoy.alive() and fp_file.exists() and fp_file.read_text() == fingerprint:
            return
        if self.envoy.alive():
            log("Envoy config or filter changed: restarting Envoy")
        self._start_envoy(path)
        fp_file.write_text(fingerprint)
        self._envoy_variant = False

    def _start_envoy(
        self, config_path: Path, timeout: float = 20, wait_keys: bool = True, env: dict[str, str] | None = None
    ) -> None:
        self.envoy.stop()
        for key in ("https", "http", "admin"):
            self.check_port_free(key)
        logf = self.envoy_log_path
        with open(logf, "ab") as out:
            self._envoy_log_offset = out.tell()
            out.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting Envoy with {config_path}\n".encode())
            out.flush()
            p = subprocess.Popen(
                [
                    str(self.cfg.envoy_bin),
                    "-c",
                    str(config_path),
                    "--disable-hot-restart",
                    "--concurrency",
                    str(self.cfg.envoy_concurrency),
                    "--log-level",
                    "info",
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.envoy_env(env),
            )
        self._procs.append(p)
        self.envoy.pidfile.write_text(f"{p.pid}\n")

        def ready() -> bool:
            return http_get(f"{self.cfg.admin_url}/ready", timeout=1)[0] == 200

        try:
            wait_for(ready, timeout, "Envoy", alive=lambda: p.poll() is None)
        except StackError as e:
            self.envoy.stop()
            raise StackError(f"{e}\n{tail(logf, 60, self._envoy_log_offset)}") from None
        if wait_keys:
            self.wait_for_filter_keys()
        log(f"Envoy up (pid {p.pid}): {self.cfg.gateway_url} and {self.cfg.gateway_http_url}")

    def envoy_stats(self, prefix: str = "wasmcustom.") -> dict[str, int]:
        """Envoy's counters and gauges whose names start with `prefix` (the filter's metrics
        are `wasmcustom.sts_gateway_*`). Raises StackError when the admin endpoint does not
        answer 200: an empty dict would make `before == after` checks pass on a dead Envoy."""
        url = f"{self.cfg.admin_url}/stats?filter=^{prefix.replace('.', '[.]')}"
        try:
            status, body = http_get(url, timeout=2)
        except OSError as e:  # URLError, connection refused, timeout
            raise StackError(f"envoy admin {url}: {e}") from e
        if status != 200:
            raise StackError(f"envoy admin {url}: HTTP {status}: {body[:200]!r}")
        out: dict[str, int] = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix) and value.strip().isdigit():
                out[name] = int(value)
        return out

    def wait_for_filter_keys(self, timeout: float = 5.0) -> bool:
        """Wait until the filter finished its first JWKS fetch (its metrics
        sts_gateway_jwks_fetches_ok/_failed); False at once if the filter has no such metrics
        (e.g. the placeholder), False after `timeout` if no fetch finished. Never raises."""
        names = ("wasmcustom.sts_gateway_jwks_fetches_ok", "wasmcustom.sts_gateway_jwks_fetches_failed")
        deadline = time.monotonic() + timeout
        while True:
            try:
                stats = self.envoy_stats()
            except StackError:
                return False
            if not any(n in stats for n in names):
                return False
            if stats.get(names[0], 0) > 0:
                return True
            if stats.get(names[1], 0) > 0 or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def restart_envoy(
        self,
        plugin_overrides: dict | Callable[[dict], dict | None] | None = None,
        extra_clusters: list[dict] | None = None,
        envoy_patch: Callable[[dict], dict | None] | None = None,
        timeout: float = 20,
        wait_keys: bool = True,
        envoy_env: dict[str, str] | None = None,
    ) -> Path:
        """Restart Envoy with a variant of the default config (see render_envoy); returns once
        Envoy is ready, or raises StackError with the tail of Envoy's log. Without arguments it
        restores the default config. With wait_keys (default) it also waits (up to 5 s, never
        failing) until the filter finished its first JWKS fetch, see wait_for_filter_keys().
        envoy_env: extra environment variables of the Envoy process (e.g. secrets the filter
        reads through vm_config.environment_variables.host_env_keys).
        Returns the path of the config used."""
        doc = self.render_envoy(plugin_overrides, extra_clusters, envoy_patch)
        path, fingerprint = self._write_envoy_config(doc)
        fp_file = self.cfg.state_dir / "envoy" / "fingerprint"
        fp_file.unlink(missing_ok=True)
        variant = bool(plugin_overrides or extra_clusters or envoy_patch or envoy_env)
        self._envoy_variant = True  # until proven ready with the default
        self._start_envoy(path, timeout, wait_keys, envoy_env)
        if not variant:
            fp_file.write_text(fingerprint)
            self._envoy_variant = False
        return path

    @contextlib.contextmanager
    def envoy_variant(self, **kwargs: Any) -> Iterator[Any]:
        """`with stack.envoy_variant(plugin_overrides={...}):` restarts Envoy with the variant and
        restores the default config afterwards."""
        try:
            self.restart_envoy(**kwargs)
            yield self
        finally:
            self.restart_envoy()

    @staticmethod
    def cluster(name: str, port: int, host: str = "127.0.0.1", connect_timeout: str = "1s") -> dict:
        """A STATIC Envoy cluster dict for restart_envoy(extra_clusters=[...])."""
        return generator().static_cluster(name, port, host, connect_timeout)
