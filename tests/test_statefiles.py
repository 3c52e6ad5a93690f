"""controlplane.statefiles: private, atomic state files, and a JSON record written only on change."""

from __future__ import annotations

import json
import stat

from controlplane.statefiles import JsonRecord


def test_a_record_is_written_when_it_changes_and_at_its_heartbeat(tmp_path):
    path = tmp_path / "status.json"
    record = JsonRecord(path, heartbeat=10.0)
    assert record.write({"ready": False}, now=100.0)
    assert json.loads(path.read_text()) == {"ready": False}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino

    assert not record.write({"ready": False}, now=101.0)  # the same content: no write
    assert path.stat().st_ino == inode  # written files are replaced atomically, so a write changes the inode

    assert record.write({"ready": True}, now=102.0)  # changed: written at once
    assert json.loads(path.read_text()) == {"ready": True}
    assert not record.write({"ready": True}, now=111.9)
    assert record.write({"ready": True}, now=112.0)  # unchanged for the heartbeat: written, a sign of life


def test_a_record_without_heartbeat_waits_for_a_change_but_replaces_a_removed_file(tmp_path):
    path = tmp_path / "supervisor.json"
    record = JsonRecord(path)
    assert record.write({"groups": [1]}, now=0.0)
    assert not record.write({"groups": [1]}, now=1e6)
    path.unlink()
    assert record.write({"groups": [1]}, now=1e6 + 1)
    assert json.loads(path.read_text()) == {"groups": [1]}
    assert record.due('{"groups": [2]}', now=0.0, exists=True)
