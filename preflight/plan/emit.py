"""The settings that realise a layout: torchrun arguments, a DeepSpeed config, an Accelerate FSDP
config, HF ``TrainingArguments`` and LLaMA-Factory keys, and Megatron-LM arguments when the
layout needs tensor or pipeline parallelism (the HF Trainer does not pipeline).

Key names: DeepSpeed's config reference (``zero_optimization``, ``offload_optimizer``,
``offload_param``, ``reduce_bucket_size``, ``stage3_prefetch_bucket_size``,
``stage3_param_persistence_threshold``; bucket sizes as the HF integration's ``auto`` fills them:
h², 0.9·h², 10·h); DeepSpeed AutoTP training (``tensor_parallel.autotp_size``, DeepSpeed >= 0.16.4);
Accelerate's FSDP plugin (``fsdp_sharding_strategy``, ``fsdp_offload_params``,
``fsdp_activation_checkpointing``); transformers ``TrainingArguments``; LLaMA-Factory's
``finetuning_type``, ``quantization_bit``, ``cutoff_len``, ``disable_gradient_checkpointing``
(gradient checkpointing is on by default there), ``pure_bf16``.
"""

from __future__ import annotations

from typing import Any

from preflight.plan.memory import Layout, Training
from preflight.plan.model import ModelSpec

_HF_OPTIM = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "adafactor": "adafactor", "sgd": "sgd"}
_FSDP_STRATEGY = {"zero2": "SHARD_GRAD_OP", "zero3": "FULL_SHARD", "fsdp": "FULL_SHARD", "fsdp-hybrid": "HYBRID_SHARD"}


def torchrun(nodes: int, gpus_per_node: int, script: str = "train.py") -> str:
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {gpus_per_node} {script}"
    return (f"torchrun --nnodes {nodes} --nproc-per-node {gpus_per_node} --node-rank $NODE_RANK "
            f"--rdzv-backend c10d --rdzv-endpoint $MASTER_ADDR:29400 {script}")


def deepspeed_config(spec: ModelSpec, training: Training, layout: Layout, global_batch: int) -> dict[str, Any] | None:
    if not layout.sharding.startswith("zero"):
        return None
    h = spec.hidden
    zero: dict[str, Any] = {"stage": layout.zero_level, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": h * h}
    if layout.zero_level == 3:
        zero.update(stage3_prefetch_bucket_size=int(0.9 * h * h), stage3_param_persistence_threshold=10 * h,
                    stage3_gather_16bit_weights_on_model_save=True)
    if layout.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if layout.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": layout.micro_batch,
        "gradient_accumulation_steps": layout.grad_accum,
        "zero_optimization": zero,
    }
    if training.precision in ("bf16", "pure-bf16"):
        config["bf16"] = {"enabled": True}
    elif training.precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    if layout.tp > 1:
        config["tensor_parallel"] = {"autotp_size": layout.tp}
    return config


def accelerate_fsdp(training: Training, layout: Layout, nodes: int, gpus_per_node: int) -> str | None:
    strategy = _FSDP_STRATEGY.get(layout.sharding)
    if strategy is None or layout.tp > 1 or layout.pp > 1:
        return None
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16", "pure-bf16": "bf16"}[training.precision]
    lines = [
        "compute_environment: LOCAL_MACHINE",
        "distributed_type: FSDP",
        f"mixed_precision: {mixed}",
        f"num_machines: {nodes}",
        f"num_processes: {nodes * gpus_per_node}",
        "machine_rank: 0  # each node its own rank",
        "fsdp_config:",
        "  fsdp_version: 1",
        f"  fsdp_sharding_strategy: {strategy}",
        "  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP",
        "  fsdp_backward_prefetch: BACKWARD_PRE",
        f"  fsdp_offload_params: {'true' if layout.offload != 'none' else 'false'}",
        f"  fsdp_activation_checkpointing: {'true' if layout.recompute == 'full' else 'false'}",
        "  fsdp_cpu_ram_efficient_loading: true",
        "  fsdp_sync_module_states: true",
        "  fsdp_use_orig_params: true",
        "  fsdp_state_dict_type: SHARDED_STATE_DICT",
    ]
    if nodes > 1:
        lines[5:5] = ["main_process_ip: MASTER_ADDR  # the first node's address", "main_process_port: 29500"]
    return "\n".join(lines) + "\n"


def _precision_args(training: Training) -> dict[str, Any]:
    if training.precision in ("bf16", "pure-bf16"):
        return {"bf16": True}
    if training.precision == "fp16":
        return {"fp16": True}
    return {}


def training_arguments(training: Training, layout: Layout) -> dict[str, Any]:
    args: dict[str, Any] = {
        "per_device_train_batch_size": layout.micro_batch,
        "gradient_accumulation_steps": layout.grad_accum,
        "gradient_checkpointing": layout.recompute == "full",
        "optim": _HF_OPTIM[training.optimizer],
        **_precision_args(training),
    }
    if layout.sharding.startswith("zero"):
        args["deepspeed"] = "ds_config.json"
    elif layout.sharding.startswith("fsdp"):
        args["fsdp"] = ("hybrid_shard" if layout.sharding == "fsdp-hybrid" else "full_shard") + " auto_wrap" + (
            " offload" if layout.offload != "none" else "")
    return args


def llamafactory(model: str, training: Training, layout: Layout) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "model_name_or_path": model,
        "stage": "sft",
        "finetuning_type": {"full": "full", "freeze": "freeze"}.get(training.method, "lora"),
        "cutoff_len": training.seq_len,
        "per_device_train_batch_size": layout.micro_batch,
        "gradient_accumulation_steps": layout.grad_accum,
        "disable_gradient_checkpointing": layout.recompute != "full",
        "flash_attn": "fa2" if training.attention == "flash" else "disabled",
        "optim": _HF_OPTIM[training.optimizer],
    }
    if training.precision == "pure-bf16":
        keys["pure_bf16"] = True
    else:
        keys.update(_precision_args(training))
    if training.method in ("lora", "qlora", "qlora-8bit"):
        keys["lora_rank"] = training.lora_rank
        keys["lora_target"] = "all" if training.lora_targets == "all" else "q_proj,k_proj,v_proj,o_proj"
    if training.method == "qlora":
        keys.update(quantization_bit=4, quantization_method="bnb", double_quantization=True)
    if training.method == "qlora-8bit":
        keys.update(quantization_bit=8, quantization_method="bnb")
    if training.method == "freeze":
        keys["freeze_trainable_layers"] = training.trainable_layers
    if layout.sharding.startswith("zero"):
        keys["deepspeed"] = "ds_config.json"
    return keys


def megatron(training: Training, layout: Layout, global_batch: int) -> str | None:
    if layout.tp == 1 and layout.pp == 1 and layout.cp == 1:
        return None
    args = [f"--tensor-model-parallel-size {layout.tp}", f"--pipeline-model-parallel-size {layout.pp}"]
    if layout.cp > 1:
        args.append(f"--context-parallel-size {layout.cp}")
    if layout.sp:
        args.append("--sequence-parallel")
    args += [f"--micro-batch-size {layout.micro_batch}", f"--global-batch-size {global_batch}",
             f"--seq-length {training.seq_len}"]
    if layout.recompute == "selective":
        args.append("--recompute-activations")
    elif layout.recompute == "full":
        args.append("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1")
    if layout.sharding == "zero1":
        args.append("--use-distributed-optimizer")
    if training.precision in ("bf16", "pure-bf16"):
        args.append("--bf16")
    elif training.precision == "fp16":
        args.append("--fp16")
    if training.attention == "flash":
        args.append("--use-flash-attn")
    return " ".join(args)


def settings(spec: ModelSpec, model_ref: str, training: Training, layout: Layout, global_batch: int,
             nodes: int, gpus_per_node: int) -> dict[str, Any]:
    """Everything a user copies to run ``layout``; keys absent when they do not apply."""
    out: dict[str, Any] = {"torchrun": torchrun(nodes, gpus_per_node)}
    ds = deepspeed_config(spec, training, layout, global_batch)
    if ds is not None:
        out["deepspeed"] = ds
    fsdp = accelerate_fsdp(training, layout, nodes, gpus_per_node)
    if fsdp is not None:
        out["accelerate_fsdp"] = fsdp
    out["training_arguments"] = training_arguments(training, layout)
    out["llamafactory"] = llamafactory(model_ref, training, layout)
    mega = megatron(training, layout, global_batch)
    if mega is not None:
        out["megatron"] = mega
        if layout.pp > 1:
            out["note"] = ("pipeline parallelism needs a pipeline-capable trainer (Megatron-LM, torchtitan); "
                           "the HF Trainer and LLaMA-Factory do not pipeline")
    if layout.recompute == "selective":
        out.setdefault("note", "selective recomputation is a Megatron-LM option (--recompute-activations); "
                       "with FlashAttention the HF stack already recomputes the attention scores")
    return out
