"""Zero-shot classifier, smoothing and scores: against hand computations and the real OphCLIP model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _eval_doubles import OracleModel, OracleTokenizer

from ophclip.eval.zero_shot import (
    build_negative_classifier,
    build_zero_shot_classifier,
    logit_scale_of,
    phase_probabilities,
    smooth_probabilities,
    tool_scores,
)
from ophclip.prompts import PromptSet

PROMPTS = PromptSet("phase", {"cut": ["a knife cut", "an incision"], "phaco": ["ultrasound"]},
                    templates=["a photo of {}.", "we see {}"])


def test_classifier_averages_normalised_text_embeddings():
    model, tok = OracleModel(), OracleTokenizer()
    clf = build_zero_shot_classifier(model, tok, PROMPTS, batch_size=3)
    assert clf.shape == (16, 2)
    for k, name in enumerate(PROMPTS.class_names):
        rows = [model.table[tok.vocab[t]] for t in PROMPTS.texts(name)]
        mean = torch.stack([r / r.norm() for r in rows]).mean(0)
        assert torch.allclose(clf[:, k], mean / mean.norm(), atol=1e-6)
    assert len(PROMPTS.texts("cut")) == 4


def test_phase_probabilities_are_a_scaled_softmax():
    rng = np.random.default_rng(0)
    emb = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(5, 16)), dtype=torch.float32), dim=-1)
    clf = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32), dim=0)
    probs = phase_probabilities(emb, clf, scale=7.0)
    logits = 7.0 * emb.numpy() @ clf.numpy()
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(probs, ref, atol=1e-5)


@pytest.mark.parametrize("window", [1, 2, 3, 5])
def test_smoothing_is_a_moving_average_within_the_video(window):
    rng = np.random.default_rng(window)
    probs = rng.random((12, 4))
    for causal in (False, True):
        got = smooth_probabilities(probs, window, causal=causal)
        ref = np.empty_like(probs)
        for t in range(len(probs)):
            if causal:
                idx = [max(0, i) for i in range(t - window + 1, t + 1)]
            else:
                idx = [min(max(0, i), len(probs) - 1) for i in range(t - window // 2, t - window // 2 + window)]
            ref[t] = probs[idx].mean(0)
        assert np.allclose(got, ref), (window, causal)
        if causal:  # the past never sees the future
            changed = probs.copy()
            changed[8:] = 0
            assert np.allclose(smooth_probabilities(changed, window, True)[:8], got[:8])


def test_tool_scores_contrast_is_a_two_way_softmax():
    model, tok = OracleModel(), OracleTokenizer()
    ps = PromptSet("tools", {"forceps": ["forceps"], "knife": ["a knife"]})
    pos = build_zero_shot_classifier(model, tok, ps)
    neg = build_negative_classifier(model, tok, ps)
    emb = torch.nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(2)), dim=-1)
    got = tool_scores(emb, pos, 10.0, neg, "contrast")
    two_way = torch.softmax(torch.stack([10 * emb @ pos, 10 * emb @ neg]), dim=0)[0]
    assert np.allclose(got, two_way.numpy(), atol=1e-6)
    assert np.allclose(tool_scores(emb, pos, 10.0, scoring="sigmoid"), torch.sigmoid(10 * emb @ pos).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        tool_scores(emb, pos, 10.0, None, "contrast")


def test_centered_tool_scores_remove_the_frame_offset_shared_by_all_tool_prompts():
    """A frame that matches the shared template scores every tool high; centring ranks by the tool itself."""
    g = torch.Generator().manual_seed(3)
    classifier = torch.nn.functional.normalize(torch.randn(16, 3, generator=g), dim=0)
    template = torch.nn.functional.normalize(torch.ones(16), dim=0)
    shared = classifier + template[:, None]  # each tool prompt = its own direction + the shared template
    # Frame 0 shows tool 0 faintly; frame 1 shows no tool but looks strongly like "a frame of eye surgery".
    frames = torch.stack([0.3 * classifier[:, 0], 2.0 * template])
    raw = tool_scores(frames, shared, 10.0, scoring="sigmoid")
    centered = tool_scores(frames, shared, 10.0, scoring="centered")
    assert raw[1, 0] > raw[0, 0]  # uncorrected, the tool-less frame outranks the frame with the tool
    assert centered[0, 0] > centered[1, 0]
    logits = 10.0 * frames @ shared
    assert np.allclose(centered, torch.sigmoid(logits - logits.mean(dim=1, keepdim=True)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="expected one of"):
        tool_scores(frames, shared, 10.0, scoring="softmax")


def test_logit_scale_reads_the_log_parameter():
    assert logit_scale_of(OracleModel()) == pytest.approx(10.0)


@pytest.fixture(scope="module")
def tiny():
    import ophclip

    model, _, preprocess = ophclip.create_model_and_transforms("OphCLIP-tiny-MiniLM")
    return model.eval(), preprocess, ophclip.get_tokenizer("OphCLIP-tiny-MiniLM")


def test_classifier_with_the_real_text_tower(tiny):
    model, _, tokenizer = tiny
    clf = build_zero_shot_classifier(model, tokenizer, PROMPTS, batch_size=2)
    assert clf.shape == (model.embed_dim, 2)
    with torch.no_grad():
        for k, name in enumerate(PROMPTS.class_names):
            e = model.encode_text(tokenizer(PROMPTS.texts(name)), normalize=True)  # one batch, no helper
            mean = e.mean(0)
            assert torch.allclose(clf[:, k], mean / mean.norm(), atol=1e-5)
    assert logit_scale_of(model) == pytest.approx(float(model.get_logit_scale().detach()))
