#!/usr/bin/env python3
"""The golden values of `sts::request::tests::golden_request` (src/sts/request.rs), computed by
an independent signer: botocore's SigV4Auth (the AWS SDK for Python), not by the filter's code.

    .venv/bin/python tests/sigv4/golden_sts_request.py          print the values
    .venv/bin/python tests/sigv4/golden_sts_request.py --check  fail unless src/sts/request.rs holds them

`make unit` runs the check.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = Path(__file__).resolve().parents[2]

# The inputs of the Rust test (params(), SECRET, T = 2026-11-30T00:57:59Z).
ACCESS_KEY = "STSUSERKEY"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AUTHORITY = "rgw.local:8080"
TIMESTAMP = "20261130T005759Z"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
FORM = [
    ("Action", "AssumeRole"),
    ("Version", "2011-06-15"),
    ("RoleArn", "arn:aws:iam:::role/ARS"),
    ("RoleSessionName", "alice-0000002a"),
    ("DurationSeconds", "3600"),
]


def golden() -> tuple[str, str]:
    body = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in FORM)
    payload = hashlib.sha256(body.encode()).hexdigest()
    request = AWSRequest(
        method="POST",
        url=f"http://{AUTHORITY}/",
        data=body.encode(),
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Content-SHA256": payload},
    )
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET), "sts", "us-east-1")
    # add_auth() with a fixed clock: the same steps, the timestamp set instead of read.
    request.context["timestamp"] = TIMESTAMP
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    return payload, request.headers["Authorization"]


def main() -> int:
    payload, authorization = golden()
    print(f"x-amz-content-sha256: {payload}\nauthorization: {authorization}")
    if "--check" in sys.argv:
        rust = (REPO / "src" / "sts" / "request.rs").read_text()
        signature = authorization.rsplit("Signature=", 1)[1]
        missing = [v for v in (payload, signature) if v not in rust]
        if missing or "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date" not in authorization:
            print(f"golden_sts_request: src/sts/request.rs does not hold {missing}", file=sys.stderr)
            return 1
        print("golden_sts_request: src/sts/request.rs holds botocore's values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
