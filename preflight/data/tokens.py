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
    """Counts tokens; ``exact`` says whether a real tokenizer does it."""

    exact: bool
    label: str  # "estimate (4 chars/token ASCII, 1/CJK character)" or the tokenizer's path
    _encode_batch: Any = None  # list[str] -> list[int], for a real tokenizer

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


def load_tokenizer(path: Path) -> TokenCounter:
    """A local tokenizer: a ``tokenizer.json`` (through ``tokenizers``) or a model folder (through
    ``tokenizers``, else ``transformers`` with ``local_files_only``). Never downloads."""
    source = str(path)
    if not path.exists():
        raise InputError("no such tokenizer file or folder", source=source)
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
        return TokenCounter(True, f"exact ({file})", lambda texts: [
            len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)])
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("--tokenizer needs the tokenizers or transformers package (pip install tokenizers)",
                         source=source) from None
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, ...
        raise InputError("cannot load a tokenizer from it: " + " ".join(str(exc).split())[:300], source=source) from None
    return TokenCounter(True, f"exact ({path})", lambda texts: [
        len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]])


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
