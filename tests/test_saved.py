"""crossmodal_har.saved: the mechanics every saved JSON file shares (version, migration table, JSON
types, validate, atomic write, read by key)."""

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

import pytest

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.saved import (SavedFile, build_saved, check_json, migrate, parse_saved, read_saved,
                                  short_repr, write_saved)


@dataclass
class Section:
    OMIT_IF_NONE = ("note",)

    size: int
    note: Optional[str] = None


@dataclass
class Toy(SavedFile):
    """Version 3; version 1 called ``name`` ``title``, version 2 added ``tags``."""

    VERSION = 3
    WHAT = "toy.json"
    MIGRATIONS = {1: lambda d: {**{k: v for k, v in d.items() if k != "title"}, "name": d["title"]},
                  2: lambda d: {**d, "tags": []}}
    OMIT_IF_NONE = ("extra",)

    name: str
    tags: List[str]
    mode: Literal["a", "b"] = "a"
    section: Section = field(default_factory=lambda: Section(1))
    extra: Optional[Dict[str, Any]] = None

    def validate(self) -> None:
        if not self.name:
            raise ValueError("name: expected a non-empty string")


def _file(tmp_path, data, name="toy.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_current_version_reads_and_writes_back_the_same_keys(tmp_path):
    data = {"format_version": 3, "name": "x", "tags": ["t"], "mode": "b", "section": {"size": 2}}
    toy = read_saved(Toy, _file(tmp_path, data))
    assert toy.name == "x" and toy.section == Section(2) and toy.extra is None
    out = write_saved(toy, tmp_path / "again.json")
    assert json.loads(out.read_text()) == data  # None sections left out, format_version first
    assert list(json.loads(out.read_text()))[0] == "format_version"


def test_a_saved_file_reads_by_key_like_its_json():
    toy = Toy(name="x", tags=[], extra={"k": 1})
    assert toy["name"] == "x" and toy["section"] == {"size": 1} and toy.get("extra") == {"k": 1}
    assert toy["format_version"] == 3 and dict(toy) == toy.to_json()
    assert "extra" in toy and "extra" not in Toy(name="x", tags=[]) and toy.get("nope") is None
    with pytest.raises(KeyError):
        Toy(name="x", tags=[])["extra"]


def test_an_older_version_is_migrated_step_by_step_with_a_warning(tmp_path, caplog):
    p = _file(tmp_path, {"format_version": 1, "title": "old"})
    with caplog.at_level(logging.WARNING, logger="crossmodal_har.saved"):
        toy = read_saved(Toy, p)
    assert toy.name == "old" and toy.tags == []
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert str(p) in msg and "format_version 1" in msg and "version 3" in msg and "migrated" in msg
    assert json.loads(p.read_text()) == {"format_version": 1, "title": "old"}  # reading never rewrites


def test_the_current_version_reads_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="crossmodal_har.saved"):
        read_saved(Toy, _file(tmp_path, {"format_version": 3, "name": "x", "tags": []}))
    assert not caplog.records


def test_a_newer_version_is_refused_naming_the_file(tmp_path):
    p = _file(tmp_path, {"format_version": 4, "name": "x", "tags": []})
    with pytest.raises(DataError, match="newer") as err:
        read_saved(Toy, p)
    assert str(p) in str(err.value) and "format_version 4" in str(err.value) and "up to 3" in str(err.value)


@pytest.mark.parametrize("version", [None, "3", 3.0, True, [3]])
def test_a_missing_or_non_integer_version_is_refused(tmp_path, version):
    data = {"name": "x", "tags": []}
    if version is not None:
        data["format_version"] = version
    p = _file(tmp_path, data)
    with pytest.raises(DataError, match="format_version must be an integer") as err:
        read_saved(Toy, p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_a_version_without_a_migration_path_is_refused(tmp_path):
    with pytest.raises(DataError, match="no migration from 0"):
        read_saved(Toy, _file(tmp_path, {"format_version": 0, "name": "x"}))


def test_an_unversioned_file_is_the_version_its_class_names():
    @dataclass
    class Ledger(SavedFile):
        VERSION = 1
        WHAT = "ledger.json"
        UNVERSIONED = 0
        MIGRATIONS = {0: dict}

        session: str

    assert parse_saved(Ledger, {"session": "s"}).session == "s"
    assert migrate(Ledger, {"session": "s", "format_version": 1}) == {"session": "s"}
    with pytest.raises(DataError, match="format_version must be an integer"):
        parse_saved(Toy, {"name": "x", "tags": []})


def test_an_unknown_key_is_refused_naming_the_file_and_the_key(tmp_path):
    p = _file(tmp_path, {"format_version": 3, "name": "x", "tags": [], "nmae": "typo"})
    with pytest.raises(DataError, match=r"unknown key\(s\) 'nmae'; allowed: name, tags") as err:
        read_saved(Toy, p)
    assert str(err.value).startswith(f"{p}: ")
    p = _file(tmp_path, {"format_version": 3, "name": "x", "tags": [], "section": {"size": 1, "x\ny": 1}})
    with pytest.raises(DataError, match=r"section: unknown key\(s\) 'x\\ny'") as err:
        read_saved(Toy, p)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("data,words", [
    ({"tags": []}, "missing key 'name'"),
    ({"name": 1, "tags": []}, "name: expected a string, got number"),
    ({"name": "x", "tags": "t"}, "tags: expected a list, got string"),
    ({"name": "x", "tags": [1]}, "tags[0]: expected a string, got number"),
    ({"name": "x", "tags": [], "mode": "c"}, "mode: 'c' is not one of a, b"),
    ({"name": "x", "tags": [], "section": [1]}, "section: expected a JSON object, got array"),
    ({"name": "x", "tags": [], "section": {"size": 1.0}}, "section.size: expected an integer, got number"),
    ({"name": "x", "tags": [], "section": {"size": True}}, "section.size: expected an integer, got boolean"),
    ({"name": "x", "tags": [], "extra": []}, "extra: expected a JSON object, got array"),
    ({"name": "", "tags": []}, "name: expected a non-empty string"),  # validate()
])
def test_json_types_are_checked_in_json_words(data, words):
    with pytest.raises(DataError) as err:
        parse_saved(Toy, {"format_version": 3, **data}, "toy.json")
    assert words in str(err.value) and str(err.value).startswith("toy.json: ")


def test_a_whole_file_that_is_not_an_object_is_refused():
    for value in (None, [], "x", 3):
        with pytest.raises(DataError, match="toy.json: expected a JSON object"):
            parse_saved(Toy, value, "p")


def test_check_json_numbers():
    check_json(float, 3, "x")
    check_json(Optional[float], None, "x")
    with pytest.raises(ConfigError, match="x: number out of range"):
        check_json(float, 10 ** 400, "x")
    with pytest.raises(ConfigError, match="x: expected a number, got boolean"):
        check_json(float, True, "x")


def test_build_saved_checks_fields_given_by_code(tmp_path):
    toy = build_saved(Toy, {"name": "x", "tags": ["a"]}, tmp_path / "t.json")
    assert toy.tags == ["a"]
    with pytest.raises(DataError, match="t.json: tags: expected a list"):
        build_saved(Toy, {"name": "x", "tags": "a"}, tmp_path / "t.json")


def test_write_saved_validates_first_and_writes_atomically(tmp_path):
    with pytest.raises(DataError, match="bad.json: name: expected a non-empty string"):
        write_saved(Toy(name="", tags=[]), tmp_path / "bad.json")
    assert not list(tmp_path.iterdir())


def test_short_repr():
    assert short_repr("x" * 100).endswith("...") and len(short_repr("x" * 100)) == 40
    assert short_repr(1) == "1"
