"""Token counts: exact with a local tokenizer (``tokenizers`` or ``transformers``), else an
estimate per script, always labelled as one.

The estimate: 4 characters per token for ASCII text (OpenAI's rule of thumb for English, close
to the LLaMA-3, Qwen2 and GPT-4 tokenizers on prose); 1 token per CJK character (Han, kana,
hangul: LLaMA-3 and Qwen2 spend 0.7-1.5 tokens per Chinese character, older LLaMA-2 vocabularies
up to 2, so 1 errs on neither side by much; every character of 3 or 4 UTF-8 bytes counts so);
2 characters per token for the 2-byte scripts (Cyrillic, Greek, Arabic, Hebrew, accented Latin
words split more often). Chat templates add tokens per
turn (``<|im_start|>user\\n ... <|im_end|>\\n`` is 5 in ChatML): ``TEMPLATE_TOKENS_PER_TURN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.errors import InputError

TEMPLATE_TOKENS_PER_TURN = 5
ASCII_CHARS_PER_TOKEN = 4
OTHER_CHARS_PER_TOKEN = 2


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring for the rates and their sources).

    Counted from the UTF-8 length, without looking at characters one by one: 2-byte characters
    (accented Latin, Greek, Cyrillic, Hebrew, Arabic) count 1/2 token, 3- and 4-byte ones (CJK,
    kana, hangul, Thai, Indic, emoji, typographic quotes) 1 token each."""
    n = len(text)
    if text.isascii():
        return (n + ASCII_CHARS_PER_TOKEN - 1) // ASCII_CHARS_PER_TOKEN
    ascii_chars = len(text.encode("ascii", errors="ignore"))
    extra = len(text.encode("utf-8", errors="surrogatepass")) - n  # 1 per 2-byte char, 2 per 3-byte char
    others = n - ascii_chars
    wide = max(0, extra - others)  # 3-byte (and 4-byte) characters
    two_byte = max(0, others - wide)
    return (wide + (ascii_chars + ASCII_CHARS_PER_TOKEN - 1) // ASCII_CHARS_PER_TOKEN
            + (two_byte + OTHER_CHARS_PER_TOKEN - 1) // OTHER_CHARS_PER_TOKEN)


@dataclass
class TokenCounter:
    """Counts tokens; ``exact`` says whether a real tokenizer does it. ``per_turn`` and
    ``per_sample`` are the chat template's tokens around each turn and once per sample: measured
    from the tokenizer's ``chat_template`` when it has one, else ChatML's 5 per turn (assumed)."""

    exact: bool
    label: str  # "estimate (4 chars/token ASCII, 1/CJK character)" or the tokenizer's path
    _encode_batch: Any = None  # list[str] -> list[int], for a real tokenizer
    per_turn: int = TEMPLATE_TOKENS_PER_TURN
    per_sample: int = 0
    template: str = f"+{TEMPLATE_TOKENS_PER_TURN} per turn (assumed: ChatML's <|im_start|>role ... <|im_end|>)"

    def count(self, text: str) -> int:
        if self._encode_batch is None:
            return estimate_tokens(text)
        return self._encode_batch([text])[0]

    def count_batch(self, texts: list[str]) -> list[int]:
        """Counts of many texts at once: a real tokenizer encodes a batch in parallel, in Rust."""
        if self._encode_batch is None:
            return list(map(estimate_tokens, texts))
        return self._encode_batch(texts)


ESTIMATE = TokenCounter(False, "estimate: 4 ASCII characters or 1 CJK character per token, "
                               f"+{TEMPLATE_TOKENS_PER_TURN} per turn")

# files that make a folder a tokenizer (transformers reads the others through tokenizer_config.json)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tiktoken.model",
                    "spiece.model", "sentencepiece.bpe.model")


def _hub_cache(repo_id: str) -> Path | None:
    """The folder of ``repo_id``'s newest cached snapshot holding a tokenizer.json in the local
    Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``/hub or ~/.cache/huggingface/hub), or None.
    Only read: nothing is downloaded."""
    import os

    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"),
             os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None,
             os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")]
    folder = "models--" + repo_id.replace("/", "--")
    for root in filter(None, roots):
        snapshots = Path(root) / folder / "snapshots"
        ref = Path(root) / folder / "refs" / "main"
        try:
            named = [snapshots / ref.read_text().strip()] if ref.is_file() else []
            found = named + sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            continue
        for snapshot in found:
            if (snapshot / "tokenizer.json").is_file():
                return snapshot
    return None


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "~"))
            and all(c.isalnum() or c in "-_." for c in text.replace("/", "")))


def load_tokenizer(path: Path) -> TokenCounter:
    """A local tokenizer: a ``tokenizer.json`` (through ``tokenizers``), a model folder (through
    ``tokenizers``, else ``transformers`` with ``local_files_only``), or a Hub id already in the
    local Hugging Face cache. Never downloads."""
    source = str(path)
    if not path.exists():
        if _looks_like_hub_id(source):
            cached = _hub_cache(source)
            if cached is None:
                raise InputError(
                    "not a local path, and not in the Hugging Face cache: --tokenizer reads local files only and "
                    f"never downloads; fetch it with `huggingface-cli download {source} tokenizer.json "
                    f"tokenizer_config.json --local-dir ./{source.split('/')[1]}` and pass that folder", source=source)
            path = cached
        else:
            raise InputError("no such tokenizer file or folder", source=source)
    if path.is_dir() and not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise InputError("not a tokenizer folder: no tokenizer.json (nor tokenizer.model, vocab.json, vocab.txt) "
                         "in it", source=source)
    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        from tokenizers import Tokenizer
    except ImportError:
        Tokenizer = None  # noqa: N806 - the class, when installed
    if Tokenizer is not None and file.is_file():
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # noqa: BLE001 - the Rust side raises its own Exception type
            raise InputError("not a tokenizer.json: " + " ".join(str(exc).split())[:300], source=str(file)) from None
        counter = TokenCounter(True, f"exact ({file})", lambda texts: [
            len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)])
        return _with_template(counter, file.parent)
    sentencepiece_only = path.is_dir() and (path / "tokenizer.model").is_file() and not file.is_file()
    sentencepiece = InputError("only a SentencePiece tokenizer.model, which this environment cannot read (pip install "
                               "sentencepiece transformers), or a tokenizer.json beside it", source=source)
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        if sentencepiece_only:
            raise sentencepiece from None
        raise InputError("--tokenizer needs the tokenizers or transformers package (pip install tokenizers)",
                         source=source) from None
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its multi-line warnings about missing converters; the error says it
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, ...
        if sentencepiece_only:
            raise sentencepiece from None
        raise InputError("cannot load a tokenizer from it: " + " ".join(str(exc).split())[:300], source=source) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    counter = TokenCounter(True, f"exact ({path})", lambda texts: [
        len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]])
    return _with_template(counter, path if path.is_dir() else path.parent)


def _chat_template(folder: Path) -> tuple[str, str] | None:
    """The default chat template of a model folder and where it was found: ``chat_template.jinja``
    (transformers >= 4.43 saves it there) or ``tokenizer_config.json``'s ``chat_template`` (a string,
    or a list of named templates whose ``default`` is used)."""
    import json

    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8"), jinja.name
        except (OSError, ValueError):
            return None
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if not isinstance(template, str) or not template.strip():
        return None
    return template, "tokenizer_config.json's chat_template"


def _special_tokens(folder: Path) -> dict[str, str]:
    """``bos_token`` and ``eos_token`` of ``tokenizer_config.json`` (strings or ``{"content": ...}``),
    which templates write with ``{{ bos_token }}``."""
    import json

    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    tokens = {}
    for key in ("bos_token", "eos_token"):
        value = config.get(key) if isinstance(config, dict) else None
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[key] = value
    return tokens


def _with_template(counter: TokenCounter, folder: Path) -> TokenCounter:
    """Measure the chat template's own tokens: render conversations of one and two exchanges with
    one-word turns, count them, take the turns' words away. What grows with the turns is per turn;
    the rest (a BOS token, a default system prompt such as Qwen2.5's) is per sample. Without a
    template, or where it cannot be rendered here (no jinja2, a template that raises), ChatML's 5
    per turn is assumed, and the label says so."""
    found = _chat_template(folder)
    if found is None:
        counter.template = f"+{TEMPLATE_TOKENS_PER_TURN} per turn (assumed, ChatML: no chat_template found)"
        return counter
    template, where = found
    specials = {"bos_token": "", "eos_token": "", **_special_tokens(folder)}
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: "")
        compiled = env.from_string(template)
        word = {"user": "hello", "assistant": "world"}

        def overhead(exchanges: int) -> int:
            turns = [{"role": r, "content": word[r]} for _ in range(exchanges) for r in ("user", "assistant")]
            text = compiled.render(messages=turns, add_generation_prompt=False, **specials)
            rendered, *words = counter.count_batch([text] + [t["content"] for t in turns])
            return rendered - sum(words)

        one, two = overhead(1), overhead(2)
    except Exception as exc:  # noqa: BLE001 - jinja2 missing, a template error, raise_exception
        counter.template = (f"+{TEMPLATE_TOKENS_PER_TURN} per turn (assumed, ChatML: the {where} could not be "
                            f"rendered here: {' '.join(str(exc).split())[:120]})")
        return counter
    per_turn = max(0, (two - one) // 2)
    counter.per_turn, counter.per_sample = per_turn, max(0, one - 2 * per_turn)
    counter.template = (f"+{counter.per_turn} per turn and +{counter.per_sample} per sample, measured from the "
                        f"{where}")
    return counter


def truncation(prompt_tokens: int, answer_tokens: int, max_tokens: int) -> str:
    """What a trainer does to a sample over ``max_tokens``. TRL's SFTTrainer keeps the start
    (``truncation_mode="keep_start"``, ``max_length=1024`` by default), so the end goes, which is
    the answer; LLaMA-Factory (``cutoff_len`` 2048) shortens prompt and answer in proportion;
    Axolotl drops the sample (``excess_length_strategy: drop``)."""
    over = prompt_tokens + answer_tokens - max_tokens
    if prompt_tokens >= max_tokens:
        return f"the prompt alone ({prompt_tokens}) fills the window: keeping the start leaves no answer token"
    return f"keeping the start cuts the answer's last {over} of {answer_tokens} tokens"


def too_long(prompt_tokens: int, answer_tokens: int, longest: int, max_tokens: int) -> str:
    """The detail of a too-long sample. ``longest`` is the longer answer of a preference pair
    (TRL's DPOTrainer truncates prompt + chosen and prompt + rejected each to ``max_length``), else
    the answer's own count."""
    if longest == answer_tokens:
        return f"{prompt_tokens + answer_tokens} tokens: " + truncation(prompt_tokens, answer_tokens, max_tokens)
    return (f"{prompt_tokens + longest} tokens with the rejected answer ({prompt_tokens + answer_tokens} with the "
            "chosen one): " + truncation(prompt_tokens, longest, max_tokens))
