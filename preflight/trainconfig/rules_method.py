"""The fine-tuning method against what it is combined with: a quantized base model trains only
through an adapter."""

from __future__ import annotations

from collections.abc import Iterator

from preflight.findings import fail, passed
from preflight.trainconfig.job import Job
from preflight.trainconfig.rule import Located, rule

QUANTIZED_TRAINABLE = ("lora", "oft")  # the finetuning_type values LLaMA-Factory accepts with quantization_bit


@rule("config.quantized_method", "A quantized model trains through LoRA")
def quantized_method(job: Job) -> Iterator[Located]:
    """LLaMA-Factory refuses ``quantization_bit`` with a ``finetuning_type`` other than ``lora``
    (``oft`` too, since it supports OFT): ``hparams/parser.py`` ``_verify_model_args`` raises
    "Quantization is only compatible with the LoRA method." ("... LoRA or OFT method." in newer
    releases). The 4/8-bit weights of a quantized base model cannot be updated; full and freeze
    tuning have nothing to train."""
    t = job.trainer
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
