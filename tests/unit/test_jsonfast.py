import json
import subprocess

import pytest

from edgert import jsonfast

SAMPLES = [
    {}, [], {"a": [1, 2.5, -3e10, True, False, None, "x\u00e9\n\"\\"]},
    {"nested": {"k": [{"z": {}}, []]}, "big": 2 ** 70, "unicode": "\u2603\U0001f600"},
    "plain", 0, -0.0, 1e-7,
]


@pytest.mark.parametrize("value", SAMPLES)
def test_round_trip_matches_json(value):
    text = jsonfast.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert jsonfast.loads(text) == value
    assert json.loads(jsonfast.dumps_pretty(value)) == value


def test_whitespace_and_bytes():
    assert jsonfast.loads(b' \n {"a" : [ 1 ] }\t\n') == {"a": [1]}


@pytest.mark.parametrize("text,where", [
    ('{"a": 1,}', "line 1 column 9"), ('{\n  "a": tru\n}', "line 2"), ("", "line 1 column 1"),
    ('{"a": 1} x', "extra data"), ("NaN", "NaN is not valid JSON"), ('{"a" 1}', "line 1 column 6"),
])
def test_errors_name_the_place(text, where):
    with pytest.raises(ValueError, match=where):
        jsonfast.loads(text)


def test_object_pairs_hook():
    assert jsonfast.loads('{"a": 1, "a": 2}', object_pairs_hook=list) == [("a", 1), ("a", 2)]


def test_unserializable():
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsonfast.dumps({1, 2})


def test_import_does_not_pull_in_re():
    repo = __file__.rsplit("/tests/", 1)[0]
    code = ("import sys; sys.path.insert(0, %r); import edgert.jsonfast; "
            "print('re' in sys.modules, 'json' in sys.modules)" % repo)
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True,
                         text=True).stdout
    assert out.split() == ["False", "False"]
