"""The requirements parser: pip's reading of requirements files, pyproject.toml dependencies,
PyTorch index variants, errors naming file:line, and fuzzing (never anything but InputError).

Real-world lines are quoted from public repositories; each test names its source."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preflight.errors import InputError
from preflight.requirements.parse import (
    IndexUrl,
    ParsedRequirements,
    Requirement,
    parse_requirements,
    redact_url,
)
from preflight.requirements.pyproject import parse_pyproject
from preflight.requirements.torch_index import torch_variant

NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def parse(
    tmp_path: Path, text: str, *, environ: dict[str, str] | None = None, **kw
) -> ParsedRequirements:
    return parse_requirements(
        write(tmp_path, "requirements.txt", text), environ=environ or NO_ENV, **kw
    )


def one(tmp_path: Path, line: str, **kw) -> Requirement:
    result = parse(tmp_path, line + "\n", **kw)
    (req,) = result.requirements
    return req


def error(tmp_path: Path, text: str, name: str = "requirements.txt", **kw) -> str:
    path = write(tmp_path, name, text)
    with pytest.raises(InputError) as info:
        parse_requirements(path, environ=NO_ENV, **kw)
    return str(info.value)


# --- real files ----------------------------------------------------------------------------------

# hiyouga/LLaMA-Factory requirements.txt (2024)
LLAMA_FACTORY = """\
transformers>=4.41.2,<=4.45.2
datasets>=2.16.0,<=2.21.0
accelerate>=0.30.1,<=0.34.2
peft>=0.11.1,<=0.12.0
trl>=0.8.6,<=0.9.6
gradio>=4.0.0,<5.0.0
pandas>=2.0.0
scipy
sse-starlette
numpy<2.0.0
"""

# axolotl-ai-cloud/axolotl requirements.txt (0.6 era)
AXOLOTL = """\
--extra-index-url https://huggingface.github.io/autogptq-index/whl/cu118/

# START section of dependencies that don't install on Darwin/MacOS
bitsandbytes==0.45.0
triton>=2.3.0
mamba-ssm==1.2.0.post1
flash-attn==2.7.0.post2
xformers>=0.0.23.post1
# END section

PyYAML>=6.0
numpy>=1.24.4,<=2.0.1
lm_eval==0.4.4
"""

# vllm-project/vllm requirements/cpu.txt (v0.8)
VLLM_CPU = """\
# Common dependencies
-r common.txt

numba == 0.60.0; python_version == '3.9' # v0.61 doesn't support Python 3.9. Required for N-gram speculative decoding
numba == 0.61.2; python_version > '3.9'

# Dependencies for CPUs
torch==2.6.0+cpu; platform_machine == "x86_64"
torch==2.6.0; platform_system == "Darwin"
torch==2.7.0.dev20250304; platform_machine == "s390x"
"""

# vllm-project/vllm requirements/xpu.txt
VLLM_XPU = """\
# Common dependencies
-r common.txt
--extra-index-url=https://wheels.vllm.ai/xpu/
triton==3.8.0+xpu
--extra-index-url=https://download.pytorch.org/whl/xpu
torch==2.14.0
torchcodec >= 0.14 # Required for the torchcodec video decoding backend
"""


def test_llama_factory_ranges(tmp_path):
    result = parse(tmp_path, LLAMA_FACTORY)
    by_name = {r.name: r for r in result.requirements}
    assert by_name["transformers"].specifier == "<=4.45.2,>=4.41.2"
    assert by_name["transformers"].kind == "ranged"
    assert by_name["scipy"].kind == "unpinned" and by_name["scipy"].specifier == ""
    assert by_name["sse-starlette"].line == 9
    assert by_name["numpy"].raw == "numpy<2.0.0"
    assert result.files == [str(tmp_path / "requirements.txt")]
    assert not result.indexes and not result.skipped and not result.constraints


def test_axolotl_index_and_pins(tmp_path):
    result = parse(tmp_path, AXOLOTL)
    assert result.indexes == [
        IndexUrl(
            "https://huggingface.github.io/autogptq-index/whl/cu118/",
            str(tmp_path / "requirements.txt"),
            1,
            "--extra-index-url",
        )
    ]
    by_name = {r.name: r for r in result.requirements}
    assert by_name["flash-attn"].specifier == "==2.7.0.post2"
    assert by_name["flash-attn"].kind == "pinned"
    assert by_name["pyyaml"].line == 11  # normalised name, line as in the file
    assert by_name["lm-eval"].specifier == "==0.4.4"


def test_vllm_cpu_markers_and_local_labels(tmp_path):
    write(tmp_path, "common.txt", "requests >= 2.26.0\n")
    result = parse(tmp_path, VLLM_CPU)
    assert [r.name for r in result.requirements] == [
        "requests",
        "numba",
        "numba",
        "torch",
        "torch",
        "torch",
    ]
    common, numba39, _numba, torch_x86, _mac, _s390 = result.requirements
    assert common.source == str(tmp_path / "common.txt") and common.line == 1
    assert numba39.marker == "python_version == '3.9'"  # as written, comment removed
    assert numba39.specifier == "==0.60.0" and numba39.line == 4
    assert torch_x86.specifier == "==2.6.0+cpu" and torch_x86.kind == "pinned"
    assert torch_x86.marker == 'platform_machine == "x86_64"'
    assert result.files == [str(tmp_path / "requirements.txt"), str(tmp_path / "common.txt")]


def test_vllm_xpu_indexes_with_equals(tmp_path):
    write(tmp_path, "common.txt", "")
    result = parse(tmp_path, VLLM_XPU)
    assert [(i.url, i.line, i.option) for i in result.indexes] == [
        ("https://wheels.vllm.ai/xpu/", 3, "--extra-index-url"),
        ("https://download.pytorch.org/whl/xpu", 5, "--extra-index-url"),
    ]
    assert [torch_variant(i.url) for i in result.indexes] == [None, "xpu"]
    assert result.requirements[0].specifier == "==3.8.0+xpu"


# --- comments, continuations, variables ----------------------------------------------------------


def test_comments_need_whitespace_before_hash(tmp_path):
    result = parse(
        tmp_path,
        "# a comment line\n"
        "   # indented comment\n"
        "torch==2.1.0  # trailing comment\n"
        "trl @ git+https://github.com/huggingface/trl.git@v0.9.6#egg=trl\n"
        "pkg @ https://example.com/pkg-1.0.tar.gz#sha256=abc\n",
    )
    torch, trl, pkg = result.requirements
    assert torch.raw == "torch==2.1.0" and torch.line == 3
    assert trl.url == "git+https://github.com/huggingface/trl.git@v0.9.6#egg=trl"
    assert pkg.url == "https://example.com/pkg-1.0.tar.gz#sha256=abc"


def test_continuation_lines_join_and_keep_first_line_number(tmp_path):
    # the layout pip-compile --generate-hashes writes
    result = parse(
        tmp_path,
        "numpy==1.26.4 \\\n"
        "    --hash=sha256:03a8c78d01d9781b28a6989f6fa1bb2c4f2d51201cf99d3dd875df6fbd96b23b \\\n"
        "    --hash=sha256:08beddf13648eb95f8d867350f6a018a4be2e5ad54c8d8caed89ebca558b2dc9\n"
        "    # via torch\n"
        "transformers\\\n"
        "[torch]==4.44.2\n",
    )
    numpy, transformers = result.requirements
    assert (numpy.name, numpy.line, numpy.specifier) == ("numpy", 1, "==1.26.4")
    assert numpy.raw.startswith("numpy==1.26.4     --hash=sha256:03a8")
    assert (transformers.line, transformers.extras, transformers.specifier) == (
        5,
        ("torch",),
        "==4.44.2",
    )
    assert not result.skipped  # hashes belong to the requirement


def test_backslash_after_a_comment_swallows_the_next_line_like_pip(tmp_path):
    # pip joins before it strips comments: the next requirement becomes part of the comment
    result = parse(tmp_path, "torch==2.1 # pinned \\\nnumpy\n# comment line \\\nscipy\n")
    assert [r.name for r in result.requirements] == ["torch", "scipy"]


def test_backslash_on_the_last_line(tmp_path):
    assert one(tmp_path, "torch==2.1 \\").specifier == "==2.1"


def test_environment_variables(tmp_path):
    env = {"TORCH_VERSION": "2.4.1", "CUDA_TAG": "cu124", "EMPTY": ""}
    result = parse(
        tmp_path,
        "torch==${TORCH_VERSION}+${CUDA_TAG}\n"
        "--extra-index-url https://download.pytorch.org/whl/${CUDA_TAG}\n"
        "pkg @ https://example.com/${UNSET_VAR}/pkg-1.0.tar.gz\n"
        "other @ https://example.com/${EMPTY}/o.tar.gz\n"
        "x @ https://example.com/${lower}/$CUDA_TAG/x.tar.gz\n",
        environ=env,
    )
    torch, pkg, other, x = result.requirements
    assert torch.specifier == "==2.4.1+cu124"
    assert torch.raw == "torch==${TORCH_VERSION}+${CUDA_TAG}"  # raw is as written
    assert torch_variant(result.indexes[0].url) == "cu124"
    assert pkg.url == "https://example.com/${UNSET_VAR}/pkg-1.0.tar.gz"  # unset: left as is (pip)
    assert other.url == "https://example.com/${EMPTY}/o.tar.gz"  # empty: left as is (pip)
    assert x.url == "https://example.com/${lower}/$CUDA_TAG/x.tar.gz"  # only ${UPPER_CASE}


def test_environment_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLIGHT_TEST_PIN", "1.2.3")
    path = write(tmp_path, "r.txt", "pkg==${PREFLIGHT_TEST_PIN}\n")
    assert parse_requirements(path).requirements[0].specifier == "==1.2.3"


def test_unset_variable_in_a_version_is_an_error(tmp_path):
    message = error(tmp_path, "\ntorch==${TORCH_VERSION}\n")
    assert message.startswith(f"{tmp_path / 'requirements.txt'}:2: invalid requirement")


# --- requirement forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "specifier", "extras", "kind"),
    [
        ("Flash_Attn==2.5.8", "flash-attn", "==2.5.8", (), "pinned"),
        ("transformers[torch]==4.44.2", "transformers", "==4.44.2", ("torch",), "pinned"),
        ("torch==2.1.0+cu121", "torch", "==2.1.0+cu121", (), "pinned"),
        ("flash-attn===2.5.8", "flash-attn", "===2.5.8", (), "pinned"),
        ("vllm-flash-attn == 2.5.9", "vllm-flash-attn", "==2.5.9", (), "pinned"),
        ("torch==2.1.*", "torch", "==2.1.*", (), "ranged"),
        ("mteb[bm25s]>=2, <3", "mteb", "<3,>=2", ("bm25s",), "ranged"),
        ("deepspeed~=0.14.0", "deepspeed", "~=0.14.0", (), "ranged"),
        ("ray[cgraph,default]>=2.48.0", "ray", ">=2.48.0", ("cgraph", "default"), "ranged"),
        ("peft!=0.13.0", "peft", "!=0.13.0", (), "ranged"),
        ("accelerate", "accelerate", "", (), "unpinned"),
        (
            "runai-model-streamer[s3,gcs,azure]",
            "runai-model-streamer",
            "",
            ("azure", "gcs", "s3"),
            "unpinned",
        ),
    ],
)
def test_named_requirements(tmp_path, line, name, specifier, extras, kind):
    req = one(tmp_path, line)
    assert (req.name, req.specifier, req.extras, req.kind) == (name, specifier, extras, kind)
    assert req.url is None and req.marker is None and req.constraint is False and req.group is None


def test_markers_are_kept_as_written(tmp_path):
    # vllm-project/vllm requirements/test.in
    req = one(tmp_path, "gpt-oss >= 0.0.7; python_version > '3.11'")
    assert req.marker == "python_version > '3.11'"
    req = one(
        tmp_path,
        'transformers[torch]>=4.41.2,<=4.46.1 ; python_version >= "3.9" and sys_platform == "linux"',
    )
    assert req.marker == 'python_version >= "3.9" and sys_platform == "linux"'
    assert one(tmp_path, "torch;").marker is None


def test_invalid_marker_names_file_and_line(tmp_path):
    message = error(tmp_path, "torch\nnumpy; python_versio < '3.11'\n")
    assert message.startswith(f"{tmp_path / 'requirements.txt'}:2: invalid environment marker")


@pytest.mark.parametrize(
    ("line", "name", "specifier", "kind", "url"),
    [
        # elon-trump/dfgasddg README.md: vLLM's CUDA 11.8 wheel from a GitHub release
        (
            "https://github.com/vllm-project/vllm/releases/download/v0.4.0/vllm-0.4.0+cu118-cp310-cp310-manylinux1_x86_64.whl",
            "vllm",
            "==0.4.0+cu118",
            "url",
            "https://github.com/vllm-project/vllm/releases/download/v0.4.0/vllm-0.4.0+cu118-cp310-cp310-manylinux1_x86_64.whl",
        ),
        (
            "torch @ https://download.pytorch.org/whl/cu121/torch-2.1.0%2Bcu121-cp310-cp310-linux_x86_64.whl",
            "torch",
            "==2.1.0+cu121",
            "url",
            "https://download.pytorch.org/whl/cu121/torch-2.1.0%2Bcu121-cp310-cp310-linux_x86_64.whl",
        ),
        # the LLaMA-Factory line found in a downstream requirements.txt
        (
            "llama-factory @ git+https://github.com/hiyouga/LLaMA-Factory.git",
            "llama-factory",
            "",
            "vcs",
            "git+https://github.com/hiyouga/LLaMA-Factory.git",
        ),
        (
            "git+https://github.com/huggingface/transformers.git@v4.44.2#egg=transformers",
            "transformers",
            "",
            "vcs",
            "git+https://github.com/huggingface/transformers.git@v4.44.2#egg=transformers",
        ),
        # lingjoor-research/finetuning-model-qlora run.sh: unnamed VCS requirement
        (
            "git+https://github.com/HazyResearch/flash-attention.git#subdirectory=csrc/rotary",
            "",
            "",
            "vcs",
            "git+https://github.com/HazyResearch/flash-attention.git#subdirectory=csrc/rotary",
        ),
        (
            "git+ssh://git@github.com/org/private.git@main#egg=private",
            "private",
            "",
            "vcs",
            "git+ssh://git@github.com/org/private.git@main#egg=private",
        ),
        (
            "https://example.com/archive/main.zip",
            "",
            "",
            "url",
            "https://example.com/archive/main.zip",
        ),
        (
            "mypkg @ file:///opt/wheels/mypkg-1.0.tar.gz",
            "mypkg",
            "",
            "local-path",
            "file:///opt/wheels/mypkg-1.0.tar.gz",
        ),
        ("./packages/mypkg", "", "", "local-path", "./packages/mypkg"),
        ("../sibling", "", "", "local-path", "../sibling"),
        (".", "", "", "local-path", "."),
        (
            "/abs/torch-2.1.0+cu121-cp310-cp310-linux_x86_64.whl",
            "torch",
            "==2.1.0+cu121",
            "local-path",
            "/abs/torch-2.1.0+cu121-cp310-cp310-linux_x86_64.whl",
        ),
        # a wheel file name alone on a line: a path relative to where pip runs
        (
            "flash_attn-2.5.8+cu122torch2.3cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
            "flash-attn",
            "==2.5.8+cu122torch2.3cxx11abifalse",
            "local-path",
            "flash_attn-2.5.8+cu122torch2.3cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
        ),
        ("mypkg-1.0.tar.gz", "", "", "local-path", "mypkg-1.0.tar.gz"),
    ],
)
def test_urls_vcs_and_paths(tmp_path, line, name, specifier, kind, url):
    req = one(tmp_path, line)
    assert (req.name, req.specifier, req.kind, req.url) == (name, specifier, kind, url)


def test_url_marker_needs_a_space_after_the_semicolon(tmp_path):
    req = one(tmp_path, 'https://example.com/x-1.0-py3-none-any.whl; python_version < "3.11"')
    assert (
        req.marker == 'python_version < "3.11"'
        and req.url == "https://example.com/x-1.0-py3-none-any.whl"
    )
    req = one(tmp_path, 'pkg @ https://example.com/pkg.zip ; sys_platform == "linux"')
    assert req.marker == 'sys_platform == "linux"' and req.url == "https://example.com/pkg.zip"


def test_local_path_with_extras(tmp_path):
    req = one(tmp_path, "./vendor/axolotl[deepspeed,flash-attn]")
    assert (req.url, req.extras, req.kind) == (
        "./vendor/axolotl",
        ("deepspeed", "flash-attn"),
        "local-path",
    )


def test_egg_fragment_with_extras(tmp_path):
    req = one(
        tmp_path, "git+https://github.com/org/repo.git#egg=Repo_Pkg[extra]&subdirectory=python"
    )
    assert (req.name, req.extras) == ("repo-pkg", ("extra",))


def test_invalid_egg_and_wheel_names_are_errors(tmp_path):
    assert "invalid #egg=" in error(tmp_path, "git+https://github.com/o/r.git#egg=not a name!\n")
    assert "invalid wheel file name" in error(tmp_path, "/wheels/not-a-wheel.whl\n")


def test_credentials_are_redacted_from_urls(tmp_path):
    result = parse(
        tmp_path,
        "private @ git+https://${GITHUB_TOKEN}@github.com/org/private.git\n"
        "--extra-index-url https://user:${PYPI_PASSWORD}@pypi.example.com/simple\n",
        environ={"GITHUB_TOKEN": "ghp_secret", "PYPI_PASSWORD": "hunter2"},
    )
    assert result.requirements[0].url == "git+https://****@github.com/org/private.git"
    assert result.indexes[0].url == "https://user:****@pypi.example.com/simple"
    assert "secret" not in repr(result) and "hunter2" not in repr(result)
    assert redact_url("git+ssh://git@github.com/o/r.git") == "git+ssh://git@github.com/o/r.git"
    assert redact_url("https://github.com/o/r@v1") == "https://github.com/o/r@v1"


# --- editables -----------------------------------------------------------------------------------


def test_editables(tmp_path):
    result = parse(
        tmp_path,
        # hiyouga/LLaMA-Factory README: pip install -e ".[torch,metrics]"
        '-e ".[torch,metrics]"\n'
        "-e git+https://github.com/huggingface/peft.git@main#egg=peft\n"
        "--editable=./packages/local_lib\n"
        "-e.\n",
    )
    dot, peft, local, bare = result.requirements
    assert (dot.kind, dot.url, dot.extras, dot.name) == ("editable", ".", ("metrics", "torch"), "")
    assert (peft.kind, peft.name, peft.url) == (
        "editable",
        "peft",
        "git+https://github.com/huggingface/peft.git@main#egg=peft",
    )
    assert (local.url, local.line) == ("./packages/local_lib", 3)
    assert bare.url == "."


def test_editable_plain_url_and_pep508_are_errors(tmp_path):
    assert "needs a local directory or a VCS URL" in error(
        tmp_path, "-e https://example.com/pkg.zip\n"
    )
    assert "does not accept 'name @ url'" in error(
        tmp_path, "-e peft @ git+https://github.com/huggingface/peft\n"
    )


# --- options -------------------------------------------------------------------------------------


def test_index_options(tmp_path):
    result = parse(
        tmp_path,
        "-i https://pypi.org/simple\n"
        "--index-url=https://mirrors.aliyun.com/pypi/simple/\n"
        "--extra-index-url https://download.pytorch.org/whl/cu121\n"
        "--extra-index https://download.pytorch.org/whl/nightly/cu124\n"  # optparse abbreviation
        "-f https://data.pyg.org/whl/torch-2.1.0+cu121.html\n"
        "--find-links ./wheels --find-links ./more\n"
        "-ihttps://attached.example/simple\n",
    )
    assert [(i.option, i.url, i.line) for i in result.indexes] == [
        ("--index-url", "https://pypi.org/simple", 1),
        ("--index-url", "https://mirrors.aliyun.com/pypi/simple/", 2),
        ("--extra-index-url", "https://download.pytorch.org/whl/cu121", 3),
        ("--extra-index-url", "https://download.pytorch.org/whl/nightly/cu124", 4),
        ("--find-links", "https://data.pyg.org/whl/torch-2.1.0+cu121.html", 5),
        ("--find-links", "./wheels", 6),
        ("--index-url", "https://attached.example/simple", 7),
    ]
    assert [s.reason for s in result.skipped] == [
        "--find-links ./more: pip uses only the first on a line"
    ]


def test_global_options_are_skipped_with_a_reason(tmp_path):
    result = parse(
        tmp_path,
        "--prefer-binary\n--pre\n--no-binary :all:\n--only-binary=flash-attn\n--no-index\n"
        "--require-hashes\n--trusted-host download.pytorch.org\n--use-feature=truststore\n"
        "--hash=sha256:abc\n",
    )
    assert [(s.line, s.reason.split(":")[0]) for s in result.skipped] == [
        (1, "--prefer-binary"),
        (2, "--pre"),
        (3, "--no-binary "),
        (4, "--only-binary flash-attn"),
        (5, "--no-index"),
        (6, "--require-hashes"),
        (7, "--trusted-host download.pytorch.org"),
        (8, "--use-feature truststore"),
        (9, "--hash"),
    ]
    assert "no requirement on this line" in result.skipped[-1].reason
    assert not result.requirements and not result.indexes


def test_options_after_a_requirement(tmp_path):
    result = parse(
        tmp_path,
        "torch==2.1.0+cu121 --index-url https://download.pytorch.org/whl/cu121\n"
        'flash-attn==2.5.8 --config-settings="--build-option=--no-isolation" --global-option=build_ext\n'
        "numpy==1.26.4 --hash=sha256:abc --hash sha256:def\n",
    )
    assert [r.name for r in result.requirements] == ["torch", "flash-attn", "numpy"]
    assert not result.indexes  # pip ignores --index-url written after a requirement
    assert [(s.line, s.reason) for s in result.skipped] == [
        (
            1,
            "--index-url https://download.pytorch.org/whl/cu121: pip ignores it after a requirement",
        )
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--install-option=--prefix=/x\n", "no such option: --install-option"),
        ("--no something\n", "ambiguous option --no"),
        ("-x foo\n", "no such option: -x"),
        ("--pre=yes\n", "--pre takes no value"),
        ("--index-url\n", "--index-url needs a value"),
        ('torch --hash="sha256:abc\n', "cannot split the options"),
        ("torch==2.1 extra words\n", "invalid requirement"),
        ("; python_version < '3.11'\n", "an environment marker without a requirement"),
    ],
)
def test_bad_lines_are_input_errors_with_file_and_line(tmp_path, text, expected):
    message = error(tmp_path, "# header\n" + text)
    assert message.startswith(f"{tmp_path / 'requirements.txt'}:2: ")
    assert expected in message and "\n" not in message


def test_lenient_mode_records_bad_lines_as_skipped(tmp_path):
    result = parse(
        tmp_path, "torch==2.1\nthis is not a requirement\n-r missing.txt\nnumpy\n", strict=False
    )
    assert [r.name for r in result.requirements] == ["torch", "numpy"]
    assert [(s.line, s.reason.split(":")[0]) for s in result.skipped] == [
        (2, "not understood"),
        (3, "not understood"),
    ]


def test_stray_words_after_options_are_reported(tmp_path):
    result = parse(tmp_path, "--extra-index-url https://x.example/simple oops\n")
    assert result.indexes[0].url == "https://x.example/simple"
    assert "stray word" in result.skipped[0].reason


# --- includes ------------------------------------------------------------------------------------


def test_includes_relative_to_the_including_file(tmp_path):
    write(
        tmp_path, "requirements/common.txt", "transformers==4.44.2\n-c ../constraints/torch.txt\n"
    )
    write(
        tmp_path,
        "constraints/torch.txt",
        "torch==2.4.1+cu124\n--extra-index-url https://download.pytorch.org/whl/cu124\n",
    )
    write(tmp_path, "requirements/extra/deep.txt", "deepspeed==0.15.1\n")
    top = write(
        tmp_path,
        "requirements/cuda.txt",
        "-r common.txt\n--requirement extra/deep.txt\n--requirement=common.txt\n-rcommon.txt\nvllm\n",
    )
    result = parse_requirements(top, environ=NO_ENV)
    names = [(r.name, Path(r.source).name, r.line) for r in result.requirements]
    assert names == [
        ("transformers", "common.txt", 1),
        ("deepspeed", "deep.txt", 1),
        ("transformers", "common.txt", 1),  # included twice: read twice, as pip does
        ("transformers", "common.txt", 1),
        ("vllm", "cuda.txt", 5),
    ]
    (torch,) = {(c.name, c.specifier, c.constraint) for c in result.constraints}
    assert torch == ("torch", "==2.4.1+cu124", True)
    assert result.indexes[0].source.endswith(os.path.join("constraints", "torch.txt"))
    assert [Path(f).name for f in result.files] == [
        "cuda.txt",
        "common.txt",
        "torch.txt",
        "deep.txt",
    ]


def test_requirement_include_inside_a_constraints_file_reads_requirements(tmp_path):
    write(tmp_path, "c.txt", "numpy<2\n-r more.txt\n")
    write(tmp_path, "more.txt", "scipy\n")
    result = parse(tmp_path, "-c c.txt\n")
    assert [(c.name, c.constraint) for c in result.constraints] == [("numpy", True)]
    assert [(r.name, r.constraint) for r in result.requirements] == [("scipy", False)]


def test_constraints_must_be_named_and_not_editable(tmp_path):
    write(tmp_path, "c.txt", "-e .\n")
    assert "editable requirements are not allowed as constraints" in error(tmp_path, "-c c.txt\n")
    write(tmp_path, "c.txt", "\n./local\n")
    assert error(tmp_path, "-c c.txt\n").startswith(f"{tmp_path / 'c.txt'}:2: unnamed requirements")


def test_include_loop_names_file_and_line(tmp_path):
    write(tmp_path, "a.txt", "torch\n-r b.txt\n")
    write(tmp_path, "b.txt", "\n\n-r a.txt\n")
    message = error(tmp_path, "-r a.txt\n", name="top.txt")
    assert message.startswith(f"{tmp_path / 'b.txt'}:3: -r a.txt: include loop (")
    assert "a.txt -> " in message and message.endswith("a.txt)")


def test_self_include_through_constraint(tmp_path):
    message = error(tmp_path, "torch\n-c requirements.txt\n")
    assert message.startswith(
        f"{tmp_path / 'requirements.txt'}:2: -c requirements.txt: include loop"
    )


def test_missing_include_names_the_including_line(tmp_path):
    message = error(tmp_path, "torch\n\n-r requirements-dev.txt\n")
    assert message.startswith(
        f"{tmp_path / 'requirements.txt'}:3: -r requirements-dev.txt: no such file"
    )


def test_include_equals_short_option_is_explained(tmp_path):
    # pip (optparse) reads "-r=common.txt" as the file "=common.txt"
    write(tmp_path, "common.txt", "torch\n")
    message = error(tmp_path, "-r=common.txt\n")
    assert "no such file" in message and "write '-r common.txt'" in message
    write(tmp_path, "=common.txt", "numpy\n")
    assert parse(tmp_path, "-r=common.txt\n").requirements[0].name == "numpy"


def test_include_of_a_directory_or_bad_file(tmp_path):
    (tmp_path / "reqs").mkdir()
    assert "is a directory" in error(tmp_path, "-r reqs\n")
    write(tmp_path, "latin1.txt", b"caf\xe9\n")
    message = error(tmp_path, "-c latin1.txt\n")
    assert (
        message.startswith(f"{tmp_path / 'requirements.txt'}:1: -c latin1.txt: ")
        and "not valid UTF-8" in message
    )


def test_remote_include_is_skipped_offline(tmp_path):
    result = parse(
        tmp_path, "-r https://raw.githubusercontent.com/org/repo/main/requirements.txt\n"
    )
    assert "remote file not read" in result.skipped[0].reason


def test_other_options_on_an_include_line_are_ignored(tmp_path):
    write(tmp_path, "b.txt", "torch\n")
    result = parse(tmp_path, "-r b.txt -i https://ignored.example/simple\n")
    assert (
        not result.indexes and "pip ignores it on a --requirement line" in result.skipped[0].reason
    )


# --- files ---------------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        parse_requirements(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a directory"):
        parse_requirements(tmp_path)


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "r.txt", b"torch\nnumpy\n# caf\xe9\n")
    with pytest.raises(InputError) as info:
        parse_requirements(path)
    assert str(info.value).startswith(f"{path}:3: not valid UTF-8 (byte 0xe9)")


def test_byte_order_marks(tmp_path):
    path = write(tmp_path, "bom8.txt", b"\xef\xbb\xbftorch==2.1\n")
    assert parse_requirements(path).requirements[0].name == "torch"
    # Windows PowerShell 5: pip freeze > requirements.txt writes UTF-16 LE with a BOM
    path = write(tmp_path, "bom16.txt", "torch==2.1\r\nnumpy==1.26.4\r\n".encode("utf-16"))
    assert [r.line for r in parse_requirements(path).requirements] == [1, 2]


def test_coding_declaration_is_honoured_like_pip(tmp_path):
    path = write(tmp_path, "r.txt", b"# -*- coding: latin-1 -*-\n# caf\xe9\ntorch\n")
    assert parse_requirements(path).requirements[0].line == 3


def test_empty_and_comment_only_files(tmp_path):
    assert parse(tmp_path, "").requirements == []
    assert parse(tmp_path, "# nothing\n\n   \n").requirements == []


def test_parsing_costs_little_more_than_packaging_itself(tmp_path):
    """A pre-commit hook: the line handling around packaging's grammar must stay cheap. Compared
    with packaging on the same lines, not with a wall-clock bound, so a loaded machine passes."""
    from packaging.requirements import Requirement as PackagingRequirement

    reqs = [f"package-{i}[extra]>={i}.0,<{i + 1}.0 ; python_version >= '3.9'" for i in range(35)]
    lines = [f"{r}  # comment" for r in reqs] + [
        "--extra-index-url https://download.pytorch.org/whl/cu121"
    ] * 5
    path = write(tmp_path, "r.txt", "\n".join(lines) + "\n")
    ours = theirs = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        parse_requirements(path)
        ours = min(ours, time.perf_counter() - start)
        start = time.perf_counter()
        for r in reqs:
            str(PackagingRequirement(r).specifier)
        theirs = min(theirs, time.perf_counter() - start)
    assert ours < 4 * theirs + 0.002


def test_no_heavy_imports():
    code = (
        "import sys, preflight.requirements.parse, preflight.requirements.pyproject; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pip', 'pip_api', 'rich', 'paramiko', 'torch')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --- pyproject.toml ------------------------------------------------------------------------------

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61.0"]

[project]
name = "llamafactory"
dynamic = ["version"]
requires-python = ">=3.9.0"
dependencies = [
    "transformers>=4.41.2,<=4.46.1",
    "Flash_Attn==2.6.3; sys_platform == 'linux'",
    'torch @ https://download.pytorch.org/whl/cu121/torch-2.4.1%2Bcu121-cp311-cp311-linux_x86_64.whl',
]

[project.optional-dependencies]
torch = ["torch>=1.13.1"]
deepspeed = [
    "deepspeed>=0.10.0,<=0.14.4",
]
metrics = ["nltk", "jieba", "rouge-chinese"]
"""


def test_pyproject_dependencies_and_extras(tmp_path):
    path = write(tmp_path, "pyproject.toml", PYPROJECT)
    result = parse_pyproject(path)
    got = [(r.name, r.specifier, r.marker, r.group, r.line, r.kind) for r in result.requirements]
    assert got == [
        ("transformers", "<=4.46.1,>=4.41.2", None, None, 9, "ranged"),
        ("flash-attn", "==2.6.3", "sys_platform == 'linux'", None, 10, "pinned"),
        ("torch", "==2.4.1+cu121", None, None, 11, "url"),
        ("torch", ">=1.13.1", None, "torch", 15, "ranged"),
        ("deepspeed", "<=0.14.4,>=0.10.0", None, "deepspeed", 17, "ranged"),
        ("nltk", "", None, "metrics", 19, "unpinned"),
        ("jieba", "", None, "metrics", 19, "unpinned"),
        ("rouge-chinese", "", None, "metrics", 19, "unpinned"),
    ]
    assert result.files == [str(path)] and not result.skipped
    assert result.requirements[1].raw == "Flash_Attn==2.6.3; sys_platform == 'linux'"
    assert all(r.source == str(path) and not r.constraint for r in result.requirements)


def test_pyproject_without_project_table_or_with_dynamic_dependencies(tmp_path):
    path = write(tmp_path, "pyproject.toml", '[tool.poetry.dependencies]\ntorch = "^2.1"\n')
    result = parse_pyproject(path)
    assert not result.requirements and "no [project] table" in result.skipped[0].reason
    path = write(
        tmp_path, "pyproject.toml", '[project]\nname = "x"\ndynamic = ["dependencies", "version"]\n'
    )
    result = parse_pyproject(path)
    assert [(s.line, s.reason) for s in result.skipped] == [
        (3, "project.dependencies is dynamic; not checked")
    ]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (
            '[project]\nname = "x"\ndependencies = [\n  "torch",\n  "not valid!!",\n]\n',
            5,
            "invalid requirement",
        ),
        (
            '[project]\ndependencies = "torch"\n',
            2,
            "project.dependencies must be a list of strings",
        ),
        (
            "[project]\n[project.optional-dependencies]\ngpu = [1]\n",
            3,
            "optional-dependencies.gpu must be a list",
        ),
        ('[project]\noptional-dependencies = ["x"]\n', 2, "must be a table of lists"),
        ('[project\nname = "x"\n', 1, "invalid TOML"),
        ("project = 3\n", 1, "[project] must be a table"),
    ],
)
def test_pyproject_errors_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, "pyproject.toml", text)
    with pytest.raises(InputError) as info:
        parse_pyproject(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert expected in str(info.value)


def test_pyproject_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        parse_pyproject(tmp_path / "pyproject.toml")


# --- torch_variant -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "variant"),
    [
        ("https://download.pytorch.org/whl/cu121", "cu121"),
        ("https://download.pytorch.org/whl/cu118/", "cu118"),
        ("https://download.pytorch.org/whl/nightly/cu124", "cu124"),
        ("https://download.pytorch.org/whl/test/cu126", "cu126"),
        ("https://download.pytorch.org/whl/cpu", "cpu"),
        ("https://download.pytorch.org/whl/cpu-cxx11-abi", "cpu-cxx11-abi"),
        ("https://download.pytorch.org/whl/rocm6.2", "rocm6.2"),
        ("https://download.pytorch.org/whl/rocm5.4.2/", "rocm5.4.2"),
        ("https://download.pytorch.org/whl/xpu", "xpu"),
        ("https://download.pytorch.org/whl/cu113/torch_stable.html", "cu113"),
        ("https://download.pytorch.org/whl/cu121/torch/", "cu121"),
        ("HTTPS://Download.PyTorch.org/whl/CU121", "cu121"),
        ("https://mirrors.aliyun.com/pytorch-wheels/cu121/", "cu121"),
        ("https://mirrors.nju.edu.cn/pytorch/whl/cu121", "cu121"),
        ("https://download.pytorch.org/whl/torch_stable.html", None),
        ("https://download.pytorch.org/whl/", None),
        ("https://pypi.org/simple", None),
        ("https://flashinfer.ai/whl/cu121/torch2.4/", None),
        ("https://huggingface.github.io/autogptq-index/whl/cu118/", None),
        ("./wheels", None),
        ("https://[broken/whl/cu121", None),
        ("", None),
    ],
)
def test_torch_variant(url, variant):
    assert torch_variant(url) == variant


# --- pip as the reference ------------------------------------------------------------------------

PIP_CASES = """\
# header
torch==2.1.0+cu121 --hash=sha256:abc
transformers[torch]>=4.41 ; python_version >= "3.9"
numpy==1.26.4 \\
    --hash=sha256:03a8c78d01d9781b28a6989f6fa1bb2c4f2d51201cf99d3dd875df6fbd96b23b
trl @ git+https://github.com/huggingface/trl.git@v0.9.6
git+https://github.com/huggingface/peft.git#egg=peft
-e .[torch,metrics]
--extra-index-url https://download.pytorch.org/whl/cu121
torch==2.1 # pinned \\
swallowed
-c constraints.txt
-r more/extra.txt
https://example.com/x-1.0-py3-none-any.whl; python_version < "3.11"
flash-attn===2.5.8
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_agrees_with_pips_own_parser(tmp_path):
    """Lines, editables and constraint flags as pip's req_file yields them (pip is only a test
    oracle here; the parser never imports it)."""
    req_file = pytest.importorskip("pip._internal.req.req_file")
    session_mod = pytest.importorskip("pip._internal.network.session")
    write(tmp_path, "constraints.txt", "numpy<2\n")
    write(tmp_path, "more/extra.txt", "-r ../constraints.txt\n")
    path = write(tmp_path, "requirements.txt", PIP_CASES)
    theirs = [
        (
            re.search(r"\(line (\d+)\)", r.comes_from).group(1),
            r.comes_from.split(" ")[1],
            r.is_editable,
            r.constraint,
        )
        for r in req_file.parse_requirements(str(path), session_mod.PipSession())
    ]
    ours = parse_requirements(path, environ=NO_ENV)
    mine = [
        (str(r.line), r.source, r.kind == "editable", r.constraint)
        for r in ours.requirements + ours.constraints
    ]
    assert sorted(mine) == sorted(theirs)


# --- fuzzing -------------------------------------------------------------------------------------

FRAGMENTS = [
    "torch", "Flash_Attn", "transformers[torch]", "==2.1.0+cu121", ">=4.41.2,<=4.46.1", "===2.5.8",
    "; python_version < '3.11'", ';sys_platform == "linux"', " @ ", "git+https://github.com/o/r.git",
    "#egg=r", "https://download.pytorch.org/whl/cu121", "./pkg", "/abs/x-1.0-py3-none-any.whl",
    "-e", "-r", "-c", "-i", "-f", "--hash=sha256:abc", "--pre", "--prefer-binary", "--no-binary :all:",
    "--extra-index-url", "--index-url=", "${TORCH_VERSION}", "${", "}", "\\", "\\\n", "#", " # c",
    "\n", " ", "\t", '"', "'", "[", "]", "(", ")", ",", "@", "=", "-", "--", "*", ".whl", ".tar.gz",
    "requirements.txt", "r.txt", "../r.txt", "sub/r.txt", "nul\x00", "\u00e9", "\ufeff", "\r",
]  # fmt: skip


def _assert_only_input_error(path: Path) -> None:
    try:
        result = parse_requirements(path, environ={"TORCH_VERSION": "2.1.0"})
    except InputError as exc:
        assert "\n" not in str(exc)  # the CLI prints it as one line
        return
    for req in result.requirements + result.constraints:
        assert req.kind in {"pinned", "ranged", "unpinned", "url", "vcs", "editable", "local-path"}
        assert req.line >= 1 and isinstance(req.name, str)
    lenient = parse_requirements(path, environ={}, strict=False)
    assert isinstance(lenient, ParsedRequirements)


def _write_tree(tmp_path: Path, text: str) -> Path:
    # the fuzzed file may include r.txt or sub/r.txt, which exist and include it back
    write(tmp_path, "r.txt", "-r requirements.txt\ntorch\n")
    write(tmp_path, "sub/r.txt", "-c ../r.txt\n")
    path = tmp_path / "requirements.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def test_fuzz_grammar_fragments_without_hypothesis(tmp_path):
    """Always runs: seeded random lines from realistic fragments."""
    rng = random.Random(20240601)
    for _ in range(300):
        lines = [
            "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(1, 5))
        ]
        _assert_only_input_error(_write_tree(tmp_path, "\n".join(lines)))


def test_fuzz_arbitrary_bytes_without_hypothesis(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "requirements.txt"
    for _ in range(200):
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))))
        try:
            parse_requirements(path, environ={})
        except InputError:
            pass


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the project's test extra brings it; these tests are skipped without it
    given = None

if given is not None:
    _fuzz_settings = settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )

    @_fuzz_settings
    @given(text=st.text())
    def test_fuzz_arbitrary_text(tmp_path, text):
        _assert_only_input_error(_write_tree(tmp_path, text))

    @_fuzz_settings
    @given(data=st.binary(max_size=200))
    def test_fuzz_arbitrary_bytes(tmp_path, data):
        path = tmp_path / "requirements.txt"
        path.write_bytes(data)
        try:
            parse_requirements(path, environ={})
        except InputError:
            pass

    @_fuzz_settings
    @given(
        lines=st.lists(
            st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8).map("".join), max_size=8
        )
    )
    def test_fuzz_realistic_fragments(tmp_path, lines):
        _assert_only_input_error(_write_tree(tmp_path, "\n".join(lines)))

    @_fuzz_settings
    @given(text=st.text())
    def test_fuzz_pyproject(tmp_path, text):
        path = tmp_path / "pyproject.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            parse_pyproject(path)
        except InputError:
            pass

else:

    def test_fuzz_with_hypothesis():
        pytest.skip("hypothesis is not installed")


# --- fast paths: the same answers as packaging, without importing it ----------------------------

_MARKER_PARTS = [
    "python_version", "python_full_version", "os_name", "sys_platform", "platform_system",
    "platform_machine", "implementation_name", "platform_python_implementation", "extra",
    "os.name", "python_implementation", "==", "!=", ">=", "<=", "<", ">", "~=", "===", " in ",
    " not in ", "not", '"3.10"', "'Linux'", '"x86_64"', '""', " and ", " or ", "(", ")", " ",
    "\t", "\n", "\u00a0", '"', "'", "and", "in", ";", "3.8",
]  # fmt: skip


def _packaging_marker_verdict(marker: str) -> str | None:
    """What the parser answered before the fast path: packaging's validation of the marker."""
    from packaging.markers import InvalidMarker, Marker

    marker = marker.strip()
    if not marker:
        return None
    try:
        Marker(marker)
    except InvalidMarker:
        return "invalid"
    return marker


def _fast_marker_verdict(marker: str) -> str | None:
    from preflight.requirements.parse import _LineError, _validate_marker

    try:
        return _validate_marker(marker)
    except _LineError:
        return "invalid"


def test_marker_fast_path_agrees_with_packaging():
    rng = random.Random(508)
    samples = [
        'platform_system == "Linux"', "python_version >= '3.10'", 'sys_platform != "win32"',
        'python_version in "3.8 3.9"', 'os_name not in "nt"', 'platform_machine=="x86_64"',
        'python_version >= "3.9" and platform_system == "Linux" or os_name == "posix"',
        'python_version >= "3.9" and', '"3.9" <= python_version', "(python_version < '3')",
        'extra == "gpu"', 'python_version ≥ "3"', "python_version >= 3.8", 'os.name == "nt"',
        'python_version >= "3.9"\tand\tos_name == "posix"', 'python_version >= "3.9"\nand os_name == "x"',
        'platform_system == "Linux" andos_name == "x"', 'python_versions == "3"',
    ]  # fmt: skip
    for _ in range(3000):
        samples.append("".join(rng.choice(_MARKER_PARTS) for _ in range(rng.randint(1, 9))))
    for marker in samples:
        assert _fast_marker_verdict(marker) == _packaging_marker_verdict(marker), marker


def test_common_lines_do_not_import_packaging_markers_or_requirements(tmp_path):
    """A hook pays ~25 ms for packaging.markers and its tags/utils imports: the markers and
    ``#egg=`` names that real files carry are read without them."""
    path = write(
        tmp_path,
        "requirements.txt",
        'flash-attn==2.6.3; platform_system == "Linux"\n'
        'liger-kernel==0.2.1 ; python_version >= "3.10"\n'
        "git+https://github.com/huggingface/lm-evaluation-harness.git@v0.4.3#egg=lm_eval\n"
        "torch==2.3.1+cu121\n",
    )
    code = (
        "import sys; from pathlib import Path; from preflight.requirements.parse import parse_requirements;"
        f" r = parse_requirements(Path({str(path)!r}), environ={{}});"
        " print([q.name for q in r.requirements]);"
        " print(sorted(m for m in sys.modules if m.startswith('packaging.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names, modules = out.splitlines()
    assert names == "['flash-attn', 'liger-kernel', 'lm-eval', 'torch']"
    assert "packaging.markers" not in modules and "packaging.requirements" not in modules


if given is not None:

    @settings(max_examples=500, deadline=None)
    @given(marker=st.lists(st.sampled_from(_MARKER_PARTS), min_size=1, max_size=10).map("".join))
    def test_marker_fast_path_agrees_with_packaging_hypothesis(marker):
        assert _fast_marker_verdict(marker) == _packaging_marker_verdict(marker)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(egg=st.text(alphabet="abAB09._-[], =<>;@", max_size=12))
    def test_egg_fast_path_agrees_with_packaging(tmp_path, egg):
        from preflight.requirements import parse as parse_module

        url = f"git+https://example.com/r.git#egg={egg}"
        try:
            fast = parse_module._egg(url)
        except parse_module._LineError as exc:
            fast = ("error", str(exc))
        # the full parser's answer, as before the fast path
        name = parse_module._NAME
        try:
            parse_module._NAME = re.compile(r"(?!)")  # matches nothing: force the full parse
            try:
                slow = parse_module._egg(url)
            except parse_module._LineError as exc:
                slow = ("error", str(exc))
        finally:
            parse_module._NAME = name
        assert fast == slow
