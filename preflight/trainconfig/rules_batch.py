"""Batch arithmetic: the global batch, DeepSpeed's batch identity, Accelerate's process split and
the number of optimizer steps an epoch gives."""

from __future__ import annotations

import math
from collections.abc import Iterator

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job
from preflight.trainconfig.readers import ConfigFile
from preflight.trainconfig.rule import Located, as_count, is_auto, rule, truthy

HF_DEFAULT_MICRO = 8  # TrainingArguments.per_device_train_batch_size default (transformers training_args.py)
MIN_STEPS_PER_EPOCH = 10


def trainer_batch(job: Job) -> tuple[int | None, int, str]:
    """(micro batch per GPU, accumulation steps, where) from the trainer config, with HF defaults."""
    t = job.trainer
    micro_s, accum_s = job.setting("micro_batch"), job.setting("grad_accum")
    micro = as_count(micro_s.value) if micro_s else (HF_DEFAULT_MICRO if t is not None and t.kind != "axolotl" else None)
    accum = as_count(accum_s.value) if accum_s else 1
    where = (micro_s or accum_s).where if (micro_s or accum_s) else str((t or job.files[0]).path) if (t or job.files) else "(configs)"
    return micro or None, accum or 1, where


def dataset_count(job: Job) -> int:
    """How many datasets LLaMA-Factory's ``dataset:`` names (``a,b`` or a list), at least 1."""
    t = job.trainer
    names = t.get("dataset") if t is not None else None
    if isinstance(names, str):
        return max(1, len([n for n in names.split(",") if n.strip()]))
    return max(1, len(names)) if isinstance(names, list) else 1


AXOLOTL_BATCH_KEYS = ("micro_batch_size", "gradient_accumulation_steps", "batch_size")


def _invalid_trainer_batch(job: Job) -> Iterator[Located]:
    """Batch sizes the trainer cannot use: torch's BatchSampler raises "batch_size should be a
    positive integer value", and accumulation steps below 1 never step the optimizer. Axolotl
    needs two of ``micro_batch_size``, ``gradient_accumulation_steps`` and ``batch_size`` to derive
    the third: "At least two of micro_batch_size, gradient_accumulation_steps, batch_size must be
    set" (axolotl-ai-cloud/axolotl src/axolotl/utils/schemas/validation.py
    ``check_batch_size_fields``, commit 6e30f2a3)."""
    t = job.trainer
    if t is not None and t.kind == "axolotl":
        given = [k for k in AXOLOTL_BATCH_KEYS if truthy(t.get(k))]
        if len(given) < 2:
            where = t.at(given[0]) if given else str(t.path)
            said = f"only {given[0]} is set" if given else "none of them is set"
            yield Located(where, fail(
                f"{said}: Axolotl raises \"At least two of {', '.join(AXOLOTL_BATCH_KEYS)} must be set\"",
                "two of the three", "set micro_batch_size and gradient_accumulation_steps (e.g. 1)"))
            return
    for concept in ("micro_batch", "grad_accum"):
        s = job.setting(concept)
        if s is not None and not as_count(s.value):
            yield Located(s.where, fail(f"{s.name} = {s.value!r}", "a whole number >= 1", f"set {s.name}: 1"))


def _ds_values(ds: ConfigFile) -> dict[str, object]:
    return {k: ds.get(k) for k in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")}


@rule("config.batch_arithmetic", "Global batch adds up")
def batch_arithmetic(job: Job) -> Iterator[Located]:
    """Global batch = micro batch × gradient accumulation × data-parallel world size. DeepSpeed
    asserts ``train_batch_size == train_micro_batch_size_per_gpu * gradient_accumulation_steps *
    world_size`` and fills a missing one by floor division (deepspeed runtime/config.py
    ``_batch_assertion``, ``_set_batch_related_parameters``); with the HF Trainer, a DeepSpeed value
    that is not ``auto`` and differs from TrainingArguments raises "Please correct the following
    DeepSpeed config values that mismatch TrainingArguments values" (transformers
    integrations/deepspeed.py ``trainer_config_process``). Both are failures."""
    invalid = list(_invalid_trainer_batch(job))
    if invalid:
        yield from invalid
        return
    micro, accum, where = trainer_batch(job)
    world = job.world_size()
    W = world[0] if world else None
    problems = 0
    for ds in job.deepspeed:
        values = _ds_values(ds)
        for key, value in values.items():
            if value is not None and not is_auto(value) and (as_count(value) is None or as_count(value) == 0):
                problems += 1
                yield Located(ds.at(key), fail(f"{key} = {value!r}: DeepSpeed needs a whole number > 0",
                                               "a positive integer or \"auto\"", f'set "{key}": "auto"'))
        tb, mb, ga = (as_count(values[k]) for k in values)
        if any(v == 0 for v in (tb, mb, ga)):
            continue
        if job.trainer is not None:
            hf = {"train_micro_batch_size_per_gpu": (micro, job.setting("micro_batch")),
                  "gradient_accumulation_steps": (accum, job.setting("grad_accum"))}
            for key, (expected, setting) in hf.items():
                got = as_count(values[key])
                if got is not None and expected is not None and got != expected:
                    problems += 1
                    name = setting.name if setting else "per_device_train_batch_size (default 8)"
                    yield Located(ds.at(key), fail(
                        f"{key} = {got} in the DeepSpeed config, but {name} = {expected} "
                        f"({setting.where if setting else job.trainer.path}): transformers refuses the mismatch",
                        f"{key} = {expected} or \"auto\"", f'set "{key}": "auto" in {ds.path}'))
            if tb is not None and micro is not None and W is not None and tb != micro * accum * W:
                problems += 1
                yield Located(ds.at("train_batch_size"), fail(
                    f"train_batch_size = {tb}, but {micro} × {accum} × {W} = {micro * accum * W} "
                    f"(micro × accumulation × world size, {world[1]})",  # type: ignore[index]
                    f"train_batch_size = {micro * accum * W}", f'set "train_batch_size": "auto" in {ds.path}'))
            continue
        # DeepSpeed on its own: its own identity, with floor division filling the missing value
        if tb is not None and mb is not None and ga is not None:
            if W is not None and tb != mb * ga * W:
                problems += 1
                yield Located(ds.at("train_batch_size"), fail(
                    f"train_batch_size = {tb}, but {mb} × {ga} × {W} = {mb * ga * W} ({world[1]})",  # type: ignore[index]
                    f"train_batch_size = {mb * ga * W}", f'set "train_batch_size": {mb * ga * W}'))
            elif W is None and tb % (mb * ga):
                problems += 1
                yield Located(ds.at("train_batch_size"), fail(
                    f"train_batch_size = {tb} is not a multiple of {mb} × {ga}: no world size satisfies "
                    "DeepSpeed's batch assertion", f"a multiple of {mb * ga}",
                    f'set "train_batch_size" to {mb * ga} × the number of GPUs'))
        elif tb is not None and (mb or ga):
            part = mb or ga
            per = part * (W or 1)
            if tb % per:
                problems += 1
                yield Located(ds.at("train_batch_size"), fail(
                    f"train_batch_size = {tb} is not divisible by {part} × {W or 1} GPU(s): DeepSpeed floors the "
                    "missing value and then fails its batch assertion", f"a multiple of {per}",
                    f'set "train_batch_size": {(tb // per + 1) * per} or give all three batch values'))
        elif tb is None and mb is None and not any(is_auto(v) for v in values.values()):
            problems += 1
            yield Located(str(ds.path), fail(
                "neither train_batch_size nor train_micro_batch_size_per_gpu is set: DeepSpeed raises "
                "'Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided'",
                "one of them", 'add "train_micro_batch_size_per_gpu": "auto"'))
    if problems:
        return
    if micro is None:
        ds = job.deepspeed[0] if job.deepspeed else None
        if ds is not None and as_count(ds.get("train_micro_batch_size_per_gpu")):
            micro = as_count(ds.get("train_micro_batch_size_per_gpu"))
            accum = as_count(ds.get("gradient_accumulation_steps")) or 1
            where = ds.at("train_micro_batch_size_per_gpu")
        elif ds is not None and any(is_auto(v) for v in _ds_values(ds).values()):
            yield Located(ds.at("train_micro_batch_size_per_gpu"), skip(
                "DeepSpeed batch values are \"auto\": the HF Trainer fills them from TrainingArguments; "
                "give the trainer config too to check them"))
            return
        else:
            yield Located(where, skip("no micro batch size in the configs"))
            return
    if W is None:
        yield Located(where, passed(
            f"{micro} × {accum} = {micro * accum} samples per GPU per optimizer step; world size unknown "
            "(give --nnodes/--gpus, --facts, or an Accelerate config)", per_gpu=micro * accum))
    else:
        yield Located(where, passed(f"global batch {micro} × {accum} × {W} = {micro * accum * W} ({world[1]})",  # type: ignore[index]
                                    global_batch=micro * accum * W))


@rule("config.accelerate_processes", "Accelerate splits processes evenly over machines")
def accelerate_processes(job: Job) -> Iterator[Located]:
    """``num_processes`` is the total over all machines, and ``accelerate launch`` starts
    ``num_processes // num_machines`` per machine (accelerate commands/launch.py: ``--nproc_per_node``
    / ``--num_gpus`` from that floor division): 16 processes on 3 machines silently run as 15. Not a
    heuristic: the arithmetic is certain, so it fails. More processes per machine than the machine
    has GPUs fails at CUDA device selection; so do more than ``gpu_ids`` lists, since accelerate sets
    ``CUDA_VISIBLE_DEVICES`` to ``gpu_ids`` (utils/launch.py ``prepare_multi_gpu_env``), and one GPU id
    with ``MULTI_GPU`` on one machine makes ``_validate_launch_command`` raise "Less than two GPU ids
    were configured and tried to run on on multiple GPUs" (commands/launch.py). Several machines
    with no ``main_process_ip`` warn: ``prepare_multi_gpu_env`` passes ``str(None)`` as torchrun's
    master address, unless each machine's launch command gives ``--main_process_ip`` (SLURM
    scripts do), so it is not certain to fail."""
    acc = job.accelerate
    if acc is None:
        return
    n, m = as_count(acc.get("num_processes")), as_count(acc.get("num_machines"))
    m = m or 1
    if n is None or n == 0:
        yield Located(acc.at("num_processes"), skip("num_processes not set (or -1: given on the command line)"))
        return
    if n % m:
        per = n // m
        yield Located(acc.at("num_processes"), fail(
            f"num_processes {n} over num_machines {m}: accelerate launches {per} per machine, {per * m} in all",
            f"a multiple of {m}", f"set num_processes: {per * m if per else m} or {(per + 1) * m}"))
        return
    kind = str(acc.get("distributed_type") or "").strip().upper()
    ids = _gpu_ids(acc.get("gpu_ids"))
    if ids is not None and kind in ("MULTI_GPU", "FSDP") and not truthy(acc.get("use_cpu")):
        if len(ids) < 2 and m <= 1 and kind == "MULTI_GPU":
            yield Located(acc.at("gpu_ids"), fail(
                f"gpu_ids = {acc.get('gpu_ids')!r} with distributed_type MULTI_GPU: accelerate raises \"Less than two "
                "GPU ids were configured and tried to run on on multiple GPUs\"", "two or more GPU ids, or all",
                "set gpu_ids: all (or list the GPUs, e.g. 0,1,2,3)"))
            return
        if n // m > len(ids):
            yield Located(acc.at("gpu_ids"), fail(
                f"{n // m} processes per machine (num_processes at {acc.at('num_processes')}), but gpu_ids = "
                f"{acc.get('gpu_ids')!r} makes only {len(ids)} GPU(s) visible (CUDA_VISIBLE_DEVICES): the extra ranks "
                "have no GPU (CUDA \"invalid device ordinal\")", f"at most {len(ids)} processes per machine",
                f"set num_processes: {len(ids) * m}, or gpu_ids: all"))
            return
    if m > 1 and kind not in ("NO", "") and acc.get("main_process_ip") in (None, ""):
        yield Located(acc.at("num_machines"), warn(
            f"num_machines {m} with no main_process_ip: accelerate passes the string 'None' to torchrun as the "
            "master address unless every machine is launched with --main_process_ip", "the first machine's address",
            "set main_process_ip: (machine 0's IP) and main_process_port: 29500, or pass --main_process_ip"))
        return
    gpus = job.hardware.gpus_per_node
    if gpus and n // m > gpus and kind not in ("MULTI_CPU", "NO", "TPU", "XLA"):
        yield Located(acc.at("num_processes"), fail(
            f"{n // m} processes per machine, but {job.hardware.source} shows {gpus} GPU(s)",
            f"at most {gpus} per machine", f"set num_processes: {gpus * m}"))
        return
    yield Located(acc.at("num_processes"), passed(f"{n} processes on {m} machine(s), {n // m} each"))


def _gpu_ids(value: object) -> list[str] | None:
    """The GPU ids an Accelerate ``gpu_ids`` lists (``0,1,2,3``, a YAML list or one number); None for
    ``all``/unset (every GPU stays visible)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("all", "")):
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p for p in str(value).split(",") if p.strip()]


@rule("config.steps_per_epoch", "Enough optimizer steps per epoch")
def steps_per_epoch(job: Job) -> Iterator[Located]:
    """Fewer than about 10 optimizer steps per epoch leaves warmup, the schedule and evaluation
    almost nothing to work with (a heuristic; data_config_ux_anchors §2.6). Dataset size from
    ``--train-samples`` or LLaMA-Factory's ``max_samples`` cap. Not for an evaluation-only config."""
    if job.evaluates_only():
        return
    micro, accum, where = trainer_batch(job)
    world = job.world_size()
    samples, source = job.train_samples, "--train-samples"
    max_samples = job.setting("max_samples")
    if samples is None and max_samples is not None and as_count(max_samples.value):
        # LLaMA-Factory caps each dataset at max_samples, then merges them (data/loader.py
        # _load_single_dataset): at most max_samples × the number of datasets
        cap, count = as_count(max_samples.value), dataset_count(job)
        samples = cap * count  # type: ignore[operator]
        source = f"max_samples at {max_samples.where}" + (f" × {count} datasets" if count > 1 else "")
    if samples is None:
        yield Located(where, skip("dataset size unknown (give --train-samples N)"))
        return
    if micro is None or world is None:
        yield Located(where, skip("global batch unknown (world size or micro batch missing)"))
        return
    global_batch = micro * accum * world[0]
    steps = math.ceil(samples / global_batch)
    at = job.setting("grad_accum").where if job.setting("grad_accum") else where  # type: ignore[union-attr]
    if steps < MIN_STEPS_PER_EPOCH:
        target = max(1, samples // (micro * world[0] * MIN_STEPS_PER_EPOCH))
        yield Located(at, warn(
            f"{samples} samples ({source}) / global batch {global_batch} = {steps} optimizer step(s) per epoch",
            f">= {MIN_STEPS_PER_EPOCH} steps per epoch",
            f"lower gradient_accumulation_steps to {target} (or the micro batch), or use more data"))
        return
    yield Located(at, passed(f"{steps} optimizer steps per epoch ({samples} samples / {global_batch})"))
