"""Precision against the hardware and against itself: bf16/tf32 need compute capability 8.0,
fp16 and bf16 exclude each other, and fp16 on a bf16-trained model overflows."""

from __future__ import annotations

from collections.abc import Iterator

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job, Setting
from preflight.trainconfig.readers import ConfigFile
from preflight.trainconfig.rule import Located, as_bool, is_auto, rule


def ds_precision(job: Job, f: ConfigFile, mode: str) -> Setting | None:
    """A DeepSpeed file's ``fp16.enabled`` / ``bf16.enabled``; bf16 also under its legacy key
    ``bfloat16``, which DeepSpeed still reads when ``bf16`` is absent (deepspeed
    runtime/precision_config.py: ``BFLOAT16_OLD = "bfloat16"  # keeping for backwards
    compatibility``, ``get_bfloat16_config``)."""
    s = job.at(f, mode, "enabled")
    if s is None and mode == "bf16" and job.at(f, "bf16") is None:
        s = job.at(f, "bfloat16", "enabled")
    return s


def requests(job: Job, mode: str) -> list[Setting]:
    """Every place that turns ``mode`` (bf16, fp16, tf32) on, across all files."""
    out: list[Setting] = []
    for f in job.files:
        if f.kind in ("hf", "llamafactory", "axolotl"):
            s = job.setting(mode, f)
            if s is not None and as_bool(s.value):
                out.append(s)
            if mode == "bf16":
                pure = job.setting("pure_bf16", f)
                if pure is not None and as_bool(pure.value):
                    out.append(pure)
        elif f.kind == "accelerate" and mode in ("bf16", "fp16"):
            s = job.at(f, "mixed_precision")
            if s is not None and str(s.value).lower() == mode:
                out.append(s)
        elif f.kind == "deepspeed" and mode in ("bf16", "fp16"):
            s = ds_precision(job, f, mode)
            if s is not None and as_bool(s.value):
                out.append(s)
    return out


def _hardware_rule(job: Job, mode: str, error: str) -> Iterator[Located]:
    asked = requests(job, mode)
    if not asked:
        return
    hw = job.hardware
    if hw.compute_capability is None:
        yield Located(asked[0].where, skip(f"{mode} requested; GPU unknown (give --gpu NAME or --facts FILE)"))
        return
    feature = job.matrix.feature(mode)
    if feature is None or feature.supported(hw.compute_capability):
        yield Located(asked[0].where, passed(f"{mode} on {hw.gpu} (compute capability {hw.compute_capability})"))
        return
    for s in asked:
        if s.file.kind == "accelerate":
            fix = "set mixed_precision: fp16" if mode == "bf16" else "remove it"
        elif s.file.kind == "deepspeed":
            fix = f'set "{s.keys[0]}": {{"enabled": false}}' + (' and "fp16": {"enabled": true}' if mode == "bf16" else "")
        elif mode == "bf16":
            fix = f"set {s.name}: false and fp16: true"
        else:
            fix = f"set {s.name}: false"
        yield Located(s.where, fail(
            f"{s.name} = {s.value} on {hw.gpu} (compute capability {hw.compute_capability}, from {hw.source}): {error}",
            f"compute capability >= {feature.min_cc}", fix, source=feature.sourced.cite()))


@rule("config.bf16_unsupported", "bf16 only where the GPU has it")
def bf16_unsupported(job: Job) -> Iterator[Located]:
    """bf16 needs compute capability 8.0 (Ampere); TrainingArguments raises "Your setup doesn't
    support bf16/gpu" (transformers training_args.py ``_validate_args``), Axolotl "bf16 requested,
    but AMP is not supported on this GPU" for ``bf16: true`` or ``bfloat16: true`` (its
    ``check_bf16``; ``auto`` follows the GPU), DeepSpeed bf16 on V100/T4 is emulated or fails. The
    capability comes from compat_matrix/gpus.toml (feature ``bf16``)."""
    yield from _hardware_rule(job, "bf16", "no native bf16 (transformers raises \"Your setup doesn't support bf16/gpu\")")


@rule("config.tf32_unsupported", "tf32 only where the GPU has it")
def tf32_unsupported(job: Job) -> Iterator[Located]:
    """``tf32: true`` on a GPU below compute capability 8.0: TrainingArguments raises "--tf32
    requires Ampere or a newer GPU arch, cuda>=11 and torch>=1.7" (transformers training_args.py,
    TF32 section of ``__post_init__``)."""
    yield from _hardware_rule(job, "tf32", "transformers raises \"--tf32 requires Ampere or a newer GPU arch\"")


@rule("config.fp16_bf16_both", "fp16 and bf16 not both on")
def fp16_bf16_both(job: Job) -> Iterator[Located]:
    """Both half precisions on: TrainingArguments raises "At most one of fp16 and bf16 can be True,
    but not both" (transformers training_args.py ``_validate_args``); DeepSpeed asserts "bfloat16
    and fp16 modes cannot be simultaneously enabled" (deepspeed runtime/config.py); a DeepSpeed
    ``fp16.enabled``/``bf16.enabled`` that is not ``auto`` and disagrees with TrainingArguments raises
    the mismatch error (transformers integrations/deepspeed.py ``fill_match``)."""
    found = False
    for f in job.files:
        if f.kind in ("hf", "llamafactory", "axolotl"):
            fp, bf = job.setting("fp16", f), job.setting("bf16", f)
            if fp and bf and as_bool(fp.value) and as_bool(bf.value):
                found = True
                yield Located(fp.where, fail(f"fp16 and bf16 both true ({fp.where}, {bf.where})",
                                             "at most one", "set fp16: false (bf16 on Ampere or newer)"))
        if f.kind == "deepspeed":
            fp, bf = job.at(f, "fp16", "enabled"), ds_precision(job, f, "bf16")
            if fp and bf and as_bool(fp.value) and as_bool(bf.value):
                found = True
                yield Located(fp.where, fail(f"fp16.enabled and {bf.name} both true: DeepSpeed asserts",
                                             "at most one", 'set "fp16": {"enabled": "auto"} and "bf16": {"enabled": "auto"}'))
    t = job.trainer
    if t is not None and t.kind in ("hf", "llamafactory"):
        for ds in job.deepspeed:
            for mode in ("fp16", "bf16"):
                ds_s = job.at(ds, mode, "enabled")
                if ds_s is None or is_auto(ds_s.value) or as_bool(ds_s.value) is None:
                    continue
                hf_s = job.setting(mode)
                hf_on = bool(hf_s and as_bool(hf_s.value))
                if mode == "bf16" and not hf_on:
                    pure = job.setting("pure_bf16")
                    hf_on = bool(pure and as_bool(pure.value))
                if as_bool(ds_s.value) != hf_on:
                    found = True
                    said = f"{hf_s.name} = {hf_s.value} at {hf_s.where}" if hf_s else f"{mode} not set (false)"
                    yield Located(ds_s.where, fail(
                        f"{mode}.enabled = {ds_s.value} in the DeepSpeed config, but {said}: transformers raises "
                        "'Please correct the following DeepSpeed config values that mismatch TrainingArguments'",
                        "the same value, or auto", f'set "{mode}": {{"enabled": "auto"}} in {ds.path}'))
    if not found and (requests(job, "fp16") or requests(job, "bf16")):
        on = [s.where for s in requests(job, "fp16") + requests(job, "bf16")]
        yield Located(on[0], passed("one half precision"))


@rule("config.fp16_on_bf16_model", "fp16 training of a bf16-pretrained model")
def fp16_on_bf16_model(job: Job) -> Iterator[Located]:
    """A model whose config.json says ``torch_dtype: bfloat16`` was trained in bf16, whose range is
    far wider than fp16's (max 65504): activations can overflow to inf/NaN under fp16 mixed
    precision (transformers docs ``deepspeed.md``: a model not pretrained in that precision "may
    encounter overflow or underflow issues which can cause NaN loss"; huggingface/transformers#11076,
    fp16 overflow of the TPU/bf16-trained GPT-Neo). A warning: many runs survive with loss scaling."""
    if job.model is None or not job.model.torch_dtype:
        return
    asked = requests(job, "fp16")
    if not asked:
        return
    if job.model.torch_dtype.lower().replace("torch.", "") == "bfloat16":
        yield Located(asked[0].where, warn(
            f"{asked[0].name} = {asked[0].value}, but {job.model.path} says torch_dtype bfloat16",
            "bf16 for a bf16-pretrained model",
            f"set {asked[0].name}: false and bf16: true on Ampere or newer; on older GPUs keep fp32 or watch for NaN losses"))
        return
    yield Located(asked[0].where, passed(f"model dtype {job.model.torch_dtype}"))
