"""Hosts files in every format we read, auto-detection, Slurm hostlists, each error's file:line."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import preflight.cluster.hosts as hosts_module
import preflight.cluster.slurm as slurm_module
from preflight.cluster.hosts import FORMATS, Host, detect_format, load_hosts, parse_hosts
from preflight.cluster.slurm import MAX_HOSTS, expand_nodelist, nodelist_from_env
from preflight.errors import InputError


def targets(text: str, fmt: str = "auto") -> list[str]:
    return [h.target for h in parse_hosts(text, "hosts.txt", fmt)]


def error(text: str, fmt: str = "auto") -> str:
    with pytest.raises(InputError) as info:
        parse_hosts(text, "hosts.txt", fmt)
    return str(info.value)


@pytest.mark.parametrize("module", [hosts_module, slurm_module])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- plain -------------------------------------------------------------------------------------


def test_plain_forms():
    text = "gpu01\nme@gpu02\ngpu03:2222\nme@gpu04:2200\n10.0.0.5\nroot@10.0.0.6:22\n"
    assert parse_hosts(text, "hosts.txt") == [
        Host("gpu01", None, None, None, "hosts.txt:1"),
        Host("gpu02", "me", None, None, "hosts.txt:2"),
        Host("gpu03", None, 2222, None, "hosts.txt:3"),
        Host("gpu04", "me", 2200, None, "hosts.txt:4"),
        Host("10.0.0.5", None, None, None, "hosts.txt:5"),
        Host("10.0.0.6", "root", 22, None, "hosts.txt:6"),
    ]
    assert detect_format(text) == "plain"


def test_ipv6_forms():
    hosts = parse_hosts(
        "[fe80::1]:2222\nme@[2001:db8::7]:22\nfe80::2\n2001:db8::8\n[fd00::9]\nme@fd00::10\n", "h"
    )
    assert [(h.name, h.user, h.port) for h in hosts] == [
        ("fe80::1", None, 2222),
        ("2001:db8::7", "me", 22),
        ("fe80::2", None, None),  # bare: every colon belongs to the address, no port
        ("2001:db8::8", None, None),
        ("fd00::9", None, None),
        ("fd00::10", "me", None),
    ]
    assert [h.target for h in hosts[:3]] == ["[fe80::1]:2222", "me@[2001:db8::7]:22", "fe80::2"]


def test_ipv6_with_zone_id():
    (host,) = parse_hosts("[fe80::1%eth0]:22\n", "h")
    assert (host.name, host.port) == ("fe80::1%eth0", 22)


def test_comments_blank_lines_crlf_and_bom(tmp_path):
    path = tmp_path / "hosts"
    text = "\ufeff# cluster A\r\n\r\n  gpu01   # head node\r\n\tgpu02\r\n#gpu03\r\n"
    path.write_bytes(text.encode())
    hosts = load_hosts(path)
    assert [(h.name, h.source) for h in hosts] == [("gpu01", f"{path}:3"), ("gpu02", f"{path}:4")]


def test_target_display():
    assert Host("gpu01").target == "gpu01"
    assert Host("gpu01", user="me").target == "me@gpu01"
    assert Host("gpu01", port=2222).target == "gpu01:2222"
    assert Host("fe80::1").target == "fe80::1"
    assert Host("fe80::1", user="me", port=22).target == "me@[fe80::1]:22"


def test_host_is_frozen():
    with pytest.raises(AttributeError):
        Host("gpu01").name = "gpu02"  # type: ignore[misc]


# --- DeepSpeed ---------------------------------------------------------------------------------


def test_deepspeed_getting_started_example():
    # https://www.deepspeed.ai/getting-started/#resource-configuration-multi-node
    text = "worker-1 slots=4\nworker-2 slots=4\n"
    assert detect_format(text) == "deepspeed"
    hosts = parse_hosts(text, "hostfile")
    assert [(h.name, h.slots, h.port, h.user) for h in hosts] == [
        ("worker-1", 4, None, None),
        ("worker-2", 4, None, None),
    ]


def test_deepspeed_generated_from_slurm_with_comment_header():
    # The common "for i in $(scontrol show hostnames ...); do echo $i slots=8" pattern.
    text = "# Automatically generated hostfile\ngpu512.dodrio.os slots=4\ngpu513.dodrio.os slots=4"
    names = [h.name for h in parse_hosts(text, "hostfile")]
    assert names == ["gpu512.dodrio.os", "gpu513.dodrio.os"]


def test_deepspeed_strict_requires_slots_on_every_line():
    # DeepSpeed's runner matches r'^(\S+)\s+slots=(\d+)' and rejects anything else.
    msg = error("worker-1 slots=4\nworker-2\n", "deepspeed")
    assert "hosts.txt:2: unparsable line 'worker-2'" in msg
    assert "hosts.txt:1:" in error("worker-1 slots=4 max_slots=8\n", "deepspeed")
    assert "hosts.txt:1:" in error("worker-1\n", "deepspeed")


def test_deepspeed_duplicate_names_both_lines():
    # DeepSpeed: "Hostfile contains multiple entries for {host}"; we also say where.
    msg = error("worker-1 slots=4\nworker-2 slots=4\n\nworker-1 slots=4\n")
    assert msg == "hosts.txt:4: duplicate host worker-1 (also on line 1)"


# --- Open MPI ----------------------------------------------------------------------------------


def test_openmpi_prrte_docs_example():
    # https://docs.prrte.org/en/latest/hosts/hostfiles.html (Open MPI 5 hostfile syntax)
    text = (
        "# This is a comment line, and will be ignored\n"
        "node01  slots=10\n"
        "node13  slots=5\n"
        "\n"
        "node15\n"
        "node16\n"
        "node17  slots=3\n"
    )
    assert detect_format(text) == "openmpi"
    hosts = parse_hosts(text, "hostfile")
    assert [(h.name, h.slots, h.source) for h in hosts] == [
        ("node01", 10, "hostfile:2"),
        ("node13", 5, "hostfile:3"),
        ("node15", None, "hostfile:5"),
        ("node16", None, "hostfile:6"),
        ("node17", 3, "hostfile:7"),
    ]


def test_openmpi_max_slots_and_spellings():
    # Keyword spellings: PRRTE's src/util/hostfile/hostfile_lex.l; '=' may have spaces around it.
    text = (
        "hostname1 slots=8 max-slots=8\n"  # QLogic OFED+ user guide form
        "hostname2 slots = 4 max_slots = 8\n"
        "hostname3 max_slots=6\n"  # Open MPI: max_slots alone also sets slots
        "hostname4 count=2\n"
        "hostname5 cpu=3 slots_max=4\n"
    )
    assert detect_format(text) == "openmpi"
    assert [h.slots for h in parse_hosts(text, "h")] == [8, 4, 6, 2, 3]


def test_openmpi_username_port_and_user_at():
    text = "alice@node01 slots=2\nnode02 username=bob port=2222\n10.1.0.3 slots=8\n"
    hosts = parse_hosts(text, "h", "openmpi")
    assert [h.target for h in hosts] == ["alice@node01", "bob@node02:2222", "10.1.0.3"]


def test_openmpi_ipv6_unbracketed():
    (host,) = parse_hosts("fe80::1 slots=4\n", "h")
    assert (host.name, host.slots, host.port) == ("fe80::1", 4, None)


def test_openmpi_slots_without_equals_is_an_error():
    # PRRTE's hostfile_parse_int() insists on '=' after the keyword: 'slots 4' is a parse error.
    msg = error("node01 slots 4\n")
    assert msg.startswith("hosts.txt:1: unparsable line 'node01 slots 4'")


@pytest.mark.parametrize(
    "line, needle",
    [
        ("node01 slots=4 max_slots=2", "max_slots=2 is less than slots=4"),
        ("node01 slots=4 slots=8", "slots given twice"),
        ("node01 slots=4 count=8", "slots given twice"),
        ("node01 sockets=2", "unparsable line"),
        ("node01 slots=4 extra", "unparsable line"),
        ("alice@node01 username=bob", "user given twice"),
        ("node01 port=0", "bad port '0'"),
        ("node01 max_slots=x", "bad max_slots 'x'"),
        ("node01 slots=", "bad slots ''"),
    ],
)
def test_openmpi_line_errors(line, needle):
    msg = error(f"# header\n{line}\n", "openmpi")
    assert msg.startswith("hosts.txt:2: ")
    assert needle in msg


# --- MPICH -------------------------------------------------------------------------------------


def test_mpich_hydra_readme_example():
    # MPICH Hydra README (src/pm/hydra/README in MPICH's source tarball), trailing comments and all.
    text = (
        "# This is a sample host file\n"
        "donner:2     # The first 2 procs are scheduled to run here\n"
        "foo:3        # The next 3 procs run on this host\n"
        "shakey:2     # The last 2 procs run on this host\n"
    )
    assert detect_format(text) == "mpich"
    hosts = parse_hosts(text, "hosts")
    assert [(h.name, h.slots, h.port) for h in hosts] == [
        ("donner", 2, None),
        ("foo", 3, None),
        ("shakey", 2, None),
    ]


def test_mpich_bare_names_mix_with_counts():
    assert [(h.name, h.slots) for h in parse_hosts("gpu01:8\ngpu02\n", "h")] == [
        ("gpu01", 8),
        ("gpu02", None),
    ]


@pytest.mark.parametrize(
    "text, fmt",
    [
        ("gpu01:8\ngpu02:8\n", "mpich"),  # small N: process counts
        ("gpu01:1023\n", "mpich"),
        ("gpu01:1024\n", "plain"),  # N >= 1024: a port
        ("gpu01:2222\ngpu02:2222\n", "plain"),
        ("gpu01:22\ngpu02:22\n", "plain"),  # 22 is the SSH port, written out
        ("gpu01\ngpu02\n", "plain"),  # no hint at all
        ("me@gpu01\ngpu02:2222\n", "plain"),
        ("[fe80::1]:8\n", "plain"),  # brackets are plain-only syntax
        ("fe80::1\ngpu01:4\n", "mpich"),  # a bare IPv6 address is no hint
    ],
)
def test_plain_or_mpich_detection(text, fmt):
    assert detect_format(text) == fmt


def test_conflicting_host_n_hints_are_an_error_naming_both_lines():
    msg = error("gpu01:8\n\ngpu02:2222\n")
    assert msg.startswith("hosts.txt:3: cannot tell MPICH process counts from SSH ports")
    assert "'gpu01:8' (line 1)" in msg and "'gpu02:2222' (line 3)" in msg
    assert "--hosts-format" in msg
    assert error("me@gpu01\ngpu02:4\n").startswith("hosts.txt:2: cannot tell")


def test_explicit_format_overrides_a_wrong_guess():
    assert [(h.port, h.slots) for h in parse_hosts("gpu01:8\n", "h", "plain")] == [(8, None)]
    assert [(h.port, h.slots) for h in parse_hosts("gpu01:2222\n", "h", "mpich")] == [(None, 2222)]
    assert [(h.port, h.slots) for h in parse_hosts("gpu01:8\ngpu02:2222\n", "h", "plain")] == [
        (8, None),
        (2222, None),
    ]


@pytest.mark.parametrize(
    "line, needle",
    [
        ("gpu01:0", "bad slots (MPICH process count) '0'"),
        ("gpu01:x", "bad slots (MPICH process count) 'x'"),
        ("me@gpu01:4", "unparsable line"),
        ("[fe80::1]:4", "unparsable line"),
        ("gpu01:4 gpu02:4", "unparsable line"),
    ],
)
def test_mpich_line_errors(line, needle):
    msg = error(f"ok:1\n{line}\n", "mpich")
    assert msg.startswith("hosts.txt:2: ")
    assert needle in msg


# --- Slurm -------------------------------------------------------------------------------------


def test_slurm_manpage_examples():
    # Slurm::Hostlist(3pm), https://manpages.ubuntu.com/manpages/noble/man3/Slurm::Hostlist.3pm.html
    assert expand_nodelist("node1,node[2-5,12]") == [f"node{n}" for n in (1, 2, 3, 4, 5, 12)]
    assert expand_nodelist("node21,node[27-34]") == ["node21"] + [f"node{n}" for n in range(27, 35)]
    assert len(expand_nodelist("tux[0-5,12,20-25]")) == 13
    # slurm_hostlist_create(3): "linux[1-3,6]" represents linux1, linux2, linux3 and linux6.
    assert expand_nodelist("linux[1-3,6]") == ["linux1", "linux2", "linux3", "linux6"]


def test_slurm_leading_zeros():
    nodes = expand_nodelist("node[001-100]")
    assert nodes[0] == "node001" and nodes[9] == "node010" and nodes[-1] == "node100"
    assert len(nodes) == 100
    assert expand_nodelist("n[8-10]") == ["n8", "n9", "n10"]  # no padding unless the low end has it
    assert expand_nodelist("n[08-10]") == ["n08", "n09", "n10"]
    assert expand_nodelist("n[007]") == ["n007"]


def test_slurm_cartesian_product():
    assert expand_nodelist("a[1-2]b[3-4]") == ["a1b3", "a1b4", "a2b3", "a2b4"]
    assert expand_nodelist("rack[1-2]-gpu[01-02].ib") == [
        "rack1-gpu01.ib",
        "rack1-gpu02.ib",
        "rack2-gpu01.ib",
        "rack2-gpu02.ib",
    ]


def test_slurm_several_lists_and_separators():
    assert expand_nodelist("a[1-3],b5,c[07-09]") == ["a1", "a2", "a3", "b5", "c07", "c08", "c09"]
    nodes = expand_nodelist("gpu[01-02] login1\tcpu[1,3]")
    assert nodes == ["gpu01", "gpu02", "login1", "cpu1", "cpu3"]
    assert expand_nodelist("gpu[01-02],") == ["gpu01", "gpu02"]  # a trailing comma is harmless
    assert expand_nodelist("") == []


@pytest.mark.parametrize(
    "text, needle",
    [
        ("gpu[04-01]", "range '04-01' runs backwards in 'gpu[04-01]'"),
        ("gpu[01-04", "unclosed '['"),
        ("gpu01-04]", "']' without '['"),
        ("gpu[[1-2]]", "nested '['"),
        ("gpu[]", "malformed range ''"),
        ("gpu[a-c]", "malformed range 'a-c'"),
        ("gpu[1-]", "malformed range '1-'"),
        ("gpu[1-4:2]", "malformed range '1-4:2'"),
        ("bgl[123x456]", "malformed range '123x456'"),
        ("n[0-99999999]", f"more than {MAX_HOSTS} hosts"),
        ("a[0-999]b[0-999]", f"more than {MAX_HOSTS} hosts"),
    ],
)
def test_slurm_expression_errors(text, needle):
    with pytest.raises(InputError) as info:
        expand_nodelist(text, source="SLURM_JOB_NODELIST")
    assert str(info.value).startswith("SLURM_JOB_NODELIST: ")
    assert needle in str(info.value)


def test_slurm_hosts_file():
    text = "# allocation\ngpu[01-04,07]\nlogin1, cpu[1-2]  # login and cpu nodes\n"
    assert detect_format(text) == "slurm"
    hosts = parse_hosts(text, "nodes.txt")
    names = [h.name for h in hosts]
    assert names == ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "login1", "cpu1", "cpu2"]
    assert hosts[0].source == "nodes.txt:2" and hosts[-1].source == "nodes.txt:3"
    assert all(h.port is None and h.user is None and h.slots is None for h in hosts)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("ok1\ngpu[04-01]\n", "hosts.txt:2: range '04-01' runs backwards"),
        ("ok1\ngpu[01-04\n", "hosts.txt:2: unclosed '['"),
        ("gpu[01-03]\ngpu[03-05]\n", "hosts.txt:2: duplicate host gpu03 (also on line 1)"),
        ("gpu[1-2],gpu2\n", "hosts.txt:1: duplicate host gpu2 (also on line 1)"),
        ("gpu[1-2],me@gpu3\n", "hosts.txt:1: 'me@gpu3' is not a host name or address"),
    ],
)
def test_slurm_file_errors(text, needle):
    assert error(text).startswith(needle)


def test_nodelist_from_env():
    assert nodelist_from_env({"SLURM_JOB_NODELIST": "gpu[01-02]"}) == ["gpu01", "gpu02"]
    assert nodelist_from_env({"SLURM_NODELIST": "gpu[3-4]"}) == ["gpu3", "gpu4"]
    assert nodelist_from_env({"SLURM_JOB_NODELIST": "a1", "SLURM_NODELIST": "b1"}) == ["a1"]
    assert nodelist_from_env({"SLURM_JOB_NODELIST": " ", "SLURM_NODELIST": "b1"}) == ["b1"]
    assert nodelist_from_env({"PATH": "/bin"}) == []
    with pytest.raises(InputError, match=r"^SLURM_NODELIST: unclosed"):
        nodelist_from_env({"SLURM_NODELIST": "gpu[1-2"})


# --- errors common to every format -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fmt, expected",
    [
        ("gpu01\ngpu01:99999\n", "auto", "hosts.txt:2: bad port '99999' (must be 1-65535)"),
        ("gpu01:0\n", "plain", "hosts.txt:1: bad port '0' (must be 1-65535)"),
        ("gpu01:\n", "auto", "hosts.txt:1: bad port ''"),
        ("gpu01:ssh\n", "auto", "hosts.txt:1: bad port 'ssh'"),
        ("[fe80::1]:\n", "auto", "hosts.txt:1: bad port ''"),
        ("[fe80::1]:70000\n", "auto", "hosts.txt:1: bad port '70000'"),
        ("w1 slots=0\n", "auto", "hosts.txt:1: bad slots '0' (must be a whole number >= 1)"),
        ("w1 slots=-1\n", "auto", "hosts.txt:1: bad slots '-1'"),
        ("w1 slots=four\n", "auto", "hosts.txt:1: bad slots 'four'"),
        ("w1 slots=1.5\n", "deepspeed", "hosts.txt:1: bad slots '1.5'"),
        ("gpu 01\n", "plain", "hosts.txt:1: unparsable line 'gpu 01'"),
        ("@gpu01\n", "auto", "hosts.txt:1: unparsable line '@gpu01'"),
        ("me@\n", "auto", "hosts.txt:1: unparsable line 'me@'"),
        ("[gpu01]:22\n", "auto", "hosts.txt:1: unparsable line '[gpu01]:22'"),
        ("[fe80::1\n", "auto", "hosts.txt:1: unparsable line '[fe80::1'"),
        ("gpu/01\n", "auto", "hosts.txt:1: 'gpu/01' is not a host name or address"),
        ("fe80::zz\n", "auto", "hosts.txt:1: 'fe80::zz' is not a host name or address"),
        ("a\nb\na\n", "auto", "hosts.txt:3: duplicate host a (also on line 1)"),
        ("a:2222\nb\na:2222\n", "auto", "hosts.txt:3: duplicate host a:2222 (also on line 1)"),
        ("x@a:2222\ny@a:2222\n", "auto", "hosts.txt:2: duplicate host a:2222 (also on line 1)"),
        (
            "[fe80::1]:22\nfe80::1\n[fe80::1]:22\n",
            "auto",
            "hosts.txt:3: duplicate host [fe80::1]:22 (also on line 1)",
        ),
    ],
)
def test_line_errors_name_file_and_line(text, fmt, expected):
    assert error(text, fmt).startswith(expected)


def test_same_name_different_ports_are_different_hosts():
    # Several containers behind one address, each sshd on its own port.
    assert targets("box:2201\nbox:2202\nbox\n") == ["box:2201", "box:2202", "box"]


def test_a_line_in_the_wrong_format_says_so():
    msg = error("worker-1 slots=8\ngpu[01-02]\n")  # detected as openmpi
    assert msg.startswith("hosts.txt:2: 'gpu[01-02]' is not a host name or address")
    assert msg.endswith("(read as openmpi; --hosts-format picks another format)")
    assert "read as" not in error("worker-1 slots=8\ngpu[01-02]\n", "openmpi")


def test_unknown_format():
    with pytest.raises(InputError, match="unknown hosts format 'yaml'"):
        parse_hosts("gpu01\n", "h", "yaml")
    with pytest.raises(InputError, match="unknown hosts format"):
        load_hosts(Path("/nonexistent"), "yaml")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # another\n"])
def test_no_hosts_is_an_error(text, tmp_path):
    path = tmp_path / "hosts"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_hosts(path)
    assert str(info.value) == f"{path}: no hosts in the file (only blank lines and comments)"


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        load_hosts(tmp_path / "nope.txt")
    assert str(info.value) == f"{tmp_path / 'nope.txt'}: hosts file not found"


def test_directory(tmp_path):
    with pytest.raises(InputError) as info:
        load_hosts(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a hosts file"


def test_binary_file(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(b"\xff\xfe\x00gpu")
    with pytest.raises(InputError, match="not a text file"):
        load_hosts(path)


def test_load_hosts_with_format(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("gpu01:8\ngpu02:8\n")
    assert [h.slots for h in load_hosts(path)] == [8, 8]
    assert [h.port for h in load_hosts(path, "plain")] == [8, 8]
    assert load_hosts(path)[1].source == f"{path}:2"


def test_formats_tuple():
    assert FORMATS == ("auto", "plain", "deepspeed", "openmpi", "mpich", "slurm")
