"""The fine-tuning method against what it is combined with: a quantized base model trains only
through an adapter, and Axolotl's QLoRA needs its model loaded in 4 bits."""

from __future__ import annotations

from collections.abc import Iterator

from preflight.findings import fail, passed, warn
from preflight.trainconfig.job import Job
from preflight.trainconfig.rule import Located, as_bool, rule, truthy

QUANTIZED_TRAINABLE = ("lora", "oft")  # the finetuning_type values LLaMA-Factory accepts with quantization_bit


@rule("config.quantized_method", "A quantized model trains through LoRA")
def quantized_method(job: Job) -> Iterator[Located]:
    """LLaMA-Factory refuses ``quantization_bit`` with a ``finetuning_type`` other than ``lora``
    (``oft`` too, since it supports OFT): ``hparams/parser.py`` ``_verify_model_args`` raises
    "Quantization is only compatible with the LoRA method." ("... LoRA or OFT method." in newer
    releases). The 4/8-bit weights of a quantized base model cannot be updated; full and freeze
    tuning have nothing to train. Axolotl's equivalents (no adapter with a 4/8-bit model, QLoRA
    without ``load_in_4bit``) are in ``_axolotl_quantized``."""
    t = job.trainer
    if t is not None and t.kind == "axolotl":
        yield from _axolotl_quantized(job)
        return
    if t is None or t.kind != "llamafactory" or t.get("quantization_bit") in (None, ""):
        return
    bits = t.get("quantization_bit")
    ftype = str(t.get("finetuning_type") or "lora").lower()
    said = f"finetuning_type = {ftype} at {t.at('finetuning_type')}" if t.has("finetuning_type") \
        else "finetuning_type lora (the default)"
    if ftype in QUANTIZED_TRAINABLE:
        yield Located(t.at("quantization_bit"), passed(f"quantization_bit = {bits} with {said}"))
        return
    yield Located(t.at("quantization_bit"), fail(
        f"quantization_bit = {bits} with {said}: LLaMA-Factory raises \"Quantization is only "
        "compatible with the LoRA method\"",
        "finetuning_type: lora with a quantized model",
        f"set finetuning_type: lora (QLoRA), or remove quantization_bit to {ftype}-tune the full-precision model"))


def _axolotl_quantized(job: Job) -> Iterator[Located]:
    """Axolotl's LoRA schema (axolotl-ai-cloud/axolotl ``src/axolotl/utils/schemas/peft.py``
    ``LoraConfig``, commit f5ff7a9c) refuses at config load: ``load_in_8bit``/``load_in_4bit`` with no
    ``adapter`` ("load_in_8bit and load_in_4bit are not supported without setting an adapter for
    training. If you want to full finetune, please turn off load_in_8bit and load_in_4bit.",
    ``validate_adapter``, unless ``inference``); ``adapter: qlora`` with ``load_in_8bit`` ("Can't load
    qlora in 8bit") or without ``load_in_4bit: true`` ("Require cfg.load_in_4bit to be True for
    qlora", ``validate_qlora``; with ``merge_lora`` the rules are about merging, not judged here)."""
    t = job.trainer
    assert t is not None
    adapter = str(t.get("adapter") or "").strip().lower()
    four, eight = truthy(t.get("load_in_4bit")), truthy(t.get("load_in_8bit"))
    if not adapter:
        if truthy(t.get("inference")) or not (four or eight):
            return
        key = "load_in_4bit" if four else "load_in_8bit"
        yield Located(t.at(key), fail(
            f"{key}: true with no adapter: Axolotl raises \"load_in_8bit and load_in_4bit are not supported "
            "without setting an adapter for training\"", "an adapter with a quantized model",
            f"set adapter: {'qlora' if four else 'lora'} (with lora_r, lora_alpha, lora_target_linear: true), "
            f"or set {key}: false to fully fine-tune"))
        return
    if adapter != "qlora" or truthy(t.get("merge_lora")):
        if four or eight:
            key = "load_in_4bit" if four else "load_in_8bit"
            yield Located(t.at(key), passed(f"{key} with adapter {adapter} at {t.at('adapter')}"))
        return
    if eight:
        yield Located(t.at("load_in_8bit"), fail(
            "adapter: qlora with load_in_8bit: true: Axolotl raises \"Can't load qlora in 8bit\"",
            "QLoRA loads the model in 4 bits", "set load_in_8bit: false and load_in_4bit: true "
            "(or adapter: lora for 8-bit LoRA)"))
        return
    if not four:
        said = f"load_in_4bit = {t.get('load_in_4bit')} at {t.at('load_in_4bit')}" if t.has("load_in_4bit") \
            else "load_in_4bit not set"
        yield Located(t.at("load_in_4bit") if t.has("load_in_4bit") else t.at("adapter"), fail(
            f"adapter: qlora with {said}: Axolotl raises \"Require cfg.load_in_4bit to be True for qlora\"",
            "load_in_4bit: true", "set load_in_4bit: true (or adapter: lora for an unquantized model)"))
        return
    yield Located(t.at("load_in_4bit"), passed(f"adapter qlora with load_in_4bit at {t.at('load_in_4bit')}"))


@rule("config.nothing_runs", "The config asks for some work")
def nothing_runs(job: Job) -> Iterator[Located]:
    """A LLaMA-Factory config with none of ``do_train``, ``do_eval``, ``do_predict`` true: its
    workflows (``train/sft/workflow.py`` ``run_sft``, and the pt/rm/dpo/kto/ppo ones alike) train
    only ``if training_args.do_train``, evaluate only ``if do_eval``, predict only ``if
    do_predict``, and all three default to false (transformers ``TrainingArguments``). The job
    loads the model and the dataset on every GPU, then exits 0 having done nothing: it starts, so
    this warns rather than fails, but no run is wanted like that."""
    t = job.trainer
    if t is None or t.kind != "llamafactory":
        return
    asked = [k for k in ("do_train", "do_eval", "do_predict") if as_bool(t.get(k))]
    if asked:
        yield Located(t.at(asked[0]), passed(f"{', '.join(asked)} set"))
        return
    written = [k for k in ("do_train", "do_eval", "do_predict") if t.has(k)]
    where = t.at(written[0]) if written else str(t.path)
    yield Located(where, warn(
        "none of do_train, do_eval, do_predict is true"
        + (f" ({', '.join(f'{k} = {t.get(k)}' for k in written)})" if written else " (all default to false)")
        + ": LLaMA-Factory loads the model and data, then exits without training, evaluating or predicting",
        "do_train: true (or do_eval / do_predict)",
        "add do_train: true"))
