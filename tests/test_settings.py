"""Settings files: discovery upward, validation with file and line, overrides reaching checks."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(root / "src" / "deep")
    return root


def _ids(out: str) -> set[str]:
    return {f["id"] for f in json.loads(out)["findings"]}


def test_pyproject_table_found_upward(project, run_cli):
    (project / "pyproject.toml").write_text('[tool.preflight]\nonly = ["system.*"]\n')
    code, out, err = run_cli("node", "--json")
    assert err == ""
    assert _ids(out) and all(i.startswith("system.") for i in _ids(out))


def test_pyproject_without_table_is_passed_over(project, run_cli):
    (project / "src" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (project / ".preflight.toml").write_text('skip = ["gpu.*"]\n')
    _, out, _ = run_cli("node", "--json")
    assert not any(i.startswith("gpu.") for i in _ids(out))


def test_command_line_only_overrides_file(project, run_cli):
    (project / ".preflight.toml").write_text('only = ["system.*"]\n')
    _, out, _ = run_cli("node", "--json", "--only", "net.*")
    assert all(i.startswith("net.") for i in _ids(out))


def test_threshold_override_changes_the_verdict(project, run_cli):
    # every disk here has less than a petabyte free: the raised threshold must fail the check
    (project / ".preflight.toml").write_text(
        'only = ["system.disk_free"]\n[checks."system.disk_free"]\nwarn_gib = 1000000\nfail_gib = 1000000\n'
    )
    code, out, _ = run_cli("node", "--json")
    (finding,) = json.loads(out)["findings"]
    assert finding["status"] == "fail"
    assert code == 1


def test_strict_in_file_makes_warnings_fail(project, run_cli, monkeypatch):
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "lo,eth")
    (project / ".preflight.toml").write_text('strict = true\nonly = ["net.nccl_socket_ifname"]\n')
    code, out, _ = run_cli("node", "--json")
    (finding,) = json.loads(out)["findings"]
    assert finding["status"] == "warn"
    assert code == 1


def _error(code, out, err, *needles):  # noqa: ANN001
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_unknown_key_names_file_and_line(project, run_cli):
    (project / ".preflight.toml").write_text('strict = true\nexpect_gpu = 8\n')
    _error(*run_cli("node"), ".preflight.toml:2", "unknown key 'expect_gpu'")


def test_unknown_check_in_thresholds(project, run_cli):
    (project / "pyproject.toml").write_text('[tool.preflight]\n\n[tool.preflight.checks."gpu.ecc"]\nmax = 1\n')
    _error(*run_cli("node"), "pyproject.toml:3", "unknown check id 'gpu.ecc'")


def test_unknown_threshold_name(project, run_cli):
    (project / ".preflight.toml").write_text('[checks."gpu.memory_in_use"]\nmax_used_gib = 1\n')
    _error(*run_cli("node"), ".preflight.toml:2", "no threshold 'max_used_gib'", "max_used_mib")


def test_wrong_type(project, run_cli):
    (project / ".preflight.toml").write_text('expect_gpus = "eight"\n')
    _error(*run_cli("node"), ".preflight.toml:1", "expect_gpus must be int")


def test_invalid_toml_names_the_line(project, run_cli):
    (project / ".preflight.toml").write_text('only = ["gpu.*"]\nskip = [\n')
    _error(*run_cli("node"), ".preflight.toml:", "invalid TOML")


def test_unknown_id_in_file_selection(project, run_cli):
    (project / ".preflight.toml").write_text('skip = ["gpu.eccc"]\n')
    _error(*run_cli("node"), ".preflight.toml", "unknown check id 'gpu.eccc'")


def test_explicit_config_missing(project, run_cli):
    _error(*run_cli("node", "--config", "nowhere.toml"), "nowhere.toml", "not found")
