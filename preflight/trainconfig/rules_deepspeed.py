"""DeepSpeed ZeRO: stages and offload combinations DeepSpeed rejects or ignores, ZeRO-3 offload
against host RAM, and DeepSpeed files that a trainer config names but that do not exist."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job, Setting
from preflight.trainconfig.rule import Located, as_bool, as_count, as_number, rule

BUFFER_FACTOR = 1.5  # DeepSpeed's memory estimators (deepspeed runtime/zero/stage3.py) use 1.5
GIB = 1024**3


@dataclass(frozen=True)
class Zero:
    """ZeRO settings from a DeepSpeed JSON or an Accelerate ``deepspeed_config`` block."""

    stage: Setting | None
    offload_param: Setting | None  # the device ("cpu", "nvme", "none")
    offload_optimizer: Setting | None
    optimizer_ratio: Setting | None


def zero_configs(job: Job) -> list[Zero]:
    out = []
    for ds in job.deepspeed:
        zo = ds.get("zero_optimization")
        if not isinstance(zo, dict):
            continue
        out.append(Zero(job.at(ds, "zero_optimization", "stage"),
                        job.at(ds, "zero_optimization", "offload_param", "device"),
                        job.at(ds, "zero_optimization", "offload_optimizer", "device"),
                        job.at(ds, "zero_optimization", "offload_optimizer", "ratio")))
    acc = job.accelerate
    if acc is not None and isinstance(acc.get("deepspeed_config"), dict) and not acc.get("deepspeed_config", "deepspeed_config_file"):
        out.append(Zero(job.at(acc, "deepspeed_config", "zero_stage"),
                        job.at(acc, "deepspeed_config", "offload_param_device"),
                        job.at(acc, "deepspeed_config", "offload_optimizer_device"), None))
    return out


def _offloaded(s: Setting | None) -> bool:
    return s is not None and str(s.value).lower() in ("cpu", "nvme")


@rule("config.zero_stage", "ZeRO stage and offload combinations DeepSpeed accepts")
def zero_stage(job: Job) -> Iterator[Located]:
    """A ZeRO stage outside 0-3 fails DeepSpeed's config validation (``ZeroStageEnum``,
    deepspeed runtime/zero/config.py); partial optimizer offload (``offload_optimizer.ratio`` < 1)
    below stage 3 fails its assertion "Partial offloading only supported for ZeRO Stage 3." (same
    file); ``fp16.fp16_master_weights_and_grads`` outside stage 2 fails "Fp16_master_weights_and_grads
    is only supported with ZeRO Stage 2 for now." (deepspeed runtime/config.py); LLaMA-Factory raises "pure_bf16 is incompatible with DeepSpeed ZeRO-3" (hparams/parser.py).
    ``offload_param`` below stage 3 is documented as "Valid only with stage 3" and silently ignored:
    a warning, since the memory the user counted on is not saved."""
    for z in zero_configs(job):
        if z.stage is None:
            continue
        stage = as_count(z.stage.value)
        if stage is None or stage > 3:
            yield Located(z.stage.where, fail(f"{z.stage.name} = {z.stage.value!r}", "0, 1, 2 or 3",
                                              f"set {z.stage.name}: 3 (or 2)"))
            continue
        ratio = as_number(z.optimizer_ratio.value) if z.optimizer_ratio else None
        if ratio is not None and ratio < 1 and stage != 3:
            yield Located(z.optimizer_ratio.where, fail(  # type: ignore[union-attr]
                f"offload_optimizer.ratio = {ratio} with ZeRO stage {stage}: DeepSpeed asserts partial offloading "
                "is ZeRO-3 only", "stage 3, or ratio 1.0", "remove \"ratio\" or set \"stage\": 3"))
            continue
        if _offloaded(z.offload_param) and stage < 3:
            yield Located(z.offload_param.where, warn(  # type: ignore[union-attr]
                f"parameter offload to {z.offload_param.value} with ZeRO stage {stage}: ignored (stage 3 only)",  # type: ignore[union-attr]
                "offload_param with stage 3", "set the stage to 3, or remove offload_param"))
            continue
        master = next((job.at(ds, "fp16", "fp16_master_weights_and_grads") for ds in job.deepspeed
                       if z.stage.file is ds and as_bool(ds.get("fp16", "fp16_master_weights_and_grads"))), None)
        if master is not None and stage != 2:
            yield Located(master.where, fail(
                f"fp16_master_weights_and_grads with ZeRO stage {stage}: DeepSpeed asserts it is stage 2 only",
                "ZeRO stage 2", 'remove "fp16_master_weights_and_grads" or set "stage": 2'))
            continue
        pure = job.setting("pure_bf16")
        if stage == 3 and pure is not None and as_bool(pure.value):
            yield Located(pure.where, fail("pure_bf16 with DeepSpeed ZeRO-3: LLaMA-Factory refuses it",
                                           "bf16 mixed precision under ZeRO-3", "set pure_bf16: false and bf16: true"))
            continue
        yield Located(z.stage.where, passed(f"ZeRO stage {stage}"))


def model_params(job: Job) -> tuple[int, str] | None:
    if job.params:
        return job.params, "--params"
    if job.model is not None and job.model.params:
        return job.model.params, f"estimated from {job.model.path}"
    return None


@rule("config.zero3_offload_ram", "ZeRO-3 offload fits in host RAM")
def zero3_offload_ram(job: Job) -> Iterator[Located]:
    """ZeRO-3 with parameter offload keeps fp32 master weights, gradients and Adam moments (and the
    fp16 weights) in host RAM: 18 bytes per parameter per node (16 with only the optimizer
    offloaded), times DeepSpeed's 1.5 buffer factor, divided over the nodes (DeepSpeed
    ``estimate_zero3_model_states_mem_needs``, docs/code-docs/source/memory.rst; memory_formulas
    §4.2). LoRA/QLoRA train few parameters: only the 2-byte frozen weights are offloaded. An
    estimate, so a warning; parameters from ``--params`` or the local model config.json."""
    zeros = [z for z in zero_configs(job) if z.stage is not None and as_count(z.stage.value) == 3
             and (_offloaded(z.offload_param) or _offloaded(z.offload_optimizer))]
    if not zeros:
        return
    z = zeros[0]
    where = (z.offload_param or z.offload_optimizer).where  # type: ignore[union-attr]
    params = model_params(job)
    ram = job.hardware.host_ram_bytes
    if params is None or ram is None:
        what = "model size unknown (give --params N or a local model folder)" if params is None else "host RAM unknown"
        yield Located(where, skip(what))
        return
    method = job.method()
    adapter = method is not None and method[0] in ("lora", "qlora")
    per_param = 2 if adapter else (18 if _offloaded(z.offload_param) else 16)
    nodes = job.nnodes or 1
    acc = job.accelerate
    if job.nnodes is None and acc is not None and as_count(acc.get("num_machines")):
        nodes = as_count(acc.get("num_machines")) or 1
    need = params[0] * per_param / nodes * BUFFER_FACTOR
    text = (f"ZeRO-3 offload needs about {need / GIB:.0f} GiB of host RAM per node "
            f"({params[0] / 1e9:.1f}B parameters, {params[1]}; {per_param} B/param × 1.5 / {nodes} node(s)); "
            f"{job.hardware.source} has {ram / GIB:.0f} GiB")
    if need > ram:
        yield Located(where, warn(text, f"<= {ram / GIB:.0f} GiB",
                                  "offload to nvme (\"device\": \"nvme\" with nvme_path), add nodes, or use LoRA"))
        return
    yield Located(where, passed(text))


@rule("config.deepspeed_file", "The DeepSpeed config a trainer config names exists")
def deepspeed_file(job: Job) -> Iterator[Located]:
    """A ``deepspeed:`` key (LLaMA-Factory, Axolotl, TrainingArguments) or an Accelerate
    ``deepspeed_config_file`` naming a file that is not there: the trainer fails at start-up."""
    for setting, why in job.missing:
        yield Located(setting.where, fail(f"{setting.name} = {setting.value!r}: {why}", "an existing DeepSpeed JSON",
                                          f"fix the path in {setting.name}, relative to {setting.file.path.parent or '.'} "
                                          "or the working directory"))
