"""Lexicon correction, normalisation, relevance, guards, narrated/silent and clip segmentation."""

from __future__ import annotations

import math

import pytest

from data_pipeline.config import ASRConfig, DenoiseConfig, SpeechConfig
from data_pipeline.lexicon import Lexicon, normalize_text
from data_pipeline.records import Segment, Word
from data_pipeline.relevance import RelevanceFilter
from data_pipeline.segment import Sentence, merge_into_clips, split_sentences
from data_pipeline.speech import classify, speech_seconds
from data_pipeline.transcribe import (
    KEPT,
    LOW_LOGPROB,
    NO_SPEECH,
    REPETITIVE,
    apply_guards,
    compression_ratio,
)


@pytest.fixture(scope="module")
def lexicon():
    return Lexicon.from_file()


@pytest.mark.parametrize(
    "heard,expected",
    [
        ("The corny el incision is made.", "The corneal incision is made."),
        ("We make the capsule axis now.", "We make the capsulorhexis now."),
        ("Then the capsulor exes is completed.", "Then the capsulorhexis is completed."),
        ("Fakomulsification of the nucleus.", "Phacoemulsification of the nucleus."),
        ("Inject tri pan blue under air.", "Inject trypan blue under air."),
        ("Try pan blue stains the capsule.", "Trypan blue stains the capsule."),
        ("Hydro dissection with a cannula.", "Hydrodissection with a cannula."),
    ],
)
def test_mishearings_become_terms(lexicon, heard, expected):
    assert lexicon.correct(heard)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "I had coffee this morning and the weather is nice.",
        "Did you watch the football game last night?",
        "Okay the iris looks fine here.",
        "We inject it slowly.",  # "inject" must not become "injector"
        "The Irish pub was full.",
    ],
)
def test_ordinary_speech_is_left_alone(lexicon, text):
    corrected, corrections = lexicon.correct(text)
    assert corrected == text and corrections == []


def test_find_terms_longest_first(lexicon):
    assert lexicon.find_terms("The intraocular lens goes into the capsular bag; lens is clear.") == [
        "intraocular lens", "capsular bag", "lens"]


def test_custom_lexicon_file(tmp_path):
    f = tmp_path / "lex.txt"
    f.write_text("# comment\nvitrector\tinstrument\n")
    lx = Lexicon.from_file(f)
    assert lx.correct("the vitrek tor cuts")[0] == "the vitrector cuts"
    with pytest.raises(Exception, match="lexicon file not found"):
        Lexicon.from_file(tmp_path / "missing.txt")


def test_normalize_text():
    assert normalize_text("  um so the the  lens, uh, is in ") == "So the lens, is in"


def test_relevance_lexicon_and_classifier(lexicon):
    f = RelevanceFilter(DenoiseConfig(), lexicon)
    keep, scores = f.keep(["The keratome makes the incision.", "Nice weather today.",
                           "Can you move the microscope up?", "More BSS please, the anterior chamber is shallow."])
    assert keep == [True, False, False, True] and scores == [2.0, 0.0, 0.0, 1.0]
    bad = RelevanceFilter(DenoiseConfig(relevance="classifier", classifier="builtins:len"), lexicon)
    with pytest.raises(Exception, match="returned int; expected one float per sentence"):
        bad.keep(["a", "b"])


def test_pluggable_classifier(tmp_path, monkeypatch, lexicon):
    (tmp_path / "my_relevance.py").write_text(
        "def score(texts):\n    return [1.0 if 'lens' in t else 0.0 for t in texts]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = RelevanceFilter(DenoiseConfig(relevance="classifier", classifier="my_relevance:score"), lexicon)
    assert f.keep(["the lens", "weather"]) == ([True, False], [1.0, 0.0])
    with pytest.raises(Exception, match="cannot be imported"):
        RelevanceFilter(DenoiseConfig(relevance="classifier", classifier="no_such_mod:f"), lexicon)


def test_relevance_none(lexicon):
    none = RelevanceFilter(DenoiseConfig(relevance="none"), lexicon)
    assert none.keep(["x"])[0] == [True]


def test_guards_follow_whispers_rules():
    cfg = ASRConfig()
    segs = [
        Segment(0, 1, "fine", avg_logprob=-0.3, no_speech_prob=0.1),
        Segment(1, 2, "silence hallucination", avg_logprob=-1.5, no_speech_prob=0.9),
        # high no-speech prob but confident decoding: whisper keeps it
        Segment(2, 3, "confident", avg_logprob=-0.2, no_speech_prob=0.9),
        Segment(3, 4, "unsure", avg_logprob=-1.2, no_speech_prob=0.1),
        Segment(4, 5, "the the the the the the the the the the the the the the the the", avg_logprob=-0.2,
                no_speech_prob=0.0),
        Segment(5, 6, "caption", ),  # NaN scores pass
    ]
    assert [r for _, r in apply_guards(segs, cfg)] == [KEPT, NO_SPEECH, KEPT, LOW_LOGPROB, REPETITIVE, KEPT]


def test_compression_ratio_matches_zlib():
    import zlib

    text = "abc " * 50
    assert compression_ratio(text) == pytest.approx(len(text) / len(zlib.compress(text.encode())))


def test_speech_seconds_union_and_classify():
    segs = [Segment(0, 2, "a"), Segment(1, 3, "b"), Segment(10, 11, "c")]
    assert speech_seconds(segs) == pytest.approx(4.0)
    assert classify(segs, 20.0, SpeechConfig(min_speech_coverage=0.15, min_speech_s=2))[0] == "narrated"
    assert classify(segs, 40.0, SpeechConfig(min_speech_coverage=0.15, min_speech_s=2))[0] == "silent"
    assert classify([], 0.0, SpeechConfig())[0] == "silent"


def test_split_sentences_uses_word_times():
    words = [Word(0.0, 0.4, "Open"), Word(0.5, 0.9, "here."), Word(2.0, 2.5, "Then"), Word(2.6, 3.1, "close.")]
    seg = Segment(0.0, 3.2, "Open here. Then close.", words=words)
    got = [(s.start, s.end, s.text) for s in split_sentences(seg)]
    assert got == [(0.0, 0.9, "Open here."), (2.0, 3.1, "Then close.")]


def test_split_sentences_without_words_shares_time_by_characters():
    seg = Segment(10.0, 20.0, "Aaaa. Bbbbbbbbbbbbbb.")
    a, b = split_sentences(seg)
    assert (a.start, b.end) == (10.0, 20.0)
    assert a.end == pytest.approx(10.0 + 10.0 * 5 / 20)


def _brute_force_ok(clips, sentences, min_s, max_s, gap):
    # Every sentence's text appears in exactly one clip, in order; clip bounds are sentence bounds.
    joined = " ".join(c.text for c in clips)
    assert joined == " ".join(s.text for s in sentences)
    starts = {s.start for s in sentences}
    ends = {s.end for s in sentences}
    for c in clips:
        assert c.start in starts and c.end in ends
        assert c.end - c.start <= max_s + 1e-9


def test_merge_into_clips_bounds():
    sents = [Sentence(0, 1.5, "a.", 0), Sentence(1.7, 3.0, "b.", 0), Sentence(3.2, 5.0, "c.", 0),
             Sentence(12.0, 13.0, "d.", 1), Sentence(13.5, 14.0, "e.", 1), Sentence(14.2, 30.0, "f.", 1)]
    clips = merge_into_clips(sents, 4.0, 20.0, 3.0)
    # a+b+c reach >= 4 s; d is 7 s after c (gap > 3 s) so it starts a new clip; d+e+f would be
    # 18 s (<= 20), merged because d+e is still short.
    assert [(c.start, c.end, c.text) for c in clips] == [(0, 5.0, "a. b. c."), (12.0, 30.0, "d. e. f.")]
    _brute_force_ok(clips, sents, 4.0, 20.0, 3.0)


def test_long_sentence_is_cut_at_the_cap():
    s = Sentence(0.0, 45.0, " ".join(f"w{i}" for i in range(30)), 0)
    clips = merge_into_clips([s], 4.0, 20.0, 3.0)
    assert len(clips) == 3 and all(math.isclose(c.end - c.start, 15.0) for c in clips)
    assert " ".join(c.text for c in clips) == s.text
