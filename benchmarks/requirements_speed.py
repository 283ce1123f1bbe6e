"""How long `preflight requirements` takes on a realistic 40-line requirements file, next to
`python -c pass` (the floor of any Python hook) and `pip check`, measured in the same run.

Target (issue 3): at most 150 ms median here.

    python benchmarks/requirements_speed.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

# A fine-tuning stack as teams write it (shape taken from LLaMA-Factory / Axolotl requirements).
REQUIREMENTS = """\
# training stack, pinned for reproducibility
--extra-index-url https://download.pytorch.org/whl/cu121
torch==2.3.1+cu121
torchvision==0.18.1+cu121
transformers==4.44.2
accelerate==0.33.0
peft==0.12.0
trl==0.9.6
datasets==2.20.0
tokenizers==0.19.1
safetensors==0.4.4
deepspeed==0.14.4
bitsandbytes==0.43.3
flash-attn==2.6.3; platform_system == "Linux"
xformers==0.0.27
sentencepiece==0.2.0
protobuf==4.25.4
einops==0.8.0
numpy<2.0.0
scipy>=1.10
pandas>=2.0.3
pyarrow>=15.0.0
huggingface-hub>=0.24.0
evaluate==0.4.2
rouge-score==0.1.2
nltk>=3.8.1
jieba>=0.42.1
tiktoken>=0.7.0
wandb>=0.17.0
tensorboard>=2.16
fire>=0.6.0
pyyaml>=6.0
packaging>=23.2
tqdm>=4.66.4
rich>=13.7
uvicorn>=0.30.0
fastapi>=0.111.0
matplotlib>=3.7.0
liger-kernel==0.2.1 ; python_version >= "3.10"
git+https://github.com/huggingface/lm-evaluation-harness.git@v0.4.3#egg=lm_eval
"""

# a project's own pyproject.toml, without a [tool.preflight] table (shape of this repository's)
PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "finetune-job"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["torch==2.3.1", "transformers==4.44.2"]

[tool.ruff]
line-length = 120

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


from timing import load, wall, wall_interleaved  # noqa: E402 - benchmarks/timing.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    # what pre-commit runs: the console script pip wrote beside this Python (entry: preflight requirements)
    script = Path(py).with_name("preflight")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_text(REQUIREMENTS)
        assert len(REQUIREMENTS.splitlines()) == 40
        wall([py, "-m", "preflight", "requirements", str(path)], 2, tmp)  # warm caches
        cmds = {
            "python -c pass": [py, "-c", "pass"],
            "python -m preflight requirements": [py, "-m", "preflight", "requirements", str(path)],
        }
        if script.exists():
            cmds["preflight requirements (console script)"] = [str(script), "requirements", str(path)]
        # pre-commit runs hooks at the repository root, where a pyproject.toml usually lies: the
        # settings lookup reads it for [tool.preflight]
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "pyproject.toml").write_text(PYPROJECT)
        beside = "... run beside a pyproject.toml (a repo root)"
        cmds[beside] = cmds[next(reversed(cmds))]
        cmds["pip check"] = [py, "-m", "pip", "check"]
        before = load()
        runs = {name: max(3, args.runs // 3) if name == "pip check" else args.runs for name in cmds}
        rows = wall_interleaved(cmds, runs, tmp, cwds={beside: str(repo)})  # taking turns: same load
    print(f"40-line requirements file, {args.runs} fresh processes each, taking turns; {before} (before), {load()} (after)")
    print(f"{'what':47} {'median ms':>10} {'min ms':>8}")
    for name, times in rows.items():
        print(f"{name:47} {statistics.median(times) * 1000:10.1f} {min(times) * 1000:8.1f}")
    print()
    for name in rows:
        if "requirements" in name or name.startswith("..."):
            ours = statistics.median(rows[name]) * 1000
            print(f"{name}: median {ours:.1f} ms (target <= 150 ms): {'MET' if ours <= 150 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
