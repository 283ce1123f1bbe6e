"""Text defects a model would learn: mojibake, lost characters, control characters, HTML
remnants and runaway repetition.

Mojibake is found by explicit patterns, never by "ftfy would change it" (ftfy also rewrites
full-width CJK punctuation, so that is no detector for Chinese; reference notes §1.9):
UTF-8 read as cp1252 or latin-1 (``donâ€™t``, ``Ã©``, ``ä¸­``), UTF-8 read as GBK (``浣犲ソ`` for
你好, confirmed by a GBK→UTF-8 round trip), and the unrecoverable ones: U+FFFD and ``锟斤拷``
(U+FFFD's UTF-8 bytes read as GBK). One cheap gate regex runs on every text; the specific
patterns run only on texts it lets through.
"""

from __future__ import annotations

import re

from preflight.data.records import Problem

# UTF-8 continuation bytes 0x80-0xBF as cp1252 shows them (0x80-0x9F are letters there)
_CP1252_CONT = "\x80-\xbf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_LATIN_MOJIBAKE = re.compile(
    "â€|â„¢"  # ’ “ ” – — … ™ as cp1252
    f"|Ã[{_CP1252_CONT}]"  # é è ü ... (two-byte sequences starting 0xC3)
    "|Â[\xa0-\xbf]"  # nbsp © ® ° ...
    f"|[\xe4-\xe9][{_CP1252_CONT}]{{2}}"  # CJK (three-byte sequences 0xE4-0xE9 ...) as latin-1/cp1252
)
# characters UTF-8 Chinese turns into when read as GBK: the lead bytes 0xE4-0xE9 make these, and
# they are rare in real text (锛/銆 are ，/。 misread, 鐨 的, 鏄 是, 鍦 在, 鎴 我, 浣 你)
_GBK_MARKERS = "锛銆鐨鏄鍦鎴浣涓浜鍙鍚鍏鍐瑙杩澶浠缁鏀鏂甯璁鐢鏃骞瀛"
_GBK_MARK = re.compile(f"[{_GBK_MARKERS}]")
_CJK_RUN = re.compile("[\u3000-\u9fff\uff00-\uffef\u2000-\u206f\ue000-\uf8ff\ufffd]{2,}")
_LOST = re.compile("\ufffd|锟斤拷|烫烫烫|屯屯屯")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HTML = re.compile(r"</?(?:p|div|span|br|a|b|i|u|em|strong|font|li|ul|ol|table|tbody|tr|td|th|img|h[1-6]|"
                   r"script|style|iframe|html|body|head)(?:\s[^<>]{0,200})?/?>"
                   r"|&(?:nbsp|amp|lt|gt|quot|apos|#\d{1,6}|#x[0-9a-fA-F]{1,6});", re.IGNORECASE)
_GATE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd<&âÃÂ\xe4-\xe9锟烫屯{_GBK_MARKERS}]")

_WORD = re.compile(r"[^\W_]")  # a letter or digit, any script
_ASCII_SAFE = bytes(b for b in range(128) if b not in b"<&\x7f" and (b >= 0x20 or b in b"\t\n\r"))
REPEAT_MIN_CHARS = 100  # texts shorter than this are not checked for runaway repetition
REPEAT_MAX_PERIOD = 400  # longer units are not looked for
REPEAT_PROBE = 20  # characters of the probe
REPEAT_UNITS = 5  # a unit repeated this often in a row ...
REPEAT_SPAN = 100  # ... over at least this many characters is a loop
REPEAT_COUNT_CAP = 10_000  # repeats counted at most


def quality_problems(text: str, is_ascii: bool | None = None) -> list[Problem]:
    """The defects of one text, each as ``(rule id, detail)`` (``is_ascii``: already known)."""
    problems: list[Problem] = []
    if text.isascii() if is_ascii is None else is_ascii:  # ASCII can only hold control characters and HTML: checked in bytes, in C
        suspect = bool(text.encode("ascii").translate(None, _ASCII_SAFE))
    else:
        suspect = _GATE.search(text) is not None
    if suspect:
        _encoding(text, problems)
        m = _CONTROL.search(text)
        if m is not None:
            problems.append(("data.control_chars", f"{m.group()!r} at character {m.start()}"))
        if "```" not in text:  # code samples show HTML on purpose
            m = _HTML.search(text)
            if m is not None:
                problems.append(("data.html_remnants", f"{_snippet(text, m.start(), m.end())}"))
    if len(text) >= REPEAT_MIN_CHARS:
        detail = runaway_repetition(text)
        if detail:
            problems.append(("data.repetition", detail))
    return problems


def _encoding(text: str, problems: list[Problem]) -> None:
    m = _LOST.search(text)
    if m is not None:
        what = "U+FFFD" if m.group() == "\ufffd" else repr(m.group())
        problems.append(("data.replacement_char", f"{what} at character {m.start()}: {_snippet(text, m.start(), m.end())}"))
    m = _LATIN_MOJIBAKE.search(text)
    if m is not None:
        problems.append(("data.mojibake", _latin_detail(text, m.start(), m.end())))
        return
    if _GBK_MARK.search(text) is None:
        return
    for m in _CJK_RUN.finditer(text):
        if _GBK_MARK.search(m.group()) is None:
            continue
        repaired = _gbk_repair(m.group())
        if repaired:
            problems.append(("data.mojibake", f"{_snippet(text, m.start(), m.end())} reads as {repaired!r} "
                                              "(UTF-8 decoded as GBK)"))
            return


def _gbk_repair(run: str) -> str:
    """The text ``run`` was before UTF-8 bytes were decoded as GBK, or ``""`` when it is real text."""
    try:
        raw = run.encode("gbk", errors="ignore")
    except LookupError:  # pragma: no cover - gbk ships with CPython
        return ""
    decoded = raw.decode("utf-8", errors="replace")
    good = sum(1 for c in decoded if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef")
    if good >= 2 and decoded.count("\ufffd") * 3 <= len(decoded):
        return decoded.replace("\ufffd", "")[:20]
    return ""


def _latin_detail(text: str, start: int, end: int) -> str:
    lo, hi = max(0, start - 3), min(len(text), end + 3)
    for codec, name in (("cp1252", "cp1252"), ("latin-1", "latin-1")):
        for a, b in ((start, end), (start, min(len(text), end + 1)), (lo, hi)):
            try:
                fixed = text[a:b].encode(codec).decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            return f"{text[a:b]!r} reads as {fixed!r} (UTF-8 decoded as {name})"
    return f"{_snippet(text, start, end)} (UTF-8 decoded as cp1252/latin-1)"


def _snippet(text: str, start: int, end: int, context: int = 12) -> str:
    lo, hi = max(0, start - context), min(len(text), end + context)
    return repr(("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else ""))


def runaway_repetition(text: str) -> str:
    """A piece of the text repeated over and over (a generation loop saved as data), or ``""``.

    Two probes of 20 characters: the end of the text (a loop that ran to the length limit ends
    it) and its middle. Each probe's neighbouring occurrence (``find``/``rfind``, in C) gives the
    loop's period; the unit is then matched forwards and backwards while it repeats. 5 or more
    repeats covering 100+ characters count. Units without a letter or digit (rules of ``-``,
    table borders) are ignored. Data-Juicer's character_repetition_filter (rep_len 10,
    max_ratio 0.5) catches the same class of sample with a costlier n-gram count."""
    body = text.rstrip() if text[-1:].isspace() else text
    n = len(body)
    # the end probe's previous occurrence; one more than REPEAT_MAX_PERIOD back is no loop's
    # (_loop_at would reject it), so the search starts there
    before = body.rfind(body[n - REPEAT_PROBE:], max(0, n - REPEAT_PROBE - REPEAT_MAX_PERIOD), n - 1)
    if before >= 0:
        found = _loop_at(body, before)
        if found:
            return found
    start = n // 2
    # _loop_at's first test, inlined for the common text (no loop): the middle probe recurs
    # within REPEAT_MAX_PERIOD characters, or there is nothing to look at
    if body.find(body[start:start + REPEAT_PROBE], start + 1, start + REPEAT_MAX_PERIOD + REPEAT_PROBE) < 0:
        return ""
    return _loop_at(body, start)


def _loop_at(body: str, start: int) -> str:
    probe = body[start:start + REPEAT_PROBE]
    # an occurrence further than REPEAT_MAX_PERIOD away is no loop: looked for no further
    following = body.find(probe, start + 1, start + REPEAT_MAX_PERIOD + REPEAT_PROBE)
    if len(probe) < REPEAT_PROBE or following < 0:
        return ""
    period = following - start
    unit = body[start:following]
    repeats, pos = 1, following
    while repeats < REPEAT_COUNT_CAP and body.startswith(unit, pos):
        repeats, pos = repeats + 1, pos + period
    pos = start - period
    while repeats < REPEAT_COUNT_CAP and pos >= 0 and body.startswith(unit, pos):
        repeats, pos = repeats + 1, pos - period
    if repeats < REPEAT_UNITS or repeats * period < REPEAT_SPAN or _WORD.search(unit) is None:
        return ""
    shown = unit if len(unit) <= 40 else unit[:40] + "…"
    return f"{shown!r} repeated {repeats}{'+' if repeats >= REPEAT_COUNT_CAP else ''} times in a row"
