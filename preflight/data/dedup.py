"""Exact and near-duplicate detection in bounded memory: only hashes are kept, never records.

Exact: the hash of the record's text after lower-casing and collapsing whitespace, 8 bytes a
record, matched after the pass (one sort) rather than in a dict of Python integers (100 bytes).

Near: MinHash over character n-grams (5 characters, 3 for text that is mostly CJK, which has no
spaces to split words on), banded LSH to find candidate pairs, then the exact Jaccard similarity
of the two n-gram sets confirms or rejects each candidate, so the threshold means what it says.

- Signature: one-permutation MinHash (Li, Owen & Zhang 2012). The n-gram hashes are sorted once
  and split into 256 bins by their top bits, the minimum of each bin being the first of its
  range: one sort in C per record instead of 256 hash passes.
- Empty bins (short texts) borrow the minimum of another bin, probed in a fixed pseudo-random
  order (optimal densification, Shrivastava 2017), which keeps the estimate unbiased.
- Bands: every ``bands``-th bin (interleaved, so that one short text's borrowed bins do not fill
  a band together). Bands x rows are chosen so that a pair exactly at the threshold becomes a
  candidate with probability >= 0.99 (datasketch's defaults put the S-curve's midpoint above the
  threshold and miss pairs just over it): 32 x 8 at 0.8.
- Kept per record: one 4-byte key per band (a 32-bit collision only adds a candidate that the
  exact check rejects).
"""

from __future__ import annotations

import random
import re
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress, repeat
from operator import is_, itemgetter

from preflight.data import sign_pool
from preflight.data.sign_pool import SignPool

BINS = 256
BIN_BITS = 8  # 2**8 == BINS
SHINGLE = 5
SHINGLE_CJK = 3
CJK_SHARE = 0.3  # a text with this share of CJK characters is shingled by 3
RECALL_AT_THRESHOLD = 0.99
_SHIFT = 32 - BIN_BITS  # the top bits of a 32-bit hash pick its bin
_BIN_IDS = tuple(range(BINS))  # hashes >> _SHIFT give 0..255, in order
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
PROBES = 32  # densification tries per empty bin
_PROBE_ORDER = tuple(tuple(rng.randrange(BINS) for _ in range(BINS))
                     for rng in (random.Random(1000 + k) for k in range(PROBES)))  # [try][bin] -> bin
_MIX1_TIMES = tuple((k * 0xFF51AFD7ED558CCD) % (1 << 64) for k in range(PROBES + BINS + 1))  # k * _MIX1
_FIRST_PROBE = _PROBE_ORDER[0]  # [bin] -> the bin it tries first
_LATER_PROBES = tuple(tuple((attempt, _PROBE_ORDER[attempt][i]) for attempt in range(1, PROBES))
                      for i in range(BINS))  # [bin] -> (try, bin) of the tries after the first
_ALL_BINS = range(BINS)


_ASCII_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f", b" " * 9)  # what str.split() splits on
_ASCII_SPACES_LOWER = _ASCII_SPACES.translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                                              b"abcdefghijklmnopqrstuvwxyz"))  # and lower()


def normalise(text: str) -> str:
    """Lower-cased, whitespace runs as one space: the text two duplicates share. Equal to
    ``" ".join(text.lower().split())``; ASCII text takes a path in bytes that makes no word list."""
    if text.isascii():
        raw = text.encode("ascii").translate(_ASCII_SPACES_LOWER)  # spaces and lower case, one pass
        while b"  " in raw:
            raw = raw.replace(b"  ", b" ")
        return raw.strip(b" ").decode("ascii")
    return " ".join(text.lower().split())


def bands_rows(threshold: float, bins: int = BINS) -> tuple[int, int]:
    """The most rows per band (fewest false candidates) that still make a pair at exactly
    ``threshold`` a candidate with probability >= ``RECALL_AT_THRESHOLD``: 1 - (1 - t^r)^b."""
    best = (bins, 1)
    for rows in range(1, bins + 1):
        bands = bins // rows
        if 1 - (1 - threshold**rows) ** bands >= RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


def shingle_size(text: str) -> int:
    """5 characters, or 3 for a text that is mostly CJK (no spaces; one character carries about
    what a short word does)."""
    if not text.isascii() and len(_CJK.findall(text)) >= CJK_SHARE * len(text):
        return SHINGLE_CJK
    return SHINGLE


def _windows(text: str) -> list[bytes]:
    """The character n-grams of a normalised text as bytes (ASCII, or UTF-32 for other text, so
    that every character is 4 bytes), repeats included; the whole text when it is that short."""
    n = shingle_size(text)
    if text.isascii():
        data, width = text.encode("ascii"), 1
    else:
        data, width = text.encode("utf-32-le"), 4
    size = n * width
    if len(data) <= size:
        return [data]
    return [data[i:i + size] for i in range(0, len(data) - size + 1, width)]


def shingles(text: str) -> set[bytes]:
    """The character n-grams of a normalised text, exactly (the Jaccard similarity is theirs)."""
    return set(_windows(text))


def shingle_hashes(text: str) -> list[int]:
    """32-bit hashes of the n-grams, repeats included (a bin's minimum does not change).

    CRC-32: in C, and the same in every process and on every machine (Python's own ``hash`` of a
    string changes with each process, which made the candidates differ between runs). Though a
    CRC is linear, its minimums estimate the Jaccard similarity without bias on English, Chinese
    and numbered-item texts alike (``tests/test_data_units.py`` measures it)."""
    return list(map(zlib.crc32, _windows(text)))


def signature(hashes: Iterable[int]) -> list[int]:
    """One-permutation MinHash of a set of 32-bit hashes: the minimum of each of ``BINS`` bins."""
    ordered = sorted(hashes)
    return _signature_sorted(ordered)


def _signature_sorted(ordered: list[int]) -> list[int]:
    """:func:`signature` of hashes already in ascending order (repeats allowed)."""
    descending = ordered[::-1]
    firsts = dict(zip(map(_SHIFT.__rrshift__, descending), descending))  # bin (h >> _SHIFT) -> its smallest hash
    values = list(map(firsts.get, _BIN_IDS))
    if len(firsts) < BINS:
        return _densify(values)
    return values


def _densify(values: list) -> list[int]:
    """Fill the empty bins of a short text: each probes other bins in a fixed pseudo-random order
    and borrows the first minimum it finds (optimal densification, Shrivastava 2017; a fixed
    order per bin keeps two texts' choices aligned, and independent orders keep bins from
    borrowing together). Bins still empty after ``PROBES`` tries borrow from the next filled
    bin to the right (rotation densification, Shrivastava & Li 2014)."""
    filled = values[:]
    for i in compress(_ALL_BINS, map(is_, values, repeat(None))):  # the empty bins, picked in C
        borrowed = values[_FIRST_PROBE[i]]
        if borrowed is not None:  # the common case: the first try finds a minimum
            filled[i] = hash((borrowed, 0))
            continue
        for attempt, j in _LATER_PROBES[i]:
            borrowed = values[j]
            if borrowed is not None:
                filled[i] = hash((borrowed, attempt))
                break
        else:
            for distance in range(1, BINS):
                borrowed = values[(i + distance) % BINS]
                if borrowed is not None:
                    filled[i] = hash((borrowed, PROBES + distance - 1))
                    break
    return filled


def jaccard(a: set[int] | frozenset[int], b: set[int] | frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


NO_HASH = 0  # the hash kept for a record without a sample (str hashes are never 0 in practice)


def repeats(hashes: array) -> list[tuple[int, int]]:
    """``(later, first)`` for every record whose hash an earlier one has: exact duplicates,
    found after the pass with one sort (numpy's when installed), in record order."""
    try:
        import numpy as np
    except ImportError:
        first: dict[int, int] = {}
        out = []
        for index, h in enumerate(hashes):
            if h != NO_HASH:
                earlier = first.setdefault(h, index)
                if earlier != index:
                    out.append((index, earlier))
        return out
    values = np.frombuffer(hashes, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = np.zeros(len(ordered), dtype=bool)
    np.equal(ordered[1:], ordered[:-1], out=same[1:])
    same &= ordered != NO_HASH
    if not same.any():
        return []
    start = np.maximum.accumulate(np.where(same, 0, np.arange(len(ordered))))
    pairs = sorted(zip(order[same].tolist(), order[start[same]].tolist()))
    return pairs


def matches(mine: array, theirs: array) -> list[tuple[int, int]]:
    """``(my index, their first index)`` for my hashes that also occur in ``theirs``."""
    wanted = {h for h in mine if h != NO_HASH}
    first: dict[int, int] = {}
    for index, h in enumerate(theirs):
        if h in wanted and h not in first:
            first[h] = index
    return [(index, first[h]) for index, h in enumerate(mine) if h in first]


@dataclass
class LshIndex:
    """Band keys of every record of one split, column by column (8 bytes a band a record)."""

    bands: int
    rows: int
    ids: array = field(default_factory=lambda: array("q"))  # record index of each row
    _columns: list[array] = field(default_factory=list, repr=False)
    _pool: SignPool | None = field(default=None, repr=False)  # pure-Python signing in workers
    _texts: int = 0

    def __post_init__(self) -> None:
        self._columns = [array("I") for _ in range(self.bands)]  # 32-bit: collisions are confirmed anyway

    @property
    def keys(self) -> list[array]:
        """Per band, the key of every row so far (batches still being signed are waited for)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self._extend(pool.finish())
        return self._columns

    def add_batch(self, indices: list[int], texts: list[str]) -> None:
        """Band keys of a batch of normalised texts: with numpy when installed (about 10x faster),
        else in pure Python, in worker processes once there are enough texts to pay for them."""
        if not texts:
            return
        self.ids.extend(indices)
        self._texts += len(texts)
        try:
            import numpy  # noqa: F401 - optional, the fast path
        except ImportError:
            if self._pool is None and self._texts >= sign_pool.POOL_FROM:
                workers = sign_pool.workers_available()
                if workers > 1:
                    self._pool = sign_pool.SignPool(self.bands, self.rows, workers)
            if self._pool is not None:
                self._extend(self._pool.submit(texts))
            else:
                self._extend([band_keys_python(texts, self.bands, self.rows)])
            return
        keys = _band_keys_numpy(texts, self.bands, self.rows)
        for band, column in enumerate(self._columns):
            column.frombytes(keys[:, band].tobytes())

    def _extend(self, batches: list[list[tuple[int, ...]]]) -> None:
        for rows in batches:
            for column, keys in zip(self._columns, zip(*rows)):
                column.extend(keys)

    def candidates(self) -> set[tuple[int, int]]:
        """Pairs ``(later, first)``: records sharing a band with the first record of its bucket."""
        try:
            import numpy as np
        except ImportError:
            return self._candidates_python()
        pairs: set[tuple[int, int]] = set()
        ids = np.frombuffer(self.ids, dtype=np.int64)
        for column in self.keys:
            keys = np.frombuffer(column, dtype=np.uint32)
            order = np.argsort(keys, kind="stable")  # equal keys stay in record order
            ordered = keys[order]
            repeat = np.empty(len(ordered), dtype=bool)
            repeat[:1] = False
            np.equal(ordered[1:], ordered[:-1], out=repeat[1:])
            if not repeat.any():
                continue
            positions = np.arange(len(ordered))
            first = np.maximum.accumulate(np.where(repeat, 0, positions))  # where each bucket starts
            later = ids[order[repeat]]
            firsts = ids[order[first[repeat]]]
            pairs.update(zip(later.tolist(), firsts.tolist()))
        return pairs

    def _candidates_python(self) -> set[tuple[int, int]]:
        pairs: set[tuple[int, int]] = set()
        ids = self.ids
        positions = range(len(ids))
        for column in self.keys:
            keys = column.tolist()
            counts = Counter(keys)
            if len(counts) == len(keys):
                continue
            repeated = set(compress(counts, map((1).__lt__, counts.values())))  # keys seen twice or more
            first: dict[int, int] = {}
            # only the positions whose key repeats, picked in C
            for pos in compress(positions, map(repeated.__contains__, keys)):
                key, here = keys[pos], ids[pos]
                rep = first.setdefault(key, here)
                if rep != here:
                    pairs.add((here, rep))
        return pairs

    def candidates_against(self, other: LshIndex) -> set[tuple[int, int]]:
        """Pairs ``(mine, theirs)`` sharing a band: this split's records near ``other``'s."""
        try:
            import numpy as np
        except ImportError:
            np = None
        pairs: set[tuple[int, int]] = set()
        for mine, theirs in zip(self.keys, other.keys):
            if np is not None:
                pairs.update(_shared_keys_numpy(np, mine, theirs, self.ids, other.ids))
                continue
            common = set(mine).intersection(theirs)
            if not common:
                continue
            where: dict[int, int] = {}
            for pos, key in enumerate(theirs):
                if key in common:
                    where.setdefault(key, other.ids[pos])
            for pos, key in enumerate(mine):
                if key in common:
                    pairs.add((self.ids[pos], where[key]))
        return pairs


def band_keys_python(texts: list[str], bands: int, rows: int) -> list[tuple[int, ...]]:
    """Per normalised text, its ``bands`` 32-bit band keys, in pure Python: the hash of each
    band's ``rows`` bins (every ``bands``-th bin), all gathered and hashed in C."""
    gather, cuts = _band_layout(bands, rows)
    out = []
    for text in texts:
        ordered = shingle_hashes(text)
        ordered.sort()
        bins = gather(_signature_sorted(ordered))  # band by band
        out.append(tuple(map(_AND, map(hash, map(bins.__getitem__, cuts)), _MASKS[:bands])))
    return out


@lru_cache(maxsize=8)
def _band_layout(bands: int, rows: int) -> tuple[itemgetter, tuple[slice, ...]]:
    """The getter of every band's bins in band order (band b: bins b, b + bands, ...; ``rows``
    of them) and the slice of each band in what it returns."""
    order = [i for band in range(bands) for i in range(band, BINS, bands)[:rows]]
    return itemgetter(*order), tuple(slice(b * rows, (b + 1) * rows) for b in range(bands))


_AND = int.__and__
_MASKS = (0xFFFFFFFF,) * BINS  # keys are 32-bit: a collision only adds a candidate the check rejects


def _shared_keys_numpy(np, mine: array, theirs: array, my_ids: array, their_ids: array):  # noqa: ANN001, ANN202
    """(my record, their first record with the same key) for one band, vectorised."""
    mk, tk = np.frombuffer(mine, dtype=np.uint32), np.frombuffer(theirs, dtype=np.uint32)
    common = np.intersect1d(mk, tk)
    if not len(common):
        return []
    t_pos = np.nonzero(np.isin(tk, common))[0]
    keys, first = np.unique(tk[t_pos], return_index=True)  # sorted keys, their first position
    m_pos = np.nonzero(np.isin(mk, common))[0]
    theirs_first = np.frombuffer(their_ids, dtype=np.int64)[t_pos[first]][np.searchsorted(keys, mk[m_pos])]
    return zip(np.frombuffer(my_ids, dtype=np.int64)[m_pos].tolist(), theirs_first.tolist())


def confirm(
    pairs: set[tuple[int, int]],
    texts_a: Iterator[tuple[int, str]],
    texts_b: Iterator[tuple[int, str]] | None,
    threshold: float,
) -> list[tuple[int, int, float]]:
    """The candidate pairs whose exact n-gram Jaccard similarity is >= ``threshold``.

    ``texts_a`` yields ``(index, normalised text)`` of the records named first in the pairs, in
    index order; ``texts_b`` those named second (None: the same split, second < first). The texts
    of partners still needed are held (not their n-gram sets, which are 20-40 times larger); the
    n-gram sets of the most recent partners are cached."""
    if not pairs:
        return []
    by_first: dict[int, list[int]] = {}
    for a, b in pairs:
        by_first.setdefault(a, []).append(b)
    wanted_b = {b for _, b in pairs}
    held: dict[int, str] = {}
    if texts_b is not None:  # another split: hold the partners first
        for index, text in texts_b:
            if index in wanted_b:
                held[index] = text
    uses = Counter(b for _, b in pairs)

    @lru_cache(maxsize=512)
    def partner(b: int) -> frozenset[int]:
        return frozenset(shingles(held[b]))

    confirmed = []
    for index, text in texts_a:
        partners = by_first.get(index)
        if texts_b is None and index in wanted_b:
            held[index] = text
        if partners is None:
            continue
        mine = shingles(text)
        for b in partners:
            similarity = jaccard(mine, partner(b))
            if similarity >= threshold:
                confirmed.append((index, b, similarity))
            uses[b] -= 1
            if not uses[b]:
                del held[b]
    confirmed.sort()
    return confirmed


# --------------------------------------------------------------------------------------------
# the same signature, vectorised over a batch of texts with numpy

_MIX1, _MIX2, _PRIME = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x100000001B3


def _fmix(h):  # noqa: ANN001, ANN202 - numpy uint64 arrays; MurmurHash3's 64-bit finaliser
    h ^= h >> 33
    h *= _MIX1
    h ^= h >> 33
    h *= _MIX2
    h ^= h >> 33
    return h


def _band_keys_numpy(texts: list[str], bands: int, rows: int):  # noqa: ANN202 - numpy int64 (n, bands)
    import numpy as np

    sizes = [shingle_size(t) for t in texts]
    padded = [t if len(t) >= n else t + "\x00" * (n - len(t)) for t, n in zip(texts, sizes)]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    total = len(codes)
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    record = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    offset = np.arange(total, dtype=np.int64) - starts[record]
    n_at = np.repeat(np.asarray(sizes, dtype=np.int64), lengths)
    ext = np.concatenate([codes, np.zeros(SHINGLE, dtype=np.uint64)])
    prime = np.uint64(_PRIME)
    h3 = ext[:total].copy()
    for k in (1, 2):
        h3 = h3 * prime + ext[k:total + k]
    h5 = h3.copy()
    for k in (3, 4):
        h5 = h5 * prime + ext[k:total + k]
    h = np.where(n_at == SHINGLE_CJK, h3, h5) + n_at.astype(np.uint64)
    h = _fmix(h)
    valid = offset <= lengths[record] - n_at
    h, record = h[valid], record[valid]
    key = record * BINS + (h >> np.uint64(64 - BIN_BITS)).astype(np.int64)
    table = np.full(len(texts) * BINS, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(table, key, h)
    table = table.reshape(len(texts), BINS)
    empty = table == np.iinfo(np.uint64).max
    if empty.any():  # densification, as in _densify(): probe in a fixed order, then rotate
        table = _densify_numpy(np, table, empty)
    keys = np.empty((len(texts), bands), dtype=np.uint64)
    for band in range(bands):
        k = table[:, band].copy()
        for row in range(1, rows):
            k = k * prime + table[:, band + row * bands]
        keys[:, band] = _fmix(k)
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _densify_numpy(np, table, empty):  # noqa: ANN001, ANN202 - numpy module and uint64 arrays
    """_densify() for a batch: only the empty cells are touched, and those still empty after each
    try are all that the next try looks at."""
    top = np.iinfo(np.uint64).max
    filled = table.copy()
    rows, cols = np.nonzero(empty)
    orders = np.asarray(_PROBE_ORDER, dtype=np.int64)
    for attempt in range(PROBES + BINS - 1):
        if attempt < PROBES:
            probe = orders[attempt][cols]
        else:  # rotation: the next filled bin to the right
            probe = (cols + (attempt - PROBES + 1)) % BINS
        borrowed = table[rows, probe]
        ok = borrowed != top
        if ok.any():
            filled[rows[ok], cols[ok]] = _fmix(borrowed[ok] + np.uint64(_MIX1_TIMES[attempt + 1]))
            rows, cols = rows[~ok], cols[~ok]
        if not len(rows):
            break
    return filled
