"""The command line end to end: node, replay, selection, exit codes, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preflight.facts_schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run every CLI test in an empty folder, so no config file above it applies."""
    monkeypatch.chdir(tmp_path)


def test_node_json_document_shape(run_cli):
    code, out, err = run_cli("node", "--json")
    doc = json.loads(out)
    assert doc["schema_version"] == 1
    assert doc["command"] == "node"
    assert doc["facts"]["node"]
    assert doc["verdict"]["exit_code"] == code
    keys = {"id", "status", "node", "title", "observed", "expected", "remediation", "evidence"}
    assert doc["findings"] and all(keys <= set(f) for f in doc["findings"])
    assert all(f["status"] in {"pass", "warn", "fail", "skip", "error"} for f in doc["findings"])
    assert err == ""


def test_save_facts_then_replay_gives_the_same_findings(run_cli, tmp_path):
    import jsonschema

    facts_path = tmp_path / "node.json"
    code, out, _ = run_cli("node", "--json", "--save-facts", str(facts_path))
    saved = json.loads(facts_path.read_text())
    jsonschema.validate(saved, json.loads(SCHEMA_PATH.read_text()))
    replay_code, replay_out, _ = run_cli("replay", str(facts_path), "--json")
    node_doc, replay_doc = json.loads(out), json.loads(replay_out)
    assert replay_code == code
    assert replay_doc["findings"] == node_doc["findings"]
    assert replay_doc["command"] == "replay"


def test_terminal_report_groups_and_verdict(run_cli):
    code, out, _ = run_cli("node")
    for group in ("GPUs", "Driver and CUDA", "Python packages", "System", "Network environment"):
        assert group in out
    assert ("READY" in out) if code == 0 else ("NOT READY" in out)
    assert f"(exit {code})" in out


def test_only_and_skip_take_globs(run_cli):
    _, out, _ = run_cli("node", "--json", "--only", "system.*", "--skip", "system.disk_free")
    ids = {f["id"] for f in json.loads(out)["findings"]}
    assert ids and all(i.startswith("system.") for i in ids)
    assert "system.disk_free" not in ids


def test_checks_lists_every_id_with_its_doc(run_cli):
    code, out, _ = run_cli("checks", "--json")
    rows = json.loads(out)
    assert code == 0
    ids = {r["id"] for r in rows}
    assert {"gpu.ecc_uncorrected", "system.shm_size", "net.nccl_socket_ifname", "bench.straggler"} <= ids
    # the rules of the file commands too, so that every id --only/--skip takes is listed
    assert {"requirements.flash_attn_wheel", "config.batch_arithmetic", "data.leakage"} <= ids
    assert all(r["doc"] for r in rows)
    assert len(ids) == len(rows)


def _one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_unknown_check_id_is_an_input_error(run_cli):
    _one_line_error(*run_cli("node", "--only", "gpu.nonexistent"), "gpu.nonexistent", "unknown check id")


def test_replay_of_missing_file(run_cli, tmp_path):
    _one_line_error(*run_cli("replay", str(tmp_path / "nope.json")), "nope.json", "no such file")


def test_replay_of_corrupt_json_names_the_line(run_cli, tmp_path):
    bad = tmp_path / "node.json"
    bad.write_text('{\n  "schema_version": 1,\n  "probe": {,\n}\n')
    _one_line_error(*run_cli("replay", str(bad)), f"{bad}:3", "invalid JSON")


def test_replay_of_foreign_json(run_cli, tmp_path):
    foreign = tmp_path / "package.json"
    foreign.write_text('{"name": "left-pad", "version": "1.3.0"}')
    _one_line_error(*run_cli("replay", str(foreign)), "package.json", "not a preflight facts file")


def test_replay_of_newer_schema_version(run_cli, tmp_path):
    newer = tmp_path / "future.json"
    newer.write_text('{"schema_version": 99}')
    _one_line_error(*run_cli("replay", str(newer)), "future.json", "schema version 99", "upgrade preflight")


def test_replay_of_facts_with_a_wrong_type_names_the_path(run_cli, tmp_path):
    facts_path = tmp_path / "node.json"
    run_cli("node", "--json", "--save-facts", str(facts_path))
    data = json.loads(facts_path.read_text())
    data["system"]["memory"]["total_bytes"] = "lots"
    facts_path.write_text(json.dumps(data))
    _one_line_error(*run_cli("replay", str(facts_path)), "system.memory.total_bytes", "expected an integer")


def test_save_facts_into_a_directory_is_refused(run_cli, tmp_path):
    _one_line_error(*run_cli("node", "--save-facts", str(tmp_path)), str(tmp_path), "is a directory")


def test_bad_flag_value_is_a_usage_error(run_cli):
    with pytest.raises(SystemExit) as exc:
        run_cli("node", "--expect-gpus", "eight")
    assert exc.value.code == 2


def test_console_script_exit_code_and_no_traceback(tmp_path):
    """The installed entry point, as a user runs it, in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2")
    done = subprocess.run(
        [sys.executable, "-m", "preflight", "replay", str(bad)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("preflight: error: ")


def test_cluster_without_hosts_is_this_machine_without_ssh(run_cli):
    code, out, err = run_cli("cluster", "--json")
    doc = json.loads(out)
    assert err == ""
    assert len(doc["nodes"]) == 1 and doc["nodes"][0]["reached"]
    assert doc["nodes"][0]["facts"]["sweep"] is None
    assert doc["verdict"]["exit_code"] == code
    assert {f["id"] for f in doc["cluster_findings"]} >= {"consistency.torch", "consistency.clock_skew"}


def test_cluster_with_a_missing_hosts_file_never_runs_locally(run_cli, tmp_path):
    _one_line_error(*run_cli("cluster", str(tmp_path / "hosts.txt")), "hosts.txt")


def test_cluster_hosts_file_error_names_file_and_line(run_cli, tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("gpu01\ngpu02:99999\n")
    _one_line_error(*run_cli("cluster", str(hosts)), f"{hosts}:2")


def test_cluster_slurm_without_an_allocation(run_cli, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    _one_line_error(*run_cli("cluster", "--slurm"), "SLURM_JOB_NODELIST")
