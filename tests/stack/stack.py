#!/usr/bin/env python3
"""The local sts-gateway stack: Envoy 1.40 + Ceph RGW 16.2 (mon, memstore OSD, radosgw) + an
OIDC issuer (oauth2-mock-server), all on 127.0.0.1, all state and logs under one directory.

    python tests/stack/stack.py [--test] up|down|status|token [USER]|env|tls|render|howto

`--test` selects the test stack (ports + 10000, state in target/test-stack/) so tests never
collide with a user's `make up` (target/stack/). pytest imports this module (see
tests/e2e/conftest.py): `Stack(Config.for_tests())`; the parts live in tests/stack/stacklib/.

Every process is tracked by a pid file under <state>/run/ and is stopped by that pid only
(after checking that its command line names this state dir). `up` is idempotent: parts that
run are kept, dead parts are restarted (Ceph is re-created when its mon or OSD died: the
OSD keeps its data in memory), stale pid files are cleaned, ports are checked first.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacklib import *  # noqa: E402,F403  (what `from stack import ...` offered before the split)
from stacklib import Config, Stack, StackError  # noqa: E402
from stacklib.procs import log  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="store_true", help="the test stack (other ports, target/test-stack/)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start every part (idempotent; restarts dead parts)")
    sub.add_parser("down", help="stop every part started by up (by pid)")
    sub.add_parser("status", help="show which parts run")
    t = sub.add_parser("token", help="print a JWT obtained through the gateway (password grant)")
    t.add_argument("user", nargs="?", default="admin")
    t.add_argument("--http", action="store_true", help="use the plain http listener")
    sub.add_parser("env", help="print the environment (as in env.sh)")
    sub.add_parser("tls", help="only generate the CA and server certificate")
    sub.add_parser("render", help="print the Envoy config the stack runs")
    sub.add_parser("howto", help="print how to get a token and call the token service")
    args = ap.parse_args(argv)
    stack = Stack(Config.from_env(test=args.test))
    try:
        if args.cmd == "up":
            try:
                stack.up()
            except BaseException:
                log("up failed; parts that did start keep running (`make down` stops them)")
                raise
        elif args.cmd == "down":
            stack.down()
            log(f"{stack.cfg.name} down")
        elif args.cmd == "status":
            for name, pid in stack.status().items():
                print(f"{name:10} {'running, pid ' + str(pid) if pid else 'stopped'}")
            return 0 if all(stack.status().values()) else 3
        elif args.cmd == "token":
            if not stack.envoy.alive():
                raise StackError(f"the gateway of {stack.cfg.state_dir} is not running: start it with `make up`")
            import requests

            try:
                print(stack.token(args.user, via="http" if args.http else "https"))
            except requests.HTTPError as e:
                raise StackError(f"token request failed: {e.response.status_code} {e.response.text}") from None
            except requests.RequestException as e:
                raise StackError(f"token request failed: {e}") from None
        elif args.cmd == "env":
            for k, v in stack.cfg.env_vars().items():
                print(f"export {k}={shlex.quote(v)}")
        elif args.cmd == "tls":
            stack.ensure_tls()
        elif args.cmd == "howto":
            print(stack.howto())
        elif args.cmd == "render":
            import yaml

            print(yaml.safe_dump(stack.render_envoy(), sort_keys=False, width=120))
    except StackError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
