"""The local sts-gateway stack, one module per part (see docs/local-stack.md):

    config   ports, directories, keys, URLs, the environment it exports
    procs    pid files, waiting for readiness, stopping by pid, running commands
    tls      the dev CA and the gateway's certificate
    ceph     mon + memstore OSD + radosgw with STS
    issuer   the OIDC issuer and its test-control API
    envoy    Envoy's configuration (rendered by envoy/generate.py), start, variants, stats
    client   tokens, requests, boto3 clients
    stack    the Stack class that combines them

tests/stack/stack.py is the command line; tests use `Stack(Config.for_tests())`.
"""

from .client import install_gateway_resolver, tcp_blackhole
from .config import CLIENT_ID, GATEWAY_HOST, REALM, REPO, Config, StackError
from .procs import Part, port_open, proc_state
from .stack import Stack

__all__ = [
    "CLIENT_ID",
    "GATEWAY_HOST",
    "REALM",
    "REPO",
    "Config",
    "Part",
    "Stack",
    "StackError",
    "install_gateway_resolver",
    "port_open",
    "proc_state",
    "tcp_blackhole",
]
