"""Ophthalmic lexicon: correct ASR mishearings of surgical terms and find the terms in a text.

Whisper models trained on general speech turn rare terms into common words
("corny el" for *corneal*, "capsule axis" for *capsulorhexis*). We slide windows of
one to three words over the text and compare each window, with spaces and hyphens
removed, against every term in two ways: the spelling (rapidfuzz ``ratio``) and the
sound (``jellyfish.metaphone`` codes compared with ``ratio``). The window's score is
the mean of the two; a window scoring at least ``threshold`` is replaced by the term.
An exact term always wins, and windows that begin or end with a function word
("the", "of") are not considered, so ordinary phrases are left alone.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jellyfish
from rapidfuzz import fuzz

from .errors import InputError

logger = logging.getLogger(__name__)

MAX_WINDOW_WORDS = 3
MIN_WINDOW_CHARS = 4  # shorter windows match too many terms by accident

FUNCTION_WORDS = frozenset(
    "a an the of to in on at by for with and or but so is are was were be been it its this that these those "
    "we i you he she they them our my your his her their now then here there okay ok just very really "
    "not no yes do does did have has had will would can could should".split()
)

_WORD = re.compile(r"\S+")
_STRIP = re.compile(r"[^a-z0-9]")


def _words(text: str) -> list[str]:
    return [k for k in (_key(w) for w in text.split()) if k]


def _key(text: str) -> str:
    return _STRIP.sub("", text.lower())


@dataclass(frozen=True)
class Term:
    text: str  # canonical spelling, as it should appear after correction
    category: str
    key: str  # lowercase letters and digits only
    sound: str  # metaphone code of the key


@dataclass(frozen=True)
class Correction:
    original: str
    term: str
    score: float


class Lexicon:
    """A list of terms with fuzzy/phonetic correction and term finding."""

    def __init__(
        self,
        terms: list[tuple[str, str]],
        threshold: float = 80.0,
        phonetic: bool = True,
        single_word_threshold: float | None = None,
    ):
        if not terms:
            raise InputError("the lexicon is empty; give at least one term")
        self.threshold = threshold
        self.single_word_threshold = threshold + 8.0 if single_word_threshold is None else single_word_threshold
        self.phonetic = phonetic
        self.terms = [Term(t, c, _key(t), jellyfish.metaphone(_key(t))) for t, c in terms]
        self._exact = {t.key: t for t in self.terms}
        self.max_term_words = max(len(t.text.split()) for t in self.terms)

    @classmethod
    def from_file(cls, path: str | Path | None = None, threshold: float = 80.0, phonetic: bool = True) -> Lexicon:
        """Load ``term<TAB>category`` lines (``#`` comments); None = the shipped ophthalmic lexicon."""
        if path:
            path = Path(path)
            if not path.is_file():
                raise InputError(f"{path}: lexicon file not found (denoise.lexicon_file)")
            text = path.read_text(encoding="utf-8")
            source = str(path)
        else:
            text = resources.files("data_pipeline").joinpath("resources/ophthalmic_lexicon.txt").read_text("utf-8")
            source = "ophthalmic_lexicon.txt"
        terms = []
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            term, _, category = line.partition("\t")
            if not term.strip():
                raise InputError(f"{source}: line {n}: empty term")
            terms.append((term.strip(), category.strip() or "term"))
        return cls(terms, threshold=threshold, phonetic=phonetic)

    # -- matching -------------------------------------------------------------------------
    def score(self, window: str, term: Term) -> float:
        key = _key(window)
        spelling = fuzz.ratio(key, term.key)
        if not self.phonetic:
            return spelling
        return 0.5 * (spelling + fuzz.ratio(jellyfish.metaphone(key), term.sound))

    @functools.lru_cache(maxsize=65536)  # noqa: B019  (one lexicon per run; windows repeat a lot)
    def best_term(self, window: str) -> tuple[Term | None, float]:
        key = _key(window)
        if key in self._exact:
            return self._exact[key], 100.0
        if len(key) < MIN_WINDOW_CHARS:
            return None, 0.0
        best, best_score = None, 0.0
        for term in self.terms:
            # Cheap length filter: ratio can't reach the threshold if lengths differ too much.
            if abs(len(term.key) - len(key)) > max(len(term.key), len(key)) * 0.5:
                continue
            # A prefix is another form of the word ("inject" / "injector"), not a mishearing.
            if term.key.startswith(key) or key.startswith(term.key):
                continue
            s = self.score(window, term)
            if s > best_score:
                best, best_score = term, s
        return best, best_score

    def _best_window(self, tokens: list[str], i: int) -> tuple[float, int, Term] | None:
        """The best (score, n_words, term) for windows starting at token ``i``, or None."""
        choice = None
        for n in range(min(MAX_WINDOW_WORDS, len(tokens) - i), 0, -1):
            words = tokens[i : i + n]
            if _key(words[0]) in FUNCTION_WORDS or _key(words[-1]) in FUNCTION_WORDS:
                continue
            term, s = self.best_term(" ".join(words))
            # One word needs a closer match: "inject" must not become "injector".
            needed = self.single_word_threshold if n == 1 else self.threshold
            if term is None or s < needed:
                continue
            if choice is None or (s, n) > choice[:2]:
                choice = (s, n, term)
        return choice

    def correct(self, text: str) -> tuple[str, list[Correction]]:
        """Return ``text`` with misheard terms replaced, and the list of replacements made."""
        tokens = _WORD.findall(text)
        out: list[str] = []
        corrections: list[Correction] = []
        i = 0
        while i < len(tokens):
            choice = self._best_window(tokens, i)
            if choice is not None and choice[0] < 100.0:
                # A better match starting inside this window means this token is not part
                # of a term ("tone the faco-mulsification": the term starts two words later).
                for j in range(i + 1, i + choice[1]):
                    inner = self._best_window(tokens, j)
                    if inner is not None and inner[0] > choice[0]:
                        choice = None
                        break
            if choice is None:
                out.append(tokens[i])
                i += 1
                continue
            s, n, term = choice
            original = " ".join(tokens[i : i + n])
            trail = re.search(r"[^\w]*$", tokens[i + n - 1]).group(0)
            lead = re.match(r"^[^\w]*", tokens[i]).group(0)
            if s >= 100.0 and _words(original) == _words(term.text):
                out.append(original)  # the term as written (up to case/punctuation): keep it
            else:
                text = term.text
                if original[len(lead) : len(lead) + 1].isupper() and text[:1].islower():
                    text = text[:1].upper() + text[1:]  # keep a sentence-initial capital
                out.append(f"{lead}{text}{trail}")
                corrections.append(Correction(original, term.text, round(s, 1)))
            i += n
        return " ".join(out), corrections

    def find_terms(self, text: str) -> list[str]:
        """Canonical terms that occur exactly (case- and punctuation-insensitive) in ``text``, longest first."""
        tokens = [_key(t) for t in _WORD.findall(text)]
        found: list[str] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_term_words, len(tokens) - i), 0, -1):
                term = self._exact.get("".join(tokens[i : i + n]))
                if term is not None and all(tokens[i : i + n]):
                    found.append(term.text)
                    i += n
                    break
            else:
                i += 1
        return found


_FILLERS = re.compile(r"\b(?:um+|uh+|erm+|hmm+|ah+)\b[,.]?\s*", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Collapse whitespace, drop filler sounds and repeated words, and start with a capital."""
    text = _FILLERS.sub("", text)
    words = text.split()
    deduped = [w for k, w in enumerate(words) if k == 0 or _key(w) != _key(words[k - 1]) or not _key(w)]
    text = " ".join(deduped).strip()
    return text[:1].upper() + text[1:] if text else text
