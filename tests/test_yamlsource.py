"""Tests for yamlsource: positions for error messages, and refusal of hostile or confusing YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops_kaito.repo.yamlsource import SourceError, load_yaml_file, load_yaml_text


def test_positions_of_keys_and_items() -> None:
    doc = load_yaml_text("a: 1\nb:\n  c:\n    - x\n    - y\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert doc.line_of(["a"]) == 1
    assert doc.line_of(["b", "c"]) == 3
    assert doc.line_of(["b", "c", 1]) == 5
    # A key that is absent points at its nearest present parent, so "missing field" errors still have a line.
    assert doc.line_of(["b", "missing"]) == 2
    assert doc.position_of(["b", "c", 0]) == (4, 7)


def test_source_error_str_has_path_line_and_column() -> None:
    assert str(SourceError("models/ml/x.yaml", 3, 5, "bad")) == "models/ml/x.yaml:3:5: bad"
    assert str(SourceError("models/ml/x.yaml", 3, None, "bad")) == "models/ml/x.yaml:3: bad"
    assert str(SourceError("models/ml/x.yaml", None, None, "bad")) == "models/ml/x.yaml: bad"


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("a: &x 1\nb: *x\n", 2, "aliases"),
    ("a: 1\n---\nb: 2\n", 2, "more than one YAML document"),
    ("- 1\n- 2\n", 1, "top level is a list"),
    ("just a string\n", 1, "single value"),
    ("a:\n\tb: 1\n", 2, "tab character"),
    ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
    ("a: !!python/object/apply:os.system [id]\n", 1, "python"),
    ("a: [1, 2\n", 1, "invalid YAML"),
    ("base: &b {x: 1}\nother:\n  <<: {y: 2}\n", 3, "merge keys"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", 1, "nesting is deeper"),
    ("", 1, "empty"),
])
def test_refusals_are_located(text: str, line: int, needle: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_yaml_text(text, "f.yaml")
    assert caught.value.path == "f.yaml"
    assert caught.value.line == line
    assert needle in caught.value.message


def test_anchor_without_alias_is_harmless() -> None:
    assert load_yaml_text("a: &x 1\n", "f.yaml").data == {"a": 1}


def test_yaml_11_boolean_keys_stay_strings() -> None:
    # 'on'/'yes' are booleans in YAML 1.1; as keys they must stay the text the user wrote.
    assert load_yaml_text("on: 1\nyes: 2\n", "f.yaml").data == {"on": 1, "yes": 2}


def test_file_size_limit_and_relative_path(tmp_path: Path) -> None:
    target = tmp_path / "models" / "ml" / "big.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("a: 1\n" + "#" * 2000 + "\n")
    with pytest.raises(SourceError) as caught:
        load_yaml_file(target, tmp_path, max_bytes=1000)
    assert caught.value.path == "models/ml/big.yaml"
    assert "too large" in caught.value.message and "1000" in caught.value.message
    assert load_yaml_file(target, tmp_path).data == {"a": 1}


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_bytes(b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(SourceError) as caught:
        load_yaml_file(bad, tmp_path)
    assert caught.value.line == 2 and "UTF-8" in caught.value.message
    with pytest.raises(SourceError, match="cannot read"):
        load_yaml_file(tmp_path / "absent.yaml", tmp_path)


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(SourceError, match="aliases"):
        load_yaml_text("\n".join(lines) + "\n", "bomb.yaml")
