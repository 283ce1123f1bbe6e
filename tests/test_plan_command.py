"""preflight plan on the command line, cluster --plan on recorded machines, the search and the
emitted settings; bad input is one line and exit 2, never a traceback, and never a changed file."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.cli import main
from preflight.plan.memory import Layout, ModelMemory, Training
from preflight.plan.model import load_catalog, spec_from_config
from preflight.plan.params import tensor_groups
from preflight.plan.search import Cluster, Constraints, Planner, top_distinct
from preflight.plan.swept import cluster_from_facts, measured_bus_bandwidth
from preflight.plan.units import parse_bandwidth, parse_size
from tests.conftest import fixture_facts

KEYS = ("param_count", "trainable_params", "parameters", "gradients", "optimizer_states", "activations", "buffers",
        "overhead", "total", "recommendations")


def plan_json(run_cli, *args: str) -> tuple[int, dict]:  # noqa: ANN001
    code, out, err = run_cli("plan", *args, "--json")
    assert code in (0, 1), err
    return code, json.loads(out)


def test_issue_example_json_document(run_cli):
    code, doc = plan_json(run_cli, "--model", "llama-3.1-8b", "--method", "lora", "--seq-len", "4096",
                          "--micro-batch", "1", "--gpus-per-node", "8", "--gpu-mem", "80GiB", "--nodes", "2")
    assert code == 0 and doc["fits"]
    assert all(k in doc for k in KEYS)
    assert doc["param_count"] == 8_030_261_248 and doc["trainable_params"] == 20_971_520
    assert all(isinstance(doc[k], int) for k in KEYS[:-1])
    assert 1 <= len(doc["recommendations"]) <= 3
    for rec in doc["recommendations"]:
        assert rec["layout"]["micro_batch"] == 1  # fixed on the command line
        assert rec["memory"]["total"] + rec["headroom"] == 80 * 2**30
        assert rec["settings"]["training_arguments"]["per_device_train_batch_size"] == 1
        assert rec["settings"]["llamafactory"]["finetuning_type"] == "lora"
        assert "torchrun --nnodes 2 --nproc-per-node 8" in rec["settings"]["torchrun"]
        assert rec["why"]
    layouts = [(r["layout"]["sharding"], r["layout"]["tp"], r["layout"]["pp"], r["layout"]["offload"])
               for r in doc["recommendations"]]
    assert len(set(layouts)) == len(layouts)
    steps = [r["step_seconds"] for r in doc["recommendations"]]
    assert steps == sorted(steps)


def test_terminal_table_states_gib(run_cli):
    code, out, _ = run_cli("plan", "--model", "qwen2.5-7b", "--gpu", "H100 SXM5 80GB", "--nodes", "1")
    assert code == 0
    assert "GiB (2^30 bytes)" in out and "7,615,616,512" in out and "#1" in out


def test_fixed_axes_constrain_the_search(run_cli):
    _, doc = plan_json(run_cli, "--model", "llama-3.1-70b", "--gpu-mem", "80GiB", "--nodes", "4", "--zero", "3",
                       "--seq-len", "4096")
    assert doc["fits"]
    assert all(r["layout"]["sharding"] == "zero3" for r in doc["recommendations"])
    ds = doc["recommendations"][0]["settings"]["deepspeed"]
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["train_batch_size"] == doc["global_batch"]
    assert ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * doc["layout"]["dp"] == \
        doc["global_batch"]


def test_70b_full_fine_tuning_does_not_fit_one_node_without_sharding(run_cli):
    code, doc = plan_json(run_cli, "--model", "llama-3.1-70b", "--gpu-mem", "80GiB", "--zero", "0", "--tp", "1",
                          "--pp", "1")
    assert code == 1 and not doc["fits"] and doc["recommendations"] == []
    assert doc["total"] > 80 * 2**30
    what = {c["what"] for c in doc["changes_that_fit"]}
    assert what & {"more GPUs", "lora", "qlora", "shorter sequences"}


def test_nothing_fits_names_the_smallest_change(run_cli):
    code, out, _ = run_cli("plan", "--model", "llama-3.1-70b", "--gpu-mem", "24GiB", "--gpus-per-node", "1",
                           "--offload", "none")
    assert code == 1
    assert "nothing fits" in out and "smallest change: offload" in out


def test_params_without_shape_warns_and_counts_as_given(run_cli):
    _, doc = plan_json(run_cli, "--params", "7e9", "--gpu-mem", "80GB")
    assert doc["param_count"] == 7_000_000_000 and not doc["model"]["exact"]
    assert any("--hidden" in n for n in doc["model"]["notes"])
    assert doc["cluster"]["gpu_memory"] == 80 * 10**9


def test_local_config_file_and_folder_are_read_never_written(run_cli, tmp_path):
    config = dict(load_catalog()["llama-3.2-1b"].config)
    folder = tmp_path / "Llama-3.2-1B"
    folder.mkdir()
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    for target in (str(path), str(folder)):
        _, doc = plan_json(run_cli, "--model", target, "--gpu-mem", "24GiB", "--gpus-per-node", "1")
        assert doc["param_count"] == 1_235_814_400
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]


@pytest.mark.parametrize(("args", "needle"), [
    (("--model", "llama-3.1-8b", "--gpu-mem", "80"), "80GiB or 80GB"),
    (("--model", "llama-3.1-8b"), "--gpu-mem"),
    (("--model", "no-such-model", "--gpu-mem", "80GiB"), "not a catalog model"),
    (("--model", "./missing/config.json", "--gpu-mem", "80GiB"), "no such file or folder"),
    (("--model", "llama-3.1-8b", "--gpu-mem", "80GiB", "--zero", "3", "--fsdp", "full"), "not both"),
    (("--model", "llama-3.1-8b", "--gpu-mem", "80GiB", "--tp", "16"), "more than the 8 GPUs"),
    (("--model", "llama-3.1-8b", "--gpu-mem", "80GiB", "--inter-node-bw", "fast"), "400Gb/s"),
    (("--model", "llama-3.1-8b", "--gpu", "Z9000"), "unknown or ambiguous"),
    (("--model", "llama-3.1-8b", "--gpu", "H100"), "different memory"),
    (("--gpu-mem", "80GiB",), "--model"),
    (("--model", "llama-3.1-8b", "--params", "7e9", "--gpu-mem", "80GiB"), "not both"),
    (("--model", "llama-3.1-8b", "--gpu-mem", "80GiB", "--nodes", "2", "--global-batch", "3", "--tp", "1", "--pp", "1"),
     "global batch"),
])
def test_bad_input_is_one_line_exit_2(run_cli, args, needle):
    code, out, err = run_cli("plan", *args)
    assert code == 2, (out, err)
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_config_errors_name_file_and_line(run_cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": "4096",\n  "num_hidden_layers": 2\n}\n')
    code, _, err = run_cli("plan", "--model", str(path), "--gpu-mem", "80GiB")
    assert code == 2 and f"{path}:3: hidden_size: expected a whole number" in err
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": 4096,\n}\n')
    code, _, err = run_cli("plan", "--model", str(path), "--gpu-mem", "80GiB")
    assert code == 2 and f"{path}:4: invalid JSON" in err
    path.write_text('{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1, '
                    '"vocab_size": 10}')
    code, _, err = run_cli("plan", "--model", str(path), "--gpu-mem", "80GiB")
    assert code == 2 and "missing 'intermediate_size'" in err


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
CONFIG_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "head_dim", "tie_word_embeddings", "num_local_experts",
               "num_experts_per_tok", "n_embd", "n_layer", "n_head", "n_positions", "mlp_only_layers",
               "decoder_sparse_step", "q_lora_rank", "kv_lora_rank", "first_k_dense_replace", "attention_bias")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(sorted({e.name for e in load_catalog().values()})),
       edits=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_fuzzed_config_json_never_crashes(tmp_path_factory, base, edits, raw):
    path = tmp_path_factory.mktemp("fuzz") / "config.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps({**load_catalog()[base].config, **edits}))
    code = main(["plan", "--model", str(path), "--gpu-mem", "80GiB", "--nodes", "2", "--json"])
    assert code in (0, 1, 2)


def test_units():
    assert parse_size("80GiB") == 80 * 2**30 and parse_size("80GB") == 80 * 10**9 and parse_size("1.5TiB") == 1.5 * 2**40
    assert parse_bandwidth("400Gb/s", "x") == 50e9 and parse_bandwidth("50GB/s", "x") == 50e9


# -- the cluster as the sweep saw it ---------------------------------------------------------------

def test_cluster_from_h100_facts_reads_nvlink_infiniband_and_memory():
    facts = fixture_facts("h100_sxm_8x")
    cluster = cluster_from_facts([facts, facts], tflops=400)
    assert cluster.nodes == 2 and cluster.gpus_per_node == 8
    assert cluster.gpu_memory == min(d.memory_total_bytes for d in facts.gpu.devices)
    assert cluster.intra_bw == 18 * 25e9 * 0.8  # 18 NVLinks up x 25 GB/s
    assert cluster.inter_bw == 8 * 400e9 / 8 * 0.8  # eight ACTIVE 400 Gb/s InfiniBand ports; not the Ethernet ones
    assert cluster.host_memory == facts.system.memory.total_bytes
    measured = cluster_from_facts([facts, facts], measured_inter_bus_bw=123e9, tflops=400)
    assert measured.inter_bw == 123e9 and "measured" in measured.sources["inter_bw"]


def test_cluster_from_facts_without_gpus_is_an_input_error():
    from preflight.errors import InputError

    with pytest.raises(InputError, match="no swept node reported a GPU"):
        cluster_from_facts([fixture_facts("no_gpu")], tflops=400)


def test_measured_bus_bandwidth_from_a_benchmark():
    from preflight.bench.results import BenchResults, SizeResult

    size = SizeResult(bytes=2**30, count=2**28, iters=5, seconds_avg=0.01, seconds_max=0.011, algbw=1e11,
                      busbw=1.8e11, wrong=0)
    two = BenchResults(backend="nccl", world_size=16, nodes=["a", "b"], ranks_per_node={"a": 8, "b": 8},
                       master_addr="a", master_port=29500, sizes=[size])
    assert measured_bus_bandwidth(two) == (None, 1.8e11)
    one = BenchResults(backend="nccl", world_size=8, nodes=["a"], ranks_per_node={"a": 8}, master_addr="a",
                       master_port=29500, sizes=[size])
    assert measured_bus_bandwidth(one) == (1.8e11, None)
    assert measured_bus_bandwidth(None) == (None, None)


def test_cluster_plan_appends_to_the_cluster_json(run_cli, monkeypatch):
    from preflight.cluster import command as cluster_command
    from preflight.cluster.judge import NodeEntry

    facts = fixture_facts("h100_sxm_8x")
    monkeypatch.setattr(cluster_command, "_local_entry", lambda: NodeEntry(facts.node, facts))
    code, out, err = run_cli("cluster", "--plan", "llama-3.1-8b", "--method", "qlora", "--json")
    doc = json.loads(out)
    assert "plan" in doc and doc["plan"]["fits"], err
    assert doc["plan"]["cluster"]["gpus_per_node"] == 8
    assert doc["plan"]["trainable_params"] == 20_971_520
    assert "NVLink" in doc["plan"]["cluster"]["sources"]["intra_bw"]
    code, out, _ = run_cli("cluster", "--plan", "llama-3.1-8b")
    assert "plan" in out and "GiB (2^30 bytes)" in out


def test_cluster_plan_with_an_unknown_model_fails_before_any_sweep(run_cli, monkeypatch):
    from preflight.cluster import command as cluster_command

    monkeypatch.setattr(cluster_command, "_local_entry", lambda: pytest.fail("swept despite a bad --plan"))
    code, _, err = run_cli("cluster", "--plan", "nonexistent-model")
    assert code == 2 and "not a catalog model" in err


# -- the search ------------------------------------------------------------------------------------

def planner(name: str, training: Training, cluster: Cluster, batch: int, fixed: Constraints = Constraints()):  # noqa: ANN201
    spec = spec_from_config(load_catalog()[name].config, name=name, source="t")
    return Planner(ModelMemory(spec, tensor_groups(spec), training), cluster, batch, fixed)


H100 = Cluster(nodes=128, gpus_per_node=8, gpu_memory=80 * 2**30, intra_bw=360e9, inter_bw=320e9, flops=400e12)


def test_every_recommendation_fits_and_the_ones_left_out_do_not():
    p = planner("llama-3.1-70b", Training(seq_len=4096), Cluster(2, 8, 80 * 2**30, 360e9, 50e9, 400e12), 64)
    feasible, frugal, evaluated = p.search()
    assert feasible and evaluated > 50
    for cand in feasible:
        assert cand.estimate.total <= 0.95 * 80 * 2**30
    too_big = [p.evaluate(lay) for lay in p.layouts() if lay.sharding == "none" and lay.tp == 1 and lay.pp == 1]
    assert too_big and not any(p.fits(c) for c in too_big)
    ranked = top_distinct(feasible)
    assert [c.time.total for c in ranked] == sorted(c.time.total for c in ranked)


def test_slow_network_prefers_less_data_parallel_traffic():
    """On 1 Gb/s between nodes ZeRO-3 over both nodes costs minutes of traffic; the search moves to
    layouts that keep the heavy traffic inside a node."""
    slow = Cluster(2, 8, 80 * 2**30, 360e9, 1e9 / 8, 400e12)
    fast = Cluster(2, 8, 80 * 2**30, 360e9, 400e9, 400e12)
    best_slow = planner("llama-3.1-8b", Training(), slow, 64).search()[0][0]
    best_fast = planner("llama-3.1-8b", Training(), fast, 64).search()[0][0]
    assert best_slow.time.total > best_fast.time.total
    assert best_slow.time.data_parallel + best_slow.time.pipeline < 60
    assert best_slow.layout.sharding != "zero3"


def test_pipeline_bubble_and_tensor_traffic_are_counted():
    p = planner("llama-3.1-70b", Training(seq_len=4096), Cluster(4, 8, 80 * 2**30, 360e9, 50e9, 400e12), 128)
    lay = Layout(dp=2, tp=8, pp=2, sp=True, sharding="zero1", shard_group=1, micro_batch=1, grad_accum=64)
    cand = p.evaluate(lay)
    assert cand.time.bubble == pytest.approx(cand.time.compute / 64)
    assert cand.time.tensor_parallel > 0 and cand.time.pipeline > 0


def test_search_over_1024_gpus_answers_within_a_second():
    p = planner("llama-3.1-70b", Training(seq_len=4096), H100, 1024)
    start = time.perf_counter()
    feasible, _, evaluated = p.search()
    elapsed = time.perf_counter() - start
    assert feasible and evaluated > 100
    assert elapsed < 2.0  # the benchmark asks for 1 s; a loaded test machine gets slack


def test_emitted_settings_match_the_layout(run_cli):
    _, doc = plan_json(run_cli, "--model", "llama-3.1-8b", "--gpu-mem", "24GiB", "--gpus-per-node", "4",
                       "--zero", "3", "--offload", "all", "--recompute", "full")
    rec = doc["recommendations"][0]
    zero = rec["settings"]["deepspeed"]["zero_optimization"]
    assert zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["reduce_bucket_size"] == 4096 * 4096
    assert rec["settings"]["training_arguments"]["gradient_checkpointing"] is True
    assert rec["settings"]["llamafactory"]["disable_gradient_checkpointing"] is False
    assert "fsdp_offload_params: true" in rec["settings"]["accelerate_fsdp"]
    assert "FULL_SHARD" in rec["settings"]["accelerate_fsdp"]
    assert rec["memory"]["host_bytes_per_node"] > 0


def test_plan_module_import_is_light():
    import subprocess
    import sys

    code = ("import sys, preflight.plan.command; "
            "bad = [m for m in ('torch', 'rich', 'preflight.plan.search', 'preflight.plan.memory', 'tomllib') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout
    assert out.strip() == "[]"


def test_list_models_names_each_source(run_cli):
    code, out, _ = run_cli("plan", "--list-models")
    assert code == 0
    names = {e.name for e in load_catalog().values()}
    for name in names:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert "https://huggingface.co/" in line


def test_hybrid_shard_and_pipeline_settings(run_cli):
    _, doc = plan_json(run_cli, "--model", "llama-3.1-8b", "--gpu-mem", "80GiB", "--nodes", "2", "--fsdp", "hybrid")
    rec = doc["recommendations"][0]
    assert "HYBRID_SHARD" in rec["settings"]["accelerate_fsdp"]
    assert rec["settings"]["training_arguments"]["fsdp"].startswith("hybrid_shard")
    assert rec["layout"]["shard_group"] == 8 // rec["layout"]["tp"]
    _, doc = plan_json(run_cli, "--model", "llama-3.1-70b", "--gpu-mem", "80GiB", "--nodes", "4", "--pp", "4",
                       "--tp", "8", "--seq-len", "4096")
    rec = doc["recommendations"][0]
    assert "--pipeline-model-parallel-size 4" in rec["settings"]["megatron"]
    assert "--tensor-model-parallel-size 8" in rec["settings"]["megatron"]
    assert "do not pipeline" in rec["settings"]["note"]


@pytest.mark.parametrize(("flags", "key", "value"), [
    (("--method", "freeze", "--trainable-layers", "4"), "freeze_trainable_layers", 4),
    (("--method", "qlora"), "quantization_bit", 4),
    (("--method", "qlora-8bit"), "quantization_bit", 8),
    (("--optimizer", "adafactor"), "optim", "adafactor"),
    (("--optimizer", "adamw-8bit"), "optim", "adamw_bnb_8bit"),
    (("--precision", "pure-bf16"), "pure_bf16", True),
])
def test_methods_and_optimizers_reach_the_llamafactory_keys(run_cli, flags, key, value):
    _, doc = plan_json(run_cli, "--model", "qwen2.5-7b", "--gpu-mem", "80GiB", *flags)
    assert doc["recommendations"][0]["settings"]["llamafactory"][key] == value
