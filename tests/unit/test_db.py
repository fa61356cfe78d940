"""The daemon's durable documents: atomic writes, names checked, corrupt files set aside."""

import json
import os

import pytest

from edgert.daemon.db import Db
from edgert.errors import EdgertError


def test_round_trip_and_private_modes(tmp_path):
    db = Db(str(tmp_path), sync=False)
    db.put_service({"name": "web", "versions": [{"version": 1}]})
    db.put_instance({"id": "abc", "node_service": "web"})
    db.put_settings({"update_windows": "daily 01:00-02:00"})
    again = Db(str(tmp_path))
    assert again.load() == []
    assert again.services["web"]["versions"] == [{"version": 1}]
    assert again.instances["abc"]["node_service"] == "web"
    assert again.settings == {"update_windows": "daily 01:00-02:00"}
    assert os.stat(tmp_path / "daemon").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "daemon" / "services" / "web.json").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "A" * 65, "Upper"])
def test_names_that_would_escape_or_hide_are_refused(tmp_path, name):
    db = Db(str(tmp_path), sync=False)
    with pytest.raises(EdgertError):
        db.put_instance({"id": name})
    with pytest.raises(EdgertError):
        db.put_service({"name": name})


def test_corrupt_and_mismatched_documents_are_set_aside(tmp_path):
    db = Db(str(tmp_path), sync=False)
    directory = tmp_path / "daemon" / "instances"
    (directory / "bad.json").write_text("{not json")
    (directory / "other.json").write_text(json.dumps({"id": "someone-else"}))
    (directory / "list.json").write_text("[1, 2]")
    (directory / ".ok.json.tmp-123").write_text("half")  # an interrupted write
    problems = db.load()
    assert len(problems) == 3 and db.instances == {}
    assert sorted(os.listdir(directory)) == ["bad.json.corrupt", "list.json.corrupt",
                                             "other.json.corrupt"]


def test_remove(tmp_path):
    db = Db(str(tmp_path), sync=False)
    db.put_instance({"id": "x1"})
    db.remove_instance("x1")
    db.remove_instance("x1")  # twice is fine
    assert Db(str(tmp_path)).load() == [] and not os.listdir(tmp_path / "daemon" / "instances")
