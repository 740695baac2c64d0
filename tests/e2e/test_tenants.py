"""Tenant-scoped credentials against the real RGW: `Cray-Tenant-Name` narrows what the minted
keys can reach (an STS session policy RGW enforces). The oracle is RGW itself: each case tries
the S3 calls with the minted keys and checks RGW's own answer.

Tokens come from the real issuer, with the claims Keycloak would carry for a tenant admin
(`realm_access.roles` has `tenant-admin`, `groups` has `<tenant>-tenant-admin`).
"""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from helpers import TOKEN_PATH


def mint(stack, token, tenant=None):
    headers = {"Cray-Tenant-Name": tenant} if tenant else {}
    return stack.gateway_request("PUT", TOKEN_PATH, token=token, headers=headers)


def s3_of(stack, r):
    assert r.status_code == 201, r.text
    c = r.json()["Credentials"]
    return stack.s3_client(
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )


def denied(call) -> bool:
    try:
        call()
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", e.response
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
    """A bucket outside every tenant's pattern, made with unscoped admin credentials."""
    name = "red-" + secrets.token_hex(4)
    s3 = s3_of(stack, mint(stack, stack.control_token(username="admin")))
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"red data")
    return name


def assert_scoped_to(s3, tenant: str, other_bucket: str) -> None:
    """The table of the issue, checked against RGW."""
    own = f"{tenant}-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=own)  # CreateBucket inside the pattern: allowed
    s3.put_object(Bucket=own, Key="k", Body=b"tenant data")
    assert s3.get_object(Bucket=own, Key="k")["Body"].read() == b"tenant data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=own)["Contents"]] == ["k"]
    # Another tenant's bucket: get, put, list, delete all refused.
    assert denied(lambda: s3.get_object(Bucket=other_bucket, Key="k"))
    assert denied(lambda: s3.put_object(Bucket=other_bucket, Key="x", Body=b"x"))
    assert denied(lambda: s3.list_objects_v2(Bucket=other_bucket))
    assert denied(lambda: s3.delete_object(Bucket=other_bucket, Key="k"))
    # CreateBucket outside the pattern, and ListBuckets: refused.
    assert denied(lambda: s3.create_bucket(Bucket="green-" + secrets.token_hex(4)))
    assert denied(lambda: s3.list_buckets())


def test_admin_with_tenant_header_gets_scoped_credentials(stack, other_bucket):
    r = mint(stack, stack.control_token(username="admin"), tenant="blue")
    assert_scoped_to(s3_of(stack, r), "blue", other_bucket)
    # RGW's answer is the same 201 body the cray CLI reads.
    assert list(r.json()["Credentials"]) == [
        "AccessKeyId",
        "EndpointURL",
        "Expiration",
        "SecretAccessKey",
        "SessionToken",
    ]


def test_tenant_admin_gets_credentials_for_their_tenant_only(stack, other_bucket):
    token = tenant_admin_token(stack, "blue")
    assert_scoped_to(s3_of(stack, mint(stack, token, tenant="blue")), "blue", other_bucket)
    r = mint(stack, token, tenant="red")
    assert r.status_code == 403 and "not an administrator of the tenant" in r.json()["detail"], r.text
    r = mint(stack, token)
    assert r.status_code == 403 and "must name their tenant" in r.json()["detail"], r.text


def test_unscoped_admin_still_reaches_everything(stack, other_bucket):
    s3 = s3_of(stack, mint(stack, stack.control_token(username="admin")))
    assert s3.get_object(Bucket=other_bucket, Key="k")["Body"].read() == b"red data"
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


def test_others_are_refused_and_bad_names_too(stack):
    r = mint(stack, stack.control_token(username="user"), tenant="blue")
    assert r.status_code == 403, r.text
    for bad in ["Blue", "a", "-blue", "blue_x", "b" * 254]:
        r = mint(stack, stack.control_token(username="admin"), tenant=bad)
        assert r.status_code == 403 and "not a valid tenant name" in r.json()["detail"], (bad, r.text)


def test_tenant_is_in_the_mint_log_line(stack):
    token = tenant_admin_token(stack, "blue")
    start = len(stack.envoy_log())
    assert mint(stack, token, tenant="blue").status_code == 201
    lines = [ln for ln in stack.envoy_log()[start:].splitlines() if "sts-gateway: mint" in ln]
    assert lines and "tenant=blue" in lines[-1] and "@blue-" in lines[-1], lines


def test_operator_can_keep_full_access_for_admins(stack, other_bucket):
    with stack.envoy_variant(plugin_overrides={"tenants": {"scope_admins": False}}):
        s3 = s3_of(stack, mint(stack, stack.control_token(username="admin"), tenant="blue"))
        assert s3.get_object(Bucket=other_bucket, Key="k")["Body"].read() == b"red data"
        # Tenant admins stay scoped.
        s3 = s3_of(stack, mint(stack, tenant_admin_token(stack, "blue"), tenant="blue"))
        assert denied(lambda: s3.get_object(Bucket=other_bucket, Key="k"))


def test_explicit_bucket_mapping(stack, other_bucket):
    mapped = "data-" + secrets.token_hex(3)
    with stack.envoy_variant(plugin_overrides={"tenants": {"buckets": {"blue": [mapped, "shared-blue-*"]}}}):
        s3 = s3_of(stack, mint(stack, tenant_admin_token(stack, "blue"), tenant="blue"))
        s3.create_bucket(Bucket=mapped)
        s3.put_object(Bucket=mapped, Key="k", Body=b"x")
        assert denied(lambda: s3.create_bucket(Bucket="blue-" + secrets.token_hex(4)))
        assert denied(lambda: s3.get_object(Bucket=other_bucket, Key="k"))
