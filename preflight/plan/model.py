"""The model's shape: from a local Hugging Face ``config.json`` (a file or a model folder; nothing is
ever downloaded), from the bundled catalog ``compat_matrix/models.toml`` (each entry names the
config it copies), or from ``--params`` with optional ``--hidden`` / ``--layers``.

A config is read the way ``transformers`` reads it: a key the file leaves out takes the default of
that architecture's config class (``LlamaConfig`` has untied embeddings, ``GemmaConfig`` tied ones),
so the parameter count equals what ``transformers`` would report for the same file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from preflight.errors import InputError

# model_type -> (defaults for keys a config may omit, the architecture's layout)
# Defaults are those of the transformers config classes (configuration_<type>.py).
_FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "mistral": {"tie_word_embeddings": False},
    "mixtral": {"tie_word_embeddings": False, "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2": {"tie_word_embeddings": False},
    "qwen3": {"tie_word_embeddings": False, "attention_bias": False},
    "qwen2_moe": {"tie_word_embeddings": False, "num_experts": 60, "num_experts_per_tok": 4,
                  "decoder_sparse_step": 1, "mlp_only_layers": []},
    "qwen3_moe": {"tie_word_embeddings": False, "attention_bias": False, "num_experts": 128,
                  "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": []},
    "gemma": {"tie_word_embeddings": True, "head_dim": 256, "attention_bias": False},
    "gemma2": {"tie_word_embeddings": True, "head_dim": 256, "attention_bias": False},
    "phi3": {"tie_word_embeddings": False},
    "gpt2": {"tie_word_embeddings": True, "n_inner": None},
    "deepseek_v3": {"tie_word_embeddings": False, "attention_bias": False, "n_shared_experts": 1,
                    "n_routed_experts": 256, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "moe_intermediate_size": 2048},
}
SUPPORTED = tuple(sorted(_FAMILIES))


@dataclass(frozen=True)
class ModelSpec:
    """What the planner needs to know of a decoder-only transformer. Sizes are element counts."""

    name: str
    source: str
    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    norm: str = "rms"  # "rms" (weight only) or "layer" (weight and bias)
    norms_per_layer: int = 2
    mlp: str = "gated"  # "gated" (gate, up, down) or "plain" (fc in, fc out, with biases)
    positions: int = 0  # learned position embeddings (GPT-2)
    experts: int = 0  # routed experts per MoE layer; 0: dense
    top_k: int = 0
    moe_intermediate: int = 0
    moe_layers: int = 0
    shared_intermediate: int = 0  # total width of the shared expert(s); 0: none
    shared_gate: bool = False  # Qwen2-MoE's sigmoid gate on the shared expert
    q_lora_rank: int = 0  # DeepSeek-V3 multi-head latent attention; 0 with kv_lora_rank 0: plain attention
    kv_lora_rank: int = 0
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0
    exact: bool = True  # False: the count is an estimate (shape given only as --params, or an unknown type)
    total_override: int | None = None  # --params without a shape
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf'"{re.escape(key)}"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


class _Reader:
    """Typed access to a config dict; errors name the file and the line of the key."""

    def __init__(self, data: dict[str, Any], defaults: dict[str, Any], source: str, text: str) -> None:
        self.data, self.defaults, self.source, self.text = data, defaults, source, text

    def fail(self, key: str, message: str) -> InputError:
        return InputError(f"{key}: {message}", source=self.source, line=_line_of(self.text, key))

    def raw(self, key: str, default: Any = None) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        return self.defaults.get(key, default)

    def int(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if value is None:
            raise InputError(f"missing {key!r} (needed to count the parameters)", source=self.source)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"expected {minimum} or more, got {value}")
        if value > 10**9:
            raise self.fail(key, f"implausibly large: {value}")
        return value

    def bool(self, key: str, default: bool = False) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value


def spec_from_config(data: object, *, name: str, source: str, text: str = "") -> ModelSpec:
    """A ModelSpec from a decoded config.json; ``InputError`` naming ``source`` when it is not one."""
    if not isinstance(data, dict):
        raise InputError("not a model config (expected a JSON object)", source=source)
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise InputError("no model_type: not a Hugging Face model config", source=source, line=_line_of(text, "model_type"))
    if model_type not in _FAMILIES:
        return _unknown_family(data, model_type, name=name, source=source, text=text)
    r = _Reader(data, _FAMILIES[model_type], source, text)
    if model_type == "gpt2":
        hidden = r.int("n_embd")
        heads = r.int("n_head")
        inner = r.raw("n_inner")
        inner = r.int("n_inner") if inner is not None else 4 * hidden
        if hidden % heads:
            raise r.fail("n_head", f"{heads} heads do not divide n_embd {hidden}")
        return ModelSpec(
            name=name, source=source, model_type=model_type, vocab=r.int("vocab_size"), hidden=hidden,
            layers=r.int("n_layer"), heads=heads, kv_heads=heads, head_dim=hidden // heads, intermediate=inner,
            tied=r.bool("tie_word_embeddings", True), qkv_bias=True, o_bias=True, mlp_bias=True, norm="layer",
            mlp="plain", positions=r.int("n_positions"),
        )
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    kv_heads = r.int("num_key_value_heads", heads)
    if heads % kv_heads:
        raise r.fail("num_key_value_heads", f"{kv_heads} does not divide num_attention_heads {heads}")
    head_dim = r.int("head_dim", hidden // heads if hidden % heads == 0 else None)
    common = dict(
        name=name, source=source, model_type=model_type, vocab=r.int("vocab_size"), hidden=hidden,
        layers=r.int("num_hidden_layers"), heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        intermediate=r.int("intermediate_size"), tied=r.bool("tie_word_embeddings"),
    )
    if model_type in ("llama", "mistral", "mixtral"):
        bias = r.bool("attention_bias") if model_type == "llama" else False
        spec = ModelSpec(**common, qkv_bias=bias, o_bias=bias,
                         mlp_bias=r.bool("mlp_bias") if model_type == "llama" else False)
        if model_type == "mixtral":
            spec = replace(spec, experts=r.int("num_local_experts"), top_k=r.int("num_experts_per_tok"),
                           moe_intermediate=spec.intermediate, moe_layers=spec.layers)
        return _checked(spec, r)
    if model_type == "qwen2":
        return _checked(ModelSpec(**common, qkv_bias=True), r)
    if model_type in ("qwen3", "qwen3_moe"):
        bias = r.bool("attention_bias")
        spec = ModelSpec(**common, qkv_bias=bias, o_bias=bias, qk_norm=True)
        if model_type == "qwen3_moe":
            spec = replace(spec, **_qwen_moe(r, spec.layers), shared_intermediate=0)
        return _checked(spec, r)
    if model_type == "qwen2_moe":
        spec = ModelSpec(**common, qkv_bias=True, **_qwen_moe(r, r.int("num_hidden_layers")))
        shared = r.int("shared_expert_intermediate_size", minimum=0)
        return _checked(replace(spec, shared_intermediate=shared, shared_gate=shared > 0), r)
    if model_type in ("gemma", "gemma2"):
        bias = r.bool("attention_bias")
        return _checked(ModelSpec(**common, qkv_bias=bias, o_bias=bias,
                                  norms_per_layer=4 if model_type == "gemma2" else 2), r)
    if model_type == "phi3":
        return _checked(ModelSpec(**common), r)
    if model_type == "deepseek_v3":
        dense = r.int("first_k_dense_replace", minimum=0)
        q_lora = data["q_lora_rank"] if "q_lora_rank" in data else r.raw("q_lora_rank")  # null: no q compression
        spec = ModelSpec(
            **common, qkv_bias=r.bool("attention_bias"), o_bias=r.bool("attention_bias"),
            experts=r.int("n_routed_experts"), top_k=r.int("num_experts_per_tok"),
            moe_intermediate=r.int("moe_intermediate_size"),
            moe_layers=max(0, r.int("num_hidden_layers") - dense),
            shared_intermediate=r.int("moe_intermediate_size") * r.int("n_shared_experts", minimum=0),
            q_lora_rank=r.int("q_lora_rank") if q_lora is not None else 0, kv_lora_rank=r.int("kv_lora_rank"),
            qk_nope_dim=r.int("qk_nope_head_dim"), qk_rope_dim=r.int("qk_rope_head_dim"),
            v_head_dim=r.int("v_head_dim"),
        )
        return _checked(replace(spec, head_dim=spec.qk_nope_dim + spec.qk_rope_dim), r)
    raise AssertionError(model_type)


def _qwen_moe(r: _Reader, layers: int) -> dict[str, Any]:
    step = r.int("decoder_sparse_step")
    dense_only = r.raw("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in dense_only):
        raise r.fail("mlp_only_layers", f"expected a list of layer numbers, got {dense_only!r}")
    dense_sparse = {i for i in dense_only if 0 <= i < layers and (i + 1) % step == 0}
    moe_layers = layers // step - len(dense_sparse)
    return {"experts": r.int("num_experts"), "top_k": r.int("num_experts_per_tok"),
            "moe_intermediate": r.int("moe_intermediate_size"), "moe_layers": moe_layers}


def _checked(spec: ModelSpec, r: _Reader) -> ModelSpec:
    if spec.moe and spec.top_k > spec.experts:
        raise r.fail("num_experts_per_tok", f"{spec.top_k} is more than the {spec.experts} experts")
    return spec


def _unknown_family(data: dict[str, Any], model_type: str, *, name: str, source: str, text: str) -> ModelSpec:
    """A model_type the counter does not know: counted as a Llama-style decoder, and said so."""
    r = _Reader(data, {}, source, text)
    try:
        hidden = r.int("hidden_size")
        heads = r.int("num_attention_heads")
        kv = r.int("num_key_value_heads", heads)
        spec = ModelSpec(
            name=name, source=source, model_type=model_type, vocab=r.int("vocab_size"), hidden=hidden,
            layers=r.int("num_hidden_layers"), heads=heads, kv_heads=kv,
            head_dim=r.int("head_dim", hidden // heads if hidden % heads == 0 else None),
            intermediate=r.int("intermediate_size"), tied=r.bool("tie_word_embeddings"), exact=False,
            notes=(f"model_type {model_type!r} is not one the counter knows ({', '.join(SUPPORTED)}): "
                   "counted as a Llama-style decoder, an approximation",),
        )
    except InputError as exc:
        raise InputError(f"model_type {model_type!r} is not supported ({', '.join(SUPPORTED)}) "
                         f"and the config lacks a Llama-style shape: {exc}") from None
    return spec


def load_config(path: Path) -> ModelSpec:
    """A local config.json (or a folder holding one); never downloads, never writes."""
    file = path / "config.json" if path.is_dir() else path
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file" if not path.is_dir() else "no config.json in this folder",
                         source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.from_json(exc, source) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", source=source) from None
    name = path.name if path.is_dir() else (file.parent.name or file.name)
    return spec_from_config(data, name=name, source=source, text=text)


def spec_from_params(params: float, *, hidden: int | None, layers: int | None, heads: int | None,
                     vocab: int | None) -> ModelSpec:
    """``--params 7e9``: the count is taken as given; the shape, for activations, from the flags
    (a Llama-style layer with FFN width 8/3·h when only --hidden/--layers are known)."""
    if params <= 0 or params != params or params > 1e15:
        raise InputError(f"--params: expected a positive count like 7e9, got {params}")
    notes = ["parameter count taken from --params, not from a config"]
    if hidden is None or layers is None:
        notes.append("no --hidden/--layers: activations are a rough guess from the parameter count "
                     "(h from 12·L·h² ≈ N with L = h/128); give them for a real estimate")
        hidden = hidden or _guess_hidden(params)
        layers = layers or max(1, round(hidden / 128))
    heads = heads or max(1, hidden // 128)
    if hidden % heads:
        raise InputError(f"--heads {heads} does not divide --hidden {hidden}")
    return ModelSpec(
        name=f"{params:.3g} parameters", source="--params", model_type="unknown", vocab=vocab or 32000,
        hidden=hidden, layers=layers, heads=heads, kv_heads=heads, head_dim=hidden // heads,
        intermediate=int(8 * hidden / 3 // 256 * 256) or hidden, exact=False, total_override=int(params),
        notes=tuple(notes),
    )


def _guess_hidden(params: float) -> int:
    # 12·L·h² with L = h/128 -> h³ = 128·N/12
    h = (params * 128 / 12) ** (1 / 3)
    return max(128, int(round(h / 128)) * 128)


# -- the bundled catalog ----------------------------------------------------------------------

CATALOG_FILE = "models.toml"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: str
    verified: str
    config: dict[str, Any]
    param_count: int | None  # the count the source publishes, where it publishes one
    aliases: tuple[str, ...] = ()


def load_catalog(folder: Path | None = None) -> dict[str, CatalogEntry]:
    """The bundled model catalog, read only when a model is asked for by name."""
    from preflight.toml_text import TomlError, parse_toml

    path = (folder or _catalog_folder()) / CATALOG_FILE
    try:
        data = parse_toml(path.read_text(encoding="utf-8"))
    except TomlError as exc:
        raise InputError(str(exc), source=str(path), line=exc.line) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from None
    entries: dict[str, CatalogEntry] = {}
    for item in data.get("model", []):
        try:
            entry = CatalogEntry(
                name=str(item["name"]), source=str(item["source"]), verified=str(item["verified"]),
                config=dict(item["config"]), param_count=item.get("param_count"),
                aliases=tuple(item.get("aliases", ())),
            )
        except KeyError as exc:
            raise InputError(f"model entry without {exc}", source=str(path)) from None
        for key in (entry.name, *entry.aliases):
            entries[key.lower()] = entry
    return entries


def _catalog_folder() -> Path:
    """``preflight.compat_matrix`` when installed; ``compat_matrix/`` of a checkout that is not (the
    benchmarks run from a bare checkout on GPU machines)."""
    import importlib

    try:
        package = importlib.import_module("preflight.compat_matrix")
        return Path(package.__file__).parent  # type: ignore[arg-type]
    except ImportError:
        return Path(__file__).resolve().parents[2] / "compat_matrix"


def resolve_model(text: str) -> ModelSpec:
    """``--model``: a local config.json, a model folder, or a catalog name."""
    path = Path(text).expanduser()
    if path.exists():
        return load_config(path)
    catalog = load_catalog()
    entry = catalog.get(text.lower())
    if entry is None:
        names = ", ".join(sorted({e.name for e in catalog.values()}))
        looks_like_path = "/" in text or text.endswith(".json")
        what = "no such file or folder, and not" if looks_like_path else "not"
        raise InputError(f"--model {text!r}: {what} a catalog model (known: {names}); "
                         "or give a local config.json or model folder (nothing is downloaded)")
    return spec_from_config(entry.config, name=entry.name, source=entry.source)
