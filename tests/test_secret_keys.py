"""Secrets under JSON keys: a key holds a secret by its last words, wherever logs write it.

Named positive cases (a key whose value is a secret: API keys, passwords, client secrets,
tokens, private keys, cookies, credentials, in the spellings headers, SDKs and services use)
and named negative cases (identifiers and settings that only share a word with one: access key
ids, which tenant attribution joins on, the product's own token fingerprints, secret ARNs,
pagination and idempotency tokens), each carried in every place logs write keys
(``tests/secretplaces.py``: a CloudTrail request's headers map, its parameters and response, an
AssumeRole record beside its credentials, a request spelled as a JSON string, an access-log
field, an authorizer-log field, a line the quarantine keeps), by both decoders.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.ingest import secretkeys
from pipeline.ingest.fingerprint import fingerprint
from tests import secretplaces
from tests.secretplaces import DECODERS, MISSING, PLACES, Carried

_n = iter(range(1000))


def _secret() -> str:
    """A value of its own per case, that only its key can make a secret (no needle in it, not
    random-looking), so a hit names its case."""
    return f"LEAK{next(_n):03d}hushvalue"


def fp(value: Any) -> str:
    return fingerprint(value if isinstance(value, str) else orjson.dumps(value))


# name -> (key, value): a string value becomes its fingerprint.
SECRET = {
    name: (key, _secret())
    for name, key in [
        ("an API key header", "x-api-key"),
        ("an API key header in capitals", "X-API-Key"),
        ("apiKey", "apiKey"),
        ("api_key", "api_key"),
        ("apikey", "apikey"),
        ("Api-Key", "Api-Key"),
        ("api.key", "api.key"),
        ("passwd", "passwd"),
        ("pwd", "pwd"),
        ("pass", "pass"),
        ("a passphrase", "Passphrase"),
        ("an RDS master password", "masterUserPassword"),
        ("new-password", "new-password"),
        ("a password hash", "password_hash"),
        ("client_secret", "client_secret"),
        ("clientSecret", "clientSecret"),
        ("appSecret", "appSecret"),
        ("secret_key", "secret_key"),
        ("aws_secret_access_key", "aws_secret_access_key"),
        ("SecretAccessKey", "SecretAccessKey"),
        ("csrf_token", "csrf_token"),
        ("bearerToken", "bearerToken"),
        ("an authorizer event's authorizationToken", "authorizationToken"),
        ("SSM's tokenValue", "tokenValue"),
        ("SessionToken", "SessionToken"),
        ("privateKey", "privateKey"),
        ("private_key_pem", "private_key_pem"),
        ("Cookie", "Cookie"),
        ("Set-Cookie", "Set-Cookie"),
        ("Secrets Manager's SecretString", "SecretString"),
        ("EC2's passwordData", "passwordData"),
        ("accessKey as text", "accessKey"),
        ("access_key", "access_key"),
        ("X-Access-Key", "X-Access-Key"),
        ("a credential as text", "credential"),
        ("credentials as text", "credentials"),
        ("db_credentials", "db_credentials"),
    ]
}
SECRET["an Authorization header without Bearer"] = ("Authorization", f"Token {_secret()}")
SECRET["a Proxy-Authorization header"] = ("Proxy-Authorization", f"Digest {_secret()}")
# name -> (key, value, the value as the lake must hold it)
SECRET_SHAPED: dict[str, tuple[str, Any, Any]] = {}
for _name, _key, _value in [
    ("a list of passwords", "passwords", [_secret(), _secret()]),
    ("a password as a list", "password", [_secret(), _secret()]),
    ("a private key as a JSON web key", "privateKey", {"kty": "RSA", "d": _secret()}),
    ("a list of cookies", "cookies", [_secret(), _secret()]),
    ("a list of tokens", "tokens", [_secret()]),
]:
    _walked = [fp(v) for v in _value] if _key in ("passwords", "cookies", "tokens") else fp(_value)
    SECRET_SHAPED[_name] = (_key, _value, _walked)
_creds = {"accessKeyId": "ASIAEXAMPLE000000001", "sessionToken": _secret()}
SECRET_SHAPED["credentials as an object keep their key id"] = (
    "credentials",
    _creds,
    {"accessKeyId": "ASIAEXAMPLE000000001", "sessionToken": fp(_creds["sessionToken"])},
)
# name -> (key, value): kept as it is.
KEPT: dict[str, tuple[str, Any]] = {
    "accessKeyId": ("accessKeyId", "AKIAIOSFODNN7EXAMPLE"),
    "AccessKeyId": ("AccessKeyId", "AKIAIOSFODNN7EXAMPLE"),
    "aws_access_key_id": ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    "access-key-id": ("access-key-id", "AKIAIOSFODNN7EXAMPLE"),
    "an access key id under an access key name": ("accessKey", "AKIAIOSFODNN7EXAMPLE"),
    "a signing scope under a credential name": (
        "X-Amz-Credential",
        "AKIAIOSFODNN7EXAMPLE/20261116/us-east-1/s3/aws4_request",
    ),
    "an access key as an object (IAM CreateAccessKey)": (
        "accessKey",
        {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "status": "Active", "userName": "bob"},
    ),
    "token_type": ("token_type", "Bearer"),
    "tokenType": ("tokenType", "Bearer"),
    "the authorizer's token_fingerprint": ("token_fingerprint", "sha256:0123456789abcdef"),
    "tokenFingerprint": ("tokenFingerprint", "sha256:0123456789abcdef"),
    "a secret's ARN as secretId": (
        "secretId",
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf",
    ),
    "SecretARN": ("SecretARN", "arn:aws:secretsmanager:us-east-1:111122223333:secret:x-AbCdEf"),
    "secretName": ("secretName", "prod/db"),
    "passwordResetRequired": ("passwordResetRequired", True),
    "passwordLastUsed": ("passwordLastUsed", "2026-11-01T00:00:00Z"),
    "privateIpAddress": ("privateIpAddress", "10.0.0.7"),
    "privateDnsName": ("privateDnsName", "ip-10-0-0-7.ec2.internal"),
    "authorizationType": ("authorizationType", "AWS_IAM"),
    "cookieBehavior": ("cookieBehavior", "all"),
    "includeCookies": ("includeCookies", False),
    "credentialId": ("credentialId", "cred-0001"),
    "CredentialType": ("CredentialType", "PASSWORD"),
    "an idempotency clientToken": ("clientToken", "9b2f6f0e-3c1d-4f7e-9a55-0d6f1c2b3a4e"),
    "clientRequestToken": ("clientRequestToken", "console-retry-0001"),
    "a pagination nextToken": ("nextToken", "page-0002"),
    "subjectFromWebIdentityToken": ("subjectFromWebIdentityToken", "repo:acme/app:ref:main"),
    "EC2 metadata httpTokens": ("httpTokens", "required"),
    "a model's maxTokens": ("maxTokens", 512),
    "apiKeyId": ("apiKeyId", "k1a2b3c4d5"),
    "apiKeyRequired": ("apiKeyRequired", True),
    "apiKeySource": ("apiKeySource", "HEADER"),
    "the authorizer's cache_key": ("cache_key", "sha256:0123456789abcdef"),
    "a null password": ("password", None),
    "an empty password": ("password", ""),
}

CASES: dict[str, tuple[str, Any]] = {
    **SECRET,
    **{name: (key, value) for name, (key, value, _) in SECRET_SHAPED.items()},
    **KEPT,
}


@pytest.fixture(scope="module")
def carried(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Carried]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return secretplaces.carry(tmp_path_factory.mktemp("keys"), CASES, monkeypatch)


def _leaves(value: Any) -> list[str]:
    """The strings of a value a case planted (a secret, or the secrets of a list or object)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _leaves(v)]
    return [value] if isinstance(value, str) and value.startswith("LEAK") else []


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", [*SECRET, *SECRET_SHAPED])
def test_a_secret_under_its_key_is_fingerprinted(
    carried: dict[tuple[str, str, str], Carried], decoder: str, place: str, name: str
) -> None:
    _, value = CASES[name]
    got = carried[decoder, place, name]
    assert got.text, "the record is nowhere in the output"
    for secret in _leaves(value):
        assert secret not in got.text
    want = fp(value) if name in SECRET else SECRET_SHAPED[name][2]
    if place == "quarantined line":  # found by pattern
        if name in SECRET:  # fingerprinted as the full redaction does
            assert orjson.dumps(want).decode() in got.text
        else:  # a list or object spelled as it was: each string fingerprinted on its own
            assert all(fp(s) in got.text for s in _leaves(value))
        return
    assert got.value == want


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", KEPT)
def test_what_only_shares_a_word_with_a_secret_is_kept(
    carried: dict[tuple[str, str, str], Carried], decoder: str, place: str, name: str
) -> None:
    _, value = KEPT[name]
    got = carried[decoder, place, name]
    assert got.text, "the record is nowhere in the output"
    if place == "quarantined line":
        if isinstance(value, str):
            assert orjson.dumps(value).decode()[1:-1] in got.text
        return
    assert got.value is not MISSING and got.value == value


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("x-api-key", "strong"),
        ("SecretString", "strong"),
        ("private_key_pem", "strong"),
        ("credentials", "weak"),
        ("accessKey", "weak"),
        ("cookies", "weak"),
        ("queryStringParameters", "query"),
        ("multiValueQueryStringParameters", "query"),
        ("querystring", "query"),
        ("accessKeyId", None),
        ("to-ken", None),  # words are whole: the pre-filter looks for "token"
        ("api-key-id", None),
        ("Tö\u212aen", None),  # only ASCII letters fold: the Kelvin sign is no "k"
        ("nextToken", None),
    ],
)
def test_the_kind_of_a_key(key: str, kind: str | None) -> None:
    got = secretkeys.kind(key)
    assert (got.value if got else None) == kind


def test_every_named_secret_key_holds_a_pre_filter_word() -> None:
    # A secret key the pre-filter could not see would reach the lake on the C decoder.
    from pipeline.ingest import prefilter

    for key, _ in [*SECRET.values(), *((k, v) for k, v, _ in SECRET_SHAPED.values())]:
        assert prefilter.might_hold_secret(orjson.dumps({key: 1})), key
