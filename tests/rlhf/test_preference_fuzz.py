"""A fuzz corpus of bad preference JSONL files: each one gives exactly one ValueError, on one
line, naming the file and the line at fault (never a UnicodeDecodeError, JSONDecodeError,
RecursionError, OverflowError or a silently accepted NaN)."""

import codecs
import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastrl.rlhf.data import load_preferences

GOOD = {"prompt": "ab=", "chosen": "a", "rejected": "b", "margin": 0.5}
GOOD_LINE = json.dumps(GOOD).encode()
RANKING_LINE = json.dumps({"prompt": "ab=", "ranking": ["a", "b", "c"]}).encode()


def _bad_lines() -> list[tuple[str, bytes]]:
    """(kind, one bad line without its newline)."""
    lines = []
    # truncated lines: every proper prefix of a good record that is not blank
    for end in range(1, len(GOOD_LINE)):
        lines.append((f"truncated at {end}", GOOD_LINE[:end]))
    # wrong types for every field, in both record forms
    values = {"null": "null", "true": "true", "number": "3", "float": "2.5", "array": "[]", "object": "{}",
              "list of strings": '["a"]'}  # fmt: skip
    for field in ("prompt", "chosen", "rejected"):
        for kind, text in values.items():
            record = {**GOOD, field: None}
            lines.append((f"{field} {kind}", json.dumps(record).replace("null", text).encode()))
        missing = {k: v for k, v in GOOD.items() if k != field}
        lines.append((f"missing {field}", json.dumps(missing).encode()))
    for kind in ("null", "true", "false", "array", "object", "string"):
        text = {"null": "null", "true": "true", "false": "false", "array": "[1]", "object": "{}", "string": '"1"'}
        lines.append((f"margin {kind}", GOOD_LINE.replace(b"0.5", text[kind].encode())))
    for kind, text in (("empty", "[]"), ("one", '["a"]'), ("string", '"ab"'), ("number inside", '["a", 1]'),
                       ("null inside", '["a", null]'), ("object", "{}")):  # fmt: skip
        lines.append((f"ranking {kind}", RANKING_LINE.replace(b'["a", "b", "c"]', text.encode())))
    lines.append(("ranking and chosen", RANKING_LINE[:-1] + b', "chosen": "a"}'))
    lines.append(("empty prompt", GOOD_LINE.replace(b'"ab="', b'""')))
    lines.append(("lone surrogate", GOOD_LINE.replace(b'"a"', b'"\\udc80"')))
    # non-finite and huge numbers, in the margin and anywhere else in the record
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e400", b"1" + b"0" * 400, b"9" * 5000):
        lines.append((f"margin {literal[:10]!r}", GOOD_LINE.replace(b"0.5", literal)))
        lines.append((f"extra {literal[:10]!r}", GOOD_LINE[:-1] + b', "extra": {"x": [' + literal + b"]}}"))
        lines.append((f"bare {literal[:10]!r}", literal))
    # not objects, not JSON
    for text in (b"[]", b"1", b'"x"', b"null", b"true", b"{", b"}", b"{'prompt': 'a'}", b"[" * 50_000,
                 b'{"prompt": "ab=" "chosen": "a"}', b"\x00", b"\x1b[31m", GOOD_LINE + b" trailing"):  # fmt: skip
        lines.append((f"not a record {text[:12]!r}", text))
    # encodings: invalid UTF-8, and byte-order marks where they do not belong
    for name, raw in (("latin-1", "{\"prompt\": \"caf\u00e9=\"}".encode("latin-1")), ("lone continuation", b"\x80"),
                      ("overlong slash", b"\xc0\xaf"), ("utf-8 surrogate", b"\xed\xa0\x80"),
                      ("cut multibyte", '"\u00e9'.encode()[:-1]), ("0xff", b"\xff\xfe")):  # fmt: skip
        lines.append((f"invalid utf-8 {name}", raw))
    lines.append(("two UTF-8 BOMs", codecs.BOM_UTF8 * 2 + GOOD_LINE))  # one is fine on line 1 only
    return lines


BAD_LINES = _bad_lines()


def _error(path) -> ValueError:
    try:
        load_preferences(path)
    except Exception as exc:  # the type is checked exactly below
        error = exc
    else:
        raise AssertionError(f"{path} was accepted: {path.read_bytes()[:200]!r}")
    exc = error
    assert type(exc) is ValueError, f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc), str(exc)
    return exc


@pytest.mark.parametrize("before", [0, 1, 3])
def test_every_bad_line_is_named_by_file_and_line(tmp_path, before):
    path = tmp_path / "prefs.jsonl"
    for kind, line in BAD_LINES:
        # good records (and a blank line) before it, more after: the error names the bad line
        head = [GOOD_LINE] * before + ([b"   "] if before else [])
        path.write_bytes(b"\n".join([*head, line, GOOD_LINE, RANKING_LINE]) + b"\n")
        exc = _error(path)
        assert str(exc).startswith(f"{path}:{len(head) + 1}: "), (kind, str(exc))


@pytest.mark.parametrize("data", [
    b"", b"\n", b"\r\n \t\n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\n\n",
])  # fmt: skip
def test_files_without_records_are_named(tmp_path, data):
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(data)
    assert str(_error(path)) == f"{path}: no preference records"


@pytest.mark.parametrize(("name", "encoded"), [
    ("utf-16", (GOOD_LINE.decode() + "\n").encode("utf-16")),
    ("utf-16-be with BOM", codecs.BOM_UTF16_BE + (GOOD_LINE.decode() + "\n").encode("utf-16-be")),
    ("utf-32", (GOOD_LINE.decode() + "\n").encode("utf-32")),
    ("utf-32-be with BOM", codecs.BOM_UTF32_BE + (GOOD_LINE.decode() + "\n").encode("utf-32-be")),
    ("two utf-8 BOMs", codecs.BOM_UTF8 * 2 + GOOD_LINE),
])  # fmt: skip
def test_other_byte_order_marks_are_named(tmp_path, name, encoded):
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(encoded)
    assert str(_error(path)).startswith(f"{path}:1: "), name


def test_a_utf8_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + GOOD_LINE + b"\r\n\r\n" + RANKING_LINE + b"\r\n")
    pairs = load_preferences(path)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [("a", "b", 0.5), ("a", "b", 0.0),
                                                                 ("a", "c", 0.0), ("b", "c", 0.0)]


# --------------------------------------------------------------------------- random files

FRAGMENTS = [GOOD_LINE, RANKING_LINE, b"\n", b"\r\n", b" ", b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\",
             b'"prompt"', b'"chosen"', b'"rejected"', b'"margin"', b'"ranking"', b'"ab="', b"NaN", b"Infinity",
             b"-", b"1e400", b"0.5", b"null", b"true", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"\xe9", b"\xff",
             b"\xc3", b"\x00", "\u00e9".encode(), "\U0001f600".encode()]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "prefs.jsonl"


def _check_outcome(path, data: bytes) -> None:
    """Either valid pairs, or one ValueError naming the file and a line the file has."""
    path.write_bytes(data)
    try:
        pairs = load_preferences(path)
    except ValueError as exc:
        assert type(exc) is ValueError, f"{type(exc).__name__}: {exc}"
        message = str(exc)
        assert "\n" not in message, message
        if message != f"{path}: no preference records":
            found = re.match(re.escape(str(path)) + r":(\d+): ", message)
            assert found, message
            assert 1 <= int(found.group(1)) <= data.count(b"\n") + 1, message
        return
    for p in pairs:
        assert all(isinstance(x, str) for x in (p.prompt, p.chosen, p.rejected)) and p.prompt
        assert math.isfinite(p.margin)


@given(st.binary(max_size=400))
def test_random_bytes(fuzz_path, data):
    _check_outcome(fuzz_path, data)


@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=4)), max_size=60))
def test_random_splices_of_json_fragments(fuzz_path, parts):
    _check_outcome(fuzz_path, b"".join(parts))


TEXT = st.sampled_from(["", "a", "\u00e9\U0001f600", "\ud800", "\x00\n"]) | st.text(max_size=5)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
NUMBER = st.floats() | st.integers() | st.sampled_from([10**400, -(10**309), 2**1023 * 3])
FIELDS = st.sampled_from(["prompt", "chosen", "rejected", "margin", "ranking", "extra"])
RECORDS = st.one_of(
    # mostly valid pairs and rankings, with any margin and extra fields: NaN, inf and huge ints included
    st.fixed_dictionaries({"prompt": TEXT, "chosen": TEXT, "rejected": TEXT},
                          optional={"margin": NUMBER | JSON, "extra": JSON}),
    st.fixed_dictionaries({"prompt": TEXT, "ranking": st.lists(TEXT, max_size=4)},
                          optional={"margin": NUMBER, "chosen": TEXT, "extra": JSON}),
    st.dictionaries(FIELDS, JSON, max_size=6),
)  # fmt: skip


@given(RECORDS)
def test_random_records_are_read_exactly_or_refused(fuzz_path, record):
    # json.dumps writes NaN and Infinity for non-finite floats: those must be refused
    fuzz_path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    try:
        pairs = load_preferences(fuzz_path)
    except ValueError as exc:
        assert type(exc) is ValueError and str(exc).startswith(f"{fuzz_path}:1: "), str(exc)
        return
    # accepted: the record was a valid pair or ranking, read exactly
    if "ranking" in record:
        ranking = record["ranking"]
        assert [(p.chosen, p.rejected) for p in pairs] == [
            (ranking[i], ranking[j]) for i in range(len(ranking)) for j in range(i + 1, len(ranking))
        ]
    else:
        assert len(pairs) == 1 and (pairs[0].chosen, pairs[0].rejected) == (record["chosen"], record["rejected"])
        margin = record.get("margin", 0.0)
        assert not isinstance(margin, bool) and math.isfinite(margin) and pairs[0].margin == float(margin)
    assert all(p.prompt == record["prompt"] != "" for p in pairs)
