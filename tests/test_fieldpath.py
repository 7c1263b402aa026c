"""Field paths: parsing, the longest-literal-key rule, and the compiled extractor, which must give
exactly what evaluating each path on the decoded record gives."""

from __future__ import annotations

import json
import pickle
from typing import Any

import msgspec
import pytest

from pipeline import fieldpath
from pipeline.fieldpath import Extractor, PathError, parse


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "expected a field path"),
        (" a", "expected a field path"),
        ("a..b", "empty key at character 3"),
        ("a.", "ends with '.'"),
        ("[0].a", "bad index at character 1"),
        ("a[x]", "bad index at character 2"),
        ("a[0]b", "expected '.' or '['"),
        ("*.a", "starts with '*'"),
    ],
)
def test_malformed_paths_say_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message.replace("[", r"\[").replace("*", r"\*")):
        parse(path)


def test_the_longest_literal_key_wins_at_each_level() -> None:
    path = parse("authorizer.claims.account")
    assert path.values(
        {"authorizer.claims.account": "a", "authorizer": {"claims": {"account": "c"}}}
    ) == ["a"]
    assert path.values({"authorizer": {"claims.account": "b", "claims": {"account": "c"}}}) == ["b"]
    assert path.values({"authorizer": {"claims": {"account": "c"}}}) == ["c"]
    # A key that is present wins even when null: the record said where the value is.
    assert (
        path.values({"authorizer.claims": None, "authorizer": {"claims": {"account": "c"}}}) == []
    )


def test_indexes_wildcards_and_members() -> None:
    rec = {
        "resources": [{"accountId": "1"}, {"ARN": "x"}, {"accountId": 2}],
        "key": {"pk": {"S": "TENANT#a"}, "sk": {"N": "5"}, "gsi": {"S": "TENANT#b"}},
    }
    assert parse("resources[*].accountId").values(rec) == ["1", "2"]
    assert parse("resources[0].accountId").values(rec) == ["1"]
    assert parse("resources[5].accountId").values(rec) == []
    assert parse("key.*.S").values(rec) == ["TENANT#a", "TENANT#b"]
    assert parse("key.*.S").many and parse("resources[*].x").many
    assert not parse("resources[0].accountId").many


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        ("", None),
        ("-", None),
        (None, None),
        (12, "12"),
        (1.5, "1.5"),
        (True, "true"),
        ({"b": [1, "x"]}, '{"b":[1,"x"]}'),
    ],
)
def test_values_become_text_by_one_rule(value: Any, text: str | None) -> None:
    assert parse("a").first({"a": value}) == text
    assert parse("a.b").first({"a": {"b": value}}) == text


def test_presence_is_not_a_value() -> None:
    assert parse("a.b").present({"a": {"b": None}})
    assert parse("a").present({"a": "-"}) and parse("a").first({"a": "-"}) is None
    assert not parse("a.c").present({"a": {"b": 1}})


# Records of every shape a path may meet on its way: objects where arrays are expected and the
# other way round, strings for objects (as some vendors store them), nulls, numbers past a
# double, literal dotted keys, empty containers.
RECORDS: list[Any] = [
    {
        "userIdentity": {
            "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"userName": "app-user"}},
        },
        "resources": [{"accountId": "222233334444"}, {"ARN": "arn:x"}, {"accountId": 5}],
        "recipientAccountId": "333344445555",
        "requestParameters": {
            "createVolumePermission": {"add": {"items": [{"userId": "1"}, {"userId": "2"}]}},
            "exclusiveStartKey": {"pk": {"S": "TENANT#t1"}, "n": {"N": "1"}},
        },
    },
    {"userIdentity": "a string where an object is", "resources": {"accountId": "x"}},
    {"userIdentity": None, "resources": None, "recipientAccountId": 123456789012345678901234567890},
    {"userIdentity": [1, 2], "resources": [1, "x", None, [], {}]},
    {"authorizer.claims.account": "lit", "authorizer": {"claims": {"account": "nested"}}},
    {"authorizer": {"claims.account": "mid"}, "a": [{"c": 1.5}, {"c": {"d": True}}]},
    {"requestParameters": "text", "a": {"c": "not an array"}},
    {"requestParameters": {"exclusiveStartKey": ["not", "an", "object"]}},
    {},
]
PATHS = (
    "userIdentity.accountId",
    "userIdentity.sessionContext.sessionIssuer.userName",
    "resources[*].accountId",
    "resources[1]",
    "recipientAccountId",
    "requestParameters",
    "requestParameters.createVolumePermission.add.items[*].userId",
    "requestParameters.exclusiveStartKey.*.S",
    "authorizer.claims.account",
    "a[*].c",
    "a[1].c.d",
)


def test_the_extractor_gives_what_each_path_gives_on_the_decoded_record() -> None:
    raws = [json.dumps(r).encode() for r in RECORDS]
    raws.append(b'{"resources": [{"accountId": "9"}], "recipientAccountId": 1e400}')
    # A number past a double where an object is expected: the typed tree refuses the record,
    # which is then read generically, to the same values.
    raws.append(b'{"userIdentity": 1e400, "resources": [{"accountId": "8"}]}')
    paths = tuple(parse(p) for p in PATHS)
    got = Extractor(paths).extract(raws)
    decoder = msgspec.json.Decoder(float_hook=fieldpath._number)
    for path, per_record in zip(paths, got, strict=True):
        want = [path.values(decoder.decode(r)) for r in raws]
        assert per_record == want, path.text
    assert got[2][0] == ["222233334444", "5"]
    assert got[7][0] == ["TENANT#t1"]
    assert got[8][4] == ["lit"] and got[8][5] == ["mid"]
    assert got[4][2] == ["123456789012345678901234567890"]  # as written, not as a double
    assert got[4][-2] == ["1e400"]
    assert got[2][-1] == ["8"]


def test_an_extractor_travels_to_workers_and_compiles_there() -> None:
    ex = Extractor((parse("userIdentity.accountId"),))
    ex.extract([b'{"userIdentity": {"accountId": "1"}}'])  # compiled here
    # Classes made at run time do not pickle: the tree is not sent, but made again.
    again = pickle.loads(pickle.dumps(ex))  # noqa: S301 - our own bytes
    assert again.extract([b'{"userIdentity": {"accountId": "2"}}']) == [[["2"]]]


def test_text_that_is_not_json_has_no_value_at_any_path() -> None:
    assert Extractor((parse("a"),)).extract([b"{not json", b'{"a": "x"}']) == [[[], ["x"]]]
