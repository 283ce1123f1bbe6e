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


# accelerate utils/dataclasses.py DeepSpeedPlugin._deepspeed_config_checks: the accelerate config keys a
# DeepSpeed JSON makes ambiguous (the nvme paths are listed from accelerate 0.2x on)
ACCELERATE_DS_FIELDS = ("gradient_accumulation_steps", "gradient_clipping", "zero_stage", "offload_optimizer_device",
                        "offload_param_device", "offload_param_nvme_path", "offload_optimizer_nvme_path",
                        "zero3_save_16bit_model")


def _same_file(a: Setting, b: Setting) -> bool:
    from preflight.trainconfig.job import resolve_relative

    pa, pb = resolve_relative(str(a.value), a.file.path), resolve_relative(str(b.value), b.file.path)
    if pa is None or pb is None:
        return str(a.value).strip() == str(b.value).strip()
    return pa.resolve() == pb.resolve()


@rule("config.deepspeed_source", "One DeepSpeed config, not contradicted by Accelerate's")
def deepspeed_source(job: Job) -> Iterator[Located]:
    """Which DeepSpeed settings a launch uses. ``accelerate launch`` with ``distributed_type:
    DEEPSPEED`` exports the keys of the config's ``deepspeed_config`` block, and ``mixed_precision``
    when the config file sets it, as ``ACCELERATE_CONFIG_DS_FIELDS`` (accelerate commands/launch.py
    ``launch_command``, utils/launch.py ``prepare_deepspeed_cmd_env``); when a DeepSpeed JSON is then
    loaded (the config's ``deepspeed_config_file``, or the trainer's ``deepspeed:``, which
    TrainingArguments turns into ``DeepSpeedPlugin(hf_ds_config=...)``) and any of
    gradient_accumulation_steps, gradient_clipping, zero_stage, offload_optimizer_device,
    offload_param_device, the nvme paths, zero3_save_16bit_model or mixed_precision is among them,
    ``DeepSpeedPlugin._deepspeed_config_checks`` raises "When using `deepspeed_config_file`, the
    following accelerate config variables will be ignored: [...]" (accelerate utils/dataclasses.py).
    A failure. When the trainer's ``deepspeed:`` and Accelerate's ``deepspeed_config_file`` name
    different files, the trainer's wins: transformers training_args.py builds the plugin from
    ``TrainingArguments.deepspeed`` and trainer.py passes it to ``Accelerator(deepspeed_plugin=...)``,
    so Accelerate's file is never read. A warning: nothing fails, but one file is dead."""
    acc = job.accelerate
    if acc is None or str(acc.get("distributed_type") or "").strip().upper() != "DEEPSPEED":
        return
    block = acc.get("deepspeed_config") if isinstance(acc.get("deepspeed_config"), dict) else {}
    acc_file = job.at(acc, "deepspeed_config", "deepspeed_config_file") if block.get("deepspeed_config_file") else None
    t = job.trainer
    trainer_ds = job.setting("deepspeed") if t is not None else None
    json_from = acc_file or trainer_ds
    if json_from is None:
        yield Located(acc.at("distributed_type"), passed("DeepSpeed settings only in the Accelerate config"))
        return
    clashing = [job.at(acc, "deepspeed_config", k) for k in ACCELERATE_DS_FIELDS if k in block]
    mp = job.at(acc, "mixed_precision")
    clashing = [s for s in clashing if s is not None] + ([mp] if mp is not None else [])
    if clashing:
        names = ", ".join(s.keys[-1] for s in clashing)
        where = "deepspeed_config_file" if acc_file else f"{trainer_ds.name} at {trainer_ds.where}"  # type: ignore[union-attr]
        yield Located(clashing[0].where, fail(
            f"a DeepSpeed JSON ({where}) with {names} in the Accelerate config: accelerate raises \"When using "
            "`deepspeed_config_file`, the following accelerate config variables will be ignored\"",
            "these settings only in the DeepSpeed JSON",
            f"delete {names} from {acc.path} and set them in the DeepSpeed JSON (\"auto\" takes the trainer's)"))
        return
    if acc_file is not None and trainer_ds is not None and isinstance(trainer_ds.value, str) \
            and not _same_file(acc_file, trainer_ds):
        yield Located(acc_file.where, warn(
            f"two DeepSpeed configs: {acc_file.value!r} here and {trainer_ds.value!r} at {trainer_ds.where}; "
            f"the trainer's {trainer_ds.name} wins (TrainingArguments builds the DeepSpeed plugin from it), "
            "this one is never read", "one DeepSpeed JSON",
            f"point both at the same file, or remove {trainer_ds.name} from {trainer_ds.file.path}"))
        return
    yield Located(json_from.where, passed(f"DeepSpeed JSON from {json_from.name} at {json_from.where}"))
