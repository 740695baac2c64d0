"""Tenant-scoped credentials against the real RGW: `Cray-Tenant-Name` narrows what the minted
keys can reach (an STS session policy RGW enforces). The oracle is RGW itself: each case tries
the S3 calls with the minted keys and checks RGW's own answer.

Tokens come from the real issuer, with the claims Keycloak would carry for a tenant admin
(`realm_access.roles` has `tenant-admin`, `groups` has `<tenant>-tenant-admin`). The default
configuration lists no tenant (admins keep full access, as with the token service this
replaces); the tests that need tenants run Envoy with `LISTED`.
"""

from __future__ import annotations

import http.client
import secrets
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from helpers import TOKEN_PATH

LISTED = {"tenants": {"names": ["blue", "blue-x", "red"], "scope_admins": True}}


def mint(stack, token, tenant=None, path=TOKEN_PATH):
    headers = {"Cray-Tenant-Name": tenant} if tenant else {}
    return stack.gateway_request("PUT", path, token=token, headers=headers)


def s3_of(stack, r):
    assert r.status_code == 201, r.text
    c = r.json()["Credentials"]
    return stack.s3_client(
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )


def cray_cli_s3(r, region=""):
    """What `cray artifacts` does with the 201: boto3 on EndpointURL, region ''.

    The botocore installed here refuses region '' for ListBuckets before sending anything
    ("Invalid region", its endpoint rules need a bucket or a DNS-valid region; the field CLI pins
    an older botocore): ListBuckets goes out with region us-east-1, which RGW does not check
    (docs/CONTRACT), so RGW sees the same request."""
    assert r.status_code == 201, r.text
    c = r.json()["Credentials"]
    return boto3.client(
        "s3",
        endpoint_url=c["EndpointURL"],
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
        region_name=region,
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def denied(call) -> bool:
    try:
        call()
    except ClientError as e:
        # HEAD answers carry no body: botocore reports the status as the code.
        assert e.response["Error"]["Code"] in ("AccessDenied", "403"), e.response
        return True
    return False


def tenant_admin_token(stack, tenant: str) -> str:
    return stack.control_token(
        username="ta-" + tenant,
        claims={
            "realm_access": {"roles": ["offline_access", "tenant-admin"]},
            "groups": [f"{tenant}-tenant-admin"],
        },
    )


@pytest.fixture(scope="module")
def other_bucket(stack):
    """A bucket outside every tenant's space, made with unscoped admin credentials."""
    name = "green-" + secrets.token_hex(4)
    s3 = s3_of(stack, mint(stack, stack.token("admin")))
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"green data")
    return name


def assert_scoped_to(s3, tenant: str, other_bucket: str) -> None:
    """What scoped credentials can do, checked against RGW."""
    own = f"{tenant}-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=own)  # CreateBucket inside the space: allowed
    s3.put_object(Bucket=own, Key="k", Body=b"tenant data")
    assert s3.get_object(Bucket=own, Key="k")["Body"].read() == b"tenant data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=own)["Contents"]] == ["k"]
    # Another bucket: get, put, list, delete all refused.
    assert denied(lambda: s3.get_object(Bucket=other_bucket, Key="k"))
    assert denied(lambda: s3.put_object(Bucket=other_bucket, Key="x", Body=b"x"))
    assert denied(lambda: s3.list_objects_v2(Bucket=other_bucket))
    assert denied(lambda: s3.delete_object(Bucket=other_bucket, Key="k"))
    # CreateBucket outside the space, and ListBuckets: refused.
    assert denied(lambda: s3.create_bucket(Bucket="green-" + secrets.token_hex(4)))
    assert denied(lambda: s3.list_buckets())


def operations_on(s3, bucket: str) -> list:
    """Every operation a holder could try on a bucket and its object `k`, in an order that
    leaves the bucket as it was (the last ones create and remove their own key)."""
    return [
        ("HeadBucket", lambda: s3.head_bucket(Bucket=bucket)),
        ("ListObjectsV2", lambda: s3.list_objects_v2(Bucket=bucket)),
        ("ListObjects", lambda: s3.list_objects(Bucket=bucket)),
        ("GetBucketLocation", lambda: s3.get_bucket_location(Bucket=bucket)),
        ("GetBucketAcl", lambda: s3.get_bucket_acl(Bucket=bucket)),
        ("GetObject", lambda: s3.get_object(Bucket=bucket, Key="k")["Body"].read()),
        ("HeadObject", lambda: s3.head_object(Bucket=bucket, Key="k")),
        ("GetObjectAcl", lambda: s3.get_object_acl(Bucket=bucket, Key="k")),
        ("PutObject", lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x")),
        (
            "CopyObject",
            lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"}),
        ),
        ("CreateMultipartUpload", lambda: s3.create_multipart_upload(Bucket=bucket, Key="mp")),
        ("DeleteObject", lambda: s3.delete_object(Bucket=bucket, Key="new")),
        ("DeleteObjects", lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}]})),
    ]


def test_cray_cli_admin_with_a_tenant_keeps_full_access_by_default(stack, other_bucket):
    """`cray init --tenant blue`: the CLI sends the header on the token call too. By default
    the admin gets what the old token service gave (it ignored the header)."""
    token = stack.token("admin")
    r = mint(stack, token, tenant="blue")
    s3 = cray_cli_s3(r)
    names = [b["Name"] for b in cray_cli_s3(r, "us-east-1").list_buckets()["Buckets"]]  # buckets list
    assert other_bucket in names
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=other_bucket)["Contents"]] == ["k"]
    s3.put_object(Bucket=other_bucket, Key="cli", Body=b"from the cli")
    assert s3.get_object(Bucket=other_bucket, Key="cli")["Body"].read() == b"from the cli"
    # The 201 body is the one the CLI reads.
    assert list(r.json()["Credentials"]) == [
        "AccessKeyId",
        "EndpointURL",
        "Expiration",
        "SecretAccessKey",
        "SessionToken",
    ]
    # Nothing is listed by default: a tenant admin gets nothing.
    r = mint(stack, tenant_admin_token(stack, "blue"), tenant="blue")
    assert r.status_code == 403 and "does not list" in r.json()["detail"], r.text


def test_listed_tenants(stack, other_bucket):
    """One Envoy variant (LISTED) for every check that needs listed tenants."""
    with stack.envoy_variant(plugin_overrides=LISTED):
        # Admins scoped by option; tenant admins to their own listed tenant only.
        assert_scoped_to(s3_of(stack, mint(stack, stack.token("admin"), "blue")), "blue", other_bucket)
        blue_token = tenant_admin_token(stack, "blue")
        assert_scoped_to(s3_of(stack, mint(stack, blue_token, "blue")), "blue", other_bucket)
        r = mint(stack, blue_token, tenant="red")
        assert r.status_code == 403 and "not an administrator of the tenant" in r.json()["detail"], r.text
        r = mint(stack, blue_token)
        assert r.status_code == 403 and "must name their tenant" in r.json()["detail"], r.text
        r = mint(stack, tenant_admin_token(stack, "green"), tenant="green")
        assert r.status_code == 403 and "does not list" in r.json()["detail"], r.text

        # blue and blue-x: blue's space `blue-*` holds blue-x's; blue-x's bucket stays blue-x's.
        blue_x = s3_of(stack, mint(stack, tenant_admin_token(stack, "blue-x"), "blue-x"))
        blue = s3_of(stack, mint(stack, blue_token, "blue"))
        bucket = "blue-x-data-" + secrets.token_hex(3)
        blue_x.create_bucket(Bucket=bucket)
        blue_x.put_object(Bucket=bucket, Key="k", Body=b"blue-x data")
        for name, call in operations_on(blue, bucket):
            assert denied(call), f"blue could {name} on {bucket}"
        assert denied(lambda: blue.delete_object(Bucket=bucket, Key="k"))
        assert denied(lambda: blue.create_bucket(Bucket="blue-x-" + secrets.token_hex(4)))
        assert denied(lambda: blue.delete_bucket(Bucket=bucket))
        # The positive control: the same calls with blue-x's credentials succeed.
        for name, call in operations_on(blue_x, bucket):
            try:
                call()
            except ClientError as e:
                raise AssertionError(f"blue-x could not {name} on {bucket}: {e.response}") from e
        assert blue_x.get_object(Bucket=bucket, Key="k")["Body"].read() == b"blue-x data"
        own_x = "blue-x-" + secrets.token_hex(4)
        blue_x.create_bucket(Bucket=own_x)
        blue_x.delete_bucket(Bucket=own_x)
        # And blue keeps its own `blue-…` buckets that are not blue-x's.
        own = "blue-xylo-" + secrets.token_hex(3)
        blue.create_bucket(Bucket=own)
        blue.put_object(Bucket=own, Key="k", Body=b"blue")
        assert denied(lambda: blue_x.get_object(Bucket=own, Key="k"))

        # The cray CLI of a tenant admin: the header on the token call, then boto3.
        r = mint(stack, blue_token, "blue")
        s3 = cray_cli_s3(r)
        # Documented: ListBuckets would show other tenants' bucket names.
        assert denied(lambda: cray_cli_s3(r, "us-east-1").list_buckets())
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=own)["Contents"]] == ["k"]
        s3.put_object(Bucket=own, Key="cli", Body=b"cli")
        assert s3.get_object(Bucket=own, Key="cli")["Body"].read() == b"cli"

        # The tenant is in the mint log line and the session name.
        start = len(stack.envoy_log())
        assert mint(stack, blue_token, tenant="blue").status_code == 201
        lines = [ln for ln in stack.envoy_log()[start:].splitlines() if "sts-gateway: mint" in ln]
        assert lines and "tenant=blue " in lines[-1] and "@blue-" in lines[-1], lines

        # Ambiguous requests: never resolved silently.
        admin = stack.token("admin")
        assert raw_put(stack, admin, [("Cray-Tenant-Name", "red"), ("Cray-Tenant-Name", "blue")]) == 400
        r = mint(stack, admin, tenant="blue", path=TOKEN_PATH + "?tenant=red")
        assert r.status_code == 400 and "differ" in r.json()["detail"], r.text
        # The query alone is honoured as on the credentials route: scoped to blue.
        s3 = s3_of(stack, mint(stack, admin, path=TOKEN_PATH + "?tenant=blue"))
        assert denied(lambda: s3.list_buckets())
        assert s3.get_object(Bucket=own, Key="k")["Body"].read() == b"blue"


def test_unscoped_admin_still_reaches_everything(stack, other_bucket):
    s3 = s3_of(stack, mint(stack, stack.token("admin")))
    assert s3.get_object(Bucket=other_bucket, Key="k")["Body"].read() == b"green data"
    # The positive controls of the scoped list_objects_v2 and delete_object refusals: unscoped
    # credentials list the bucket and delete in it (a key of their own: "k" stays for the others).
    assert "k" in [o["Key"] for o in s3.list_objects_v2(Bucket=other_bucket)["Contents"]]
    s3.put_object(Bucket=other_bucket, Key="delete-me", Body=b"x")
    s3.delete_object(Bucket=other_bucket, Key="delete-me")
    assert "delete-me" not in [o["Key"] for o in s3.list_objects_v2(Bucket=other_bucket)["Contents"]]
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert other_bucket in names
    green = "green-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=green)
    s3.delete_bucket(Bucket=green)


def raw_put(stack, token: str, headers: list[tuple[str, str]]) -> int:
    """A PUT with repeated headers (requests cannot send them): plain http to the gateway."""
    url = urlsplit(stack.cfg.gateway_http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("PUT", TOKEN_PATH)
        conn.putheader("Authorization", f"Bearer {token}")
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_others_are_refused_and_bad_names_too(stack):
    r = mint(stack, stack.token("user"), tenant="blue")
    assert r.status_code == 403, r.text
    for bad in ["Blue", "a", "-blue", "blue_x", "b" * 254]:
        r = mint(stack, stack.token("admin"), tenant=bad)
        assert r.status_code == 403 and "not a valid tenant name" in r.json()["detail"], (bad, r.text)
    # Two headers: 400 on the default configuration too.
    admin = stack.token("admin")
    assert raw_put(stack, admin, [("Cray-Tenant-Name", "blue"), ("Cray-Tenant-Name", "blue")]) == 400
    assert raw_put(stack, admin, [("Cray-Tenant-Name", "blue")]) == 201  # positive control


def test_explicit_bucket_mapping(stack, other_bucket):
    mapped = "data-" + secrets.token_hex(3)
    tenants = {"names": ["red"], "buckets": {"blue": [mapped, "shared-blue-*"]}}
    with stack.envoy_variant(plugin_overrides={"tenants": tenants}):
        s3 = s3_of(stack, mint(stack, tenant_admin_token(stack, "blue"), tenant="blue"))
        s3.create_bucket(Bucket=mapped)
        s3.put_object(Bucket=mapped, Key="k", Body=b"x")
        assert denied(lambda: s3.create_bucket(Bucket="blue-" + secrets.token_hex(4)))
        assert denied(lambda: s3.get_object(Bucket=other_bucket, Key="k"))
