"""The search queries: queries.yaml loading/validation and the partitions CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from nasa_assets.queries import (
    MAX_QUERY_CHARS,
    PARTITIONS_NAME,
    QUERIES_FILE,
    load_queries,
    main,
    require_normal_query,
    validate_query,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queries.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("moon", "moon"),
        ("  apollo 11  ", "apollo 11"),
        ("apollo   11", "apollo 11"),
        ("Buzz Aldrin's boot", "Buzz Aldrin's boot"),
        ("l'\u00e9toile", "l'\u00e9toile"),
        ("a.b", "a.b"),
        ("x" * MAX_QUERY_CHARS, "x" * MAX_QUERY_CHARS),
    ],
)
def test_valid_queries_are_stripped_and_whitespace_collapsed(raw, clean):
    """Spaces around and runs of spaces inside collapse to one: one partition per search."""
    assert validate_query(raw) == clean


@pytest.mark.parametrize(
    "raw",
    ["moon\nlanding", "moon\r", "a\tb", "wait...", "...", "nul\0", "bell\a"],
)
def test_queries_a_partition_key_cannot_hold_are_rejected(raw):
    """Newlines, tabs, other control characters and ``...`` -> ValueError naming the query."""
    with pytest.raises(ValueError, match="partition key") as caught:
        validate_query(raw)
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("raw", ["", "   ", None, 11, ["moon"], {"q": "moon"}])
def test_empty_or_non_string_queries_are_rejected(raw):
    """A query must be a non-empty string."""
    with pytest.raises(ValueError, match="non-empty string"):
        validate_query(raw)


def test_an_overlong_query_is_rejected():
    """Longer than MAX_QUERY_CHARS after collapsing whitespace -> ValueError."""
    with pytest.raises(ValueError, match=f"longer than {MAX_QUERY_CHARS}"):
        validate_query("x" * (MAX_QUERY_CHARS + 1))
    assert validate_query(" " + "x" * MAX_QUERY_CHARS + " ") == "x" * MAX_QUERY_CHARS


# --------------------------------------------------------------------------- the YAML file


def test_queries_are_loaded_in_order_and_de_duplicated(tmp_path):
    """``queries: [moon, "apollo 11", moon]`` -> ``["moon", "apollo 11"]``."""
    path = write(tmp_path, 'queries: [moon, "apollo 11", moon]\n')
    assert load_queries(path) == ["moon", "apollo 11"]


@pytest.mark.parametrize(
    ("key", "normal"),
    [("moon ", "moon"), (" moon", "moon"), ("apollo  11", "apollo 11"), ("a\u00a0b", "a b")],
)
def test_a_key_that_is_not_in_normal_form_is_refused_naming_its_normal_form(key, normal):
    """``"moon "`` would search ``moon`` and write its rows under another query: refused."""
    with pytest.raises(ValueError) as caught:
        require_normal_query(key)
    assert f"{key!r}" in str(caught.value) and f"normal form {normal!r}" in str(caught.value)


@pytest.mark.parametrize("key", ["moon", "apollo 11", "Moon", "MARS Rover", "l'\u00e9toile"])
def test_normal_keys_pass_unchanged_and_case_is_kept(key):
    """Normalising collapses whitespace only: ``Moon`` is its own (normal) query."""
    assert require_normal_query(key) == key


def test_a_file_entry_that_is_not_in_normal_form_is_refused(tmp_path):
    """``"  apollo   11 "`` in the file: an error naming the file, the entry and its normal
    form, not a partition ``apollo 11`` that the file does not spell."""
    path = write(tmp_path, 'queries:\n  - "apollo 11"\n  - "  apollo   11 "\n  - mars\n')
    with pytest.raises(ValueError) as caught:
        load_queries(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "'  apollo   11 '" in str(caught.value) and "'apollo 11'" in str(caught.value)


def test_a_bare_list_is_accepted(tmp_path):
    """The file may be just a YAML list."""
    assert load_queries(write(tmp_path, "- moon\n- mars rover\n")) == ["moon", "mars rover"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "queries:\n", "queries: null\n"])
def test_an_empty_file_or_empty_queries_means_no_queries(tmp_path, text):
    """Nothing listed -> ``[]`` (not an error)."""
    assert load_queries(write(tmp_path, text)) == []


@pytest.mark.parametrize(
    ("text", "type_name"),
    [
        ("queries: moon\n", "str"),
        ("queries: {moon: 1}\n", "dict"),
        ("moon\n", "str"),
        ("42\n", "int"),
    ],
)
def test_queries_that_are_not_a_list_raise_naming_the_file(tmp_path, text, type_name):
    """``queries`` must be a list: ValueError naming the file and what was found."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="must be a list") as caught:
        load_queries(path)
    assert str(path) in str(caught.value)
    assert type_name in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ['queries: ["moon\\nlanding"]\n', 'queries: ["wait..."]\n', "queries: [moon, '']\n",
     "queries: [1969]\n", "queries: [[moon]]\n"],
)  # fmt: skip
def test_an_invalid_query_in_the_file_raises_naming_the_file(tmp_path, text):
    """A bad entry fails the whole file, with the file's path in the message."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as caught:
        load_queries(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize("text", ["queries: [moon\n", "queries: [a, b]\n  - c\n", "a: b: c\n"])
def test_invalid_yaml_raises_value_error_naming_the_file(tmp_path, text):
    """A YAML syntax error -> ValueError (not yaml.YAMLError) naming the file."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="is not valid YAML") as caught:
        load_queries(path)
    assert str(path) in str(caught.value)


def test_the_shipped_queries_file_is_valid():
    """The repo's queries.yaml loads and lists ``moon``."""
    queries = load_queries(QUERIES_FILE)
    assert "moon" in queries
    assert load_queries() == queries


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def template_home(tmp_path_factory) -> Path:
    """A DAGSTER_HOME whose SQLite storage is already created (that costs about a second)."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            assert list(instance.get_dynamic_partitions(PARTITIONS_NAME)) == []
    return home


@pytest.fixture
def dagster_home(template_home, tmp_path, monkeypatch) -> Path:
    """A fresh, empty DAGSTER_HOME of this test's own (a copy of the template)."""
    home = tmp_path / "dagster_home"
    shutil.copytree(template_home, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def registered() -> list[str]:
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_dynamic_partitions(PARTITIONS_NAME))


def test_add_registers_validated_queries_in_the_dagster_home_instance(dagster_home, capsys):
    """``add`` writes the (normalised, de-duplicated) queries as ``nasa_queries`` partitions
    of ``$DAGSTER_HOME``'s instance; ``list`` prints them; re-adding adds nothing new."""
    assert main(["add", "moon", "apollo 11", "moon"]) == 0
    assert "added 2 of 3: moon, apollo 11" in capsys.readouterr().out
    assert registered() == ["moon", "apollo 11"]

    assert main(["add", "apollo 11", "mars rover"]) == 0
    assert "added 1 of 2: mars rover" in capsys.readouterr().out
    assert main(["add", "moon"]) == 0
    assert "added 0 of 1: none new" in capsys.readouterr().out
    assert registered() == ["moon", "apollo 11", "mars rover"]

    assert main(["list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["moon", "apollo 11", "mars rover"]


def test_add_rejects_an_invalid_query_and_registers_nothing(dagster_home, capsys):
    """One bad query -> usage error (exit 2) naming it; none of the others is added."""
    with pytest.raises(SystemExit) as caught:
        main(["add", "moon", "moon\nlanding"])
    assert caught.value.code == 2
    assert "partition key" in capsys.readouterr().err
    assert registered() == []


def test_add_refuses_a_key_that_is_not_in_normal_form(dagster_home, capsys):
    """``add "apollo  11"`` -> usage error naming the normal form; nothing registered."""
    with pytest.raises(SystemExit) as caught:
        main(["add", "moon", "apollo  11"])
    assert caught.value.code == 2
    assert "normal form 'apollo 11'" in capsys.readouterr().err
    assert registered() == []


def test_list_of_a_fresh_instance_is_empty(dagster_home, capsys):
    """No partitions yet -> nothing listed, exit 0."""
    assert main(["list"]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_the_cli_needs_dagster_home(monkeypatch, capsys):
    """Without DAGSTER_HOME the CLI says so instead of writing to some default instance."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["list"])
    assert caught.value.code == 2
    assert "DAGSTER_HOME is not set" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["add"], ["remove", "moon"]])
def test_bad_command_lines_are_usage_errors(argv, dagster_home, capsys):
    """No command, ``add`` without queries or an unknown command -> exit 2."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_a_misspelt_key_is_an_error_not_an_empty_list(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text("querys:\n  - moon\n")
    with pytest.raises(ValueError, match=r"unknown key.*querys"):
        load_queries(path)
