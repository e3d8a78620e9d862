"""Losses against open_clip's ClipLoss and against plain-loop reference implementations written here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss

from ophclip.errors import ConfigError, ModelError
from ophclip.loss import ClipLoss, HierarchicalLoss, LossCfg, mean_text_per_video
from ophclip.memory import RetrievalCfg


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ---- reference implementations: explicit loops over rows, log-sum-exp by hand ----------


def ref_row_ce(logits_row: list[float], target: dict[int, float], allowed: set[int]) -> float:
    """-sum_j t_j log( exp(l_j) / sum_{k in allowed} exp(l_k) )."""
    denom = math.log(sum(math.exp(logits_row[k]) for k in allowed))
    return -sum(w * (logits_row[j] - denom) for j, w in target.items())


def ref_infonce(a, b, scale, ids=None, mode="negative") -> float:
    n = a.shape[0]
    sim = [[float(a[i] @ b[j]) * scale for j in range(n)] for i in range(n)]
    total = 0.0
    for direction in ("ab", "ba"):
        for i in range(n):
            row = [sim[i][j] if direction == "ab" else sim[j][i] for j in range(n)]
            same = [j for j in range(n) if ids is not None and ids[j] == ids[i]]
            if mode == "negative" or ids is None:
                total += ref_row_ce(row, {i: 1.0}, set(range(n)))
            elif mode == "ignore":
                allowed = {j for j in range(n) if j == i or j not in same}
                total += ref_row_ce(row, {i: 1.0}, allowed)
            else:
                total += ref_row_ce(row, {j: 1.0 / len(same) for j in same}, set(range(n)))
    return total / (2 * n)


def ref_weights(scores_row, tau):
    valid = [
        k for k, s in enumerate(scores_row) if math.isfinite(s) and s > -1e30
    ]  # -inf or faiss -FLT_MAX: missing
    if not valid:
        return {}
    z = sum(math.exp(scores_row[k] / tau) for k in valid)
    return {k: math.exp(scores_row[k] / tau) / z for k in valid}


def ref_soft_positive(videos, titles, neighbours, scores, scale, tau) -> float:
    n, k = scores.shape
    total = 0.0
    for i in range(n):
        w = ref_weights(scores[i].tolist(), tau)
        if not w:
            continue
        terms = {("nb", j): float(titles[i] @ neighbours[i, j]) * scale for j in w}
        terms.update({("v", j): float(titles[i] @ videos[j]) * scale for j in range(n) if j != i})
        denom = math.log(sum(math.exp(v) for v in terms.values()))
        total += -sum(w[j] * (terms[("nb", j)] - denom) for j in w)
    return total / n


def ref_feature_aug(videos, titles, neighbours, scores, scale, tau, mix) -> float:
    mixed = []
    for i in range(videos.shape[0]):
        w = ref_weights(scores[i].tolist(), tau)
        if w:
            mean = sum(w[j] * neighbours[i, j] for j in w)
            v = (1 - mix) * videos[i] + mix * mean
        else:
            v = videos[i]
        mixed.append(v / v.norm())
    return ref_infonce(torch.stack(mixed), titles, scale)


# ---- tests -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 16])
def test_clip_loss_matches_open_clip_value_and_gradient(n):
    img, txt = unit(n, 32, seed=1).requires_grad_(), unit(n, 32, seed=2).requires_grad_()
    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    scale = torch.tensor(14.3, dtype=torch.float64)
    ours = ClipLoss(world_size=1)(img, txt, scale)
    theirs = OpenClipLoss()(img2, txt2, scale)
    ours.backward()
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-6
    torch.testing.assert_close(img.grad, img2.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(txt.grad, txt2.grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["negative", "ignore", "positive"])
def test_repeated_text_modes_match_loop_reference(mode):
    a, b = unit(9, 16, seed=3), unit(9, 16, seed=4)
    ids = torch.tensor([0, 1, 0, 2, 3, 1, 0, 4, 5])
    b[2] = b[0]  # identical sentences give identical text embeddings
    b[6] = b[0]
    b[5] = b[1]
    loss = ClipLoss(world_size=1, repeated_text=mode)(
        a, b, torch.tensor(10.0, dtype=torch.float64), text_ids=ids
    )
    expected = ref_infonce(a, b, 10.0, ids.tolist(), mode)
    assert loss.item() == pytest.approx(expected, abs=1e-9)


def test_repeated_text_modes_really_differ():
    a, b = unit(6, 8, seed=5), unit(6, 8, seed=6)
    ids = torch.tensor([0, 0, 0, 1, 2, 3])
    values = {
        m: ClipLoss(world_size=1, repeated_text=m)(a, b, torch.tensor(10.0), text_ids=ids).item()
        for m in ("negative", "ignore", "positive")
    }
    assert len({round(v, 6) for v in values.values()}) == 3
    # Unique ids: every mode is plain CLIP.
    unique = torch.arange(6)
    base = ClipLoss(world_size=1)(a, b, torch.tensor(10.0)).item()
    for m in ("ignore", "positive"):
        assert ClipLoss(world_size=1, repeated_text=m)(
            a, b, torch.tensor(10.0), text_ids=unique
        ).item() == pytest.approx(base, abs=1e-12)


def ref_text_target_infonce(a, b, scale, tau) -> float:
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        z = sum(math.exp(float(b[i] @ b[k]) / tau) for k in range(n))
        target = {j: math.exp(float(b[i] @ b[j]) / tau) / z for j in range(n)}
        total += ref_row_ce([float(a[i] @ b[j]) * scale for j in range(n)], target, set(range(n)))
        total += ref_row_ce([float(b[i] @ a[j]) * scale for j in range(n)], target, set(range(n)))
    return total / (2 * n)


def test_text_similarity_targets_match_loop_reference_and_gradient():
    a, b = unit(8, 16, seed=11).requires_grad_(), unit(8, 16, seed=12)
    b[5] = F.normalize(b[1] + 0.1 * b[5], dim=0)  # two narrations that say nearly the same thing
    loss_fn = HierarchicalLoss(LossCfg(text_target_temperature=0.2), world_size=1)
    loss = loss_fn.clip_loss(a, b, torch.tensor(10.0, dtype=torch.float64))["clip"]
    assert loss.item() == pytest.approx(ref_text_target_infonce(a.detach(), b, 10.0, 0.2), abs=1e-9)
    # The targets are fixed by the (frozen) text: no gradient reaches them through the softmax.
    b_grad = b.clone().requires_grad_()
    HierarchicalLoss(LossCfg(text_target_temperature=0.2), world_size=1).clip_loss(
        a.detach(), b_grad, torch.tensor(10.0, dtype=torch.float64))["clip"].backward()
    a2 = a.detach().clone()
    targets = torch.softmax(b @ b.T / 0.2, dim=1)
    expected = torch.autograd.functional.jacobian(
        lambda t: (F.cross_entropy(10.0 * a2 @ t.T, targets) + F.cross_entropy(10.0 * t @ a2.T, targets)) / 2, b)
    torch.testing.assert_close(b_grad.grad, expected, atol=1e-9, rtol=0)
    # A near-zero temperature gives one-hot targets for distinct sentences: plain CLIP.
    sharp = HierarchicalLoss(LossCfg(text_target_temperature=1e-4), world_size=1)
    distinct = unit(8, 16, seed=13)
    assert sharp.clip_loss(a.detach(), distinct, torch.tensor(10.0, dtype=torch.float64))["clip"].item() == \
        pytest.approx(ref_infonce(a.detach(), distinct, 10.0), abs=1e-9)
    with pytest.raises(ModelError, match="text_target_temperature"):
        LossCfg(text_target_temperature=-1.0).validate()


def ref_frame_text(frames, texts, scale, tau=0.0) -> float:
    n, steps, _ = frames.shape
    total = 0.0
    for i in range(n):
        if tau > 0:
            z = sum(math.exp(float(texts[i] @ texts[k]) / tau) for k in range(n))
            target = {j: math.exp(float(texts[i] @ texts[j]) / tau) / z for j in range(n)}
        else:
            target = {i: 1.0}
        for t in range(steps):
            total += ref_row_ce([float(frames[i, t] @ texts[j]) * scale for j in range(n)], target, set(range(n)))
    return total / (n * steps)


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_frame_text_term_matches_loop_reference_and_is_weighted_into_total(tau):
    clips, texts, frames = unit(6, 16, seed=21), unit(6, 16, seed=22), unit(6, 3, 16, seed=23)
    loss_fn = HierarchicalLoss(LossCfg(frame_text_weight=0.5, text_target_temperature=tau), world_size=1)
    out = loss_fn.clip_loss(clips, texts, torch.tensor(10.0, dtype=torch.float64), frame_features=frames)
    assert out["frame_text"].item() == pytest.approx(ref_frame_text(frames, texts, 10.0, tau), abs=1e-9)
    assert out["total"].item() == pytest.approx(out["clip"].item() + 0.5 * out["frame_text"].item(), abs=1e-12)
    off = HierarchicalLoss(LossCfg(text_target_temperature=tau), world_size=1).clip_loss(
        clips, texts, torch.tensor(10.0, dtype=torch.float64), frame_features=frames)
    assert "frame_text" not in off and off["total"].item() == pytest.approx(out["clip"].item(), abs=1e-12)
    with pytest.raises(ModelError, match="frame_features must be"):
        loss_fn.clip_loss(clips, texts, torch.tensor(10.0), frame_features=frames[:, :, :8])


def test_video_level_terms_and_weighted_total_match_reference():
    v, t, nar = unit(8, 12, seed=7), unit(8, 12, seed=8), unit(8, 12, seed=9)
    cfg = LossCfg(video_title_weight=0.7, video_narration_weight=0.3)
    out = HierarchicalLoss(cfg, world_size=1, retrieval=RetrievalCfg(mode="off")).video_loss(v, t, torch.tensor(20.0), narration_features=nar)
    assert set(out) == {"video_title", "video_narration", "total"}
    assert out["video_title"].item() == pytest.approx(ref_infonce(v, t, 20.0), abs=1e-9)
    assert out["video_narration"].item() == pytest.approx(ref_infonce(v, nar, 20.0), abs=1e-9)
    assert out["total"].item() == pytest.approx(
        0.7 * ref_infonce(v, t, 20.0) + 0.3 * ref_infonce(v, nar, 20.0), abs=1e-9
    )


def test_clip_level_total_uses_clip_weight():
    a, b = unit(5, 8, seed=10), unit(5, 8, seed=11)
    out = HierarchicalLoss(LossCfg(clip_weight=2.5, repeated_text="negative"), world_size=1)(
        level="clip", clip_features=a, text_features=b, logit_scale=torch.tensor(5.0)
    )
    assert out["clip"].item() == pytest.approx(ref_infonce(a, b, 5.0), abs=1e-9)
    assert out["total"].item() == pytest.approx(2.5 * ref_infonce(a, b, 5.0), abs=1e-9)


@pytest.mark.parametrize("mode", ["soft_positive", "feature_aug"])
def test_retrieval_modes_match_reference_with_missing_neighbours(mode):
    n, k, d = 6, 4, 10
    v, t = unit(n, d, seed=12), unit(n, d, seed=13)
    nb = unit(n, k, d, seed=14)
    g = torch.Generator().manual_seed(15)
    scores = torch.rand(n, k, generator=g, dtype=torch.float64)
    scores[1, 2:] = float("-inf")  # bank returned fewer than K neighbours
    scores[3, :2] = float("-inf")  # none at all ...
    scores[3, 2:] = -3.4028234663852886e38  # ... faiss's -FLT_MAX filler means missing too
    retrieval = RetrievalCfg(mode=mode, weight=0.4, temperature=0.05, mix=0.3)
    out = HierarchicalLoss(LossCfg(), world_size=1, retrieval=retrieval).video_loss(
        v, t, torch.tensor(12.0), neighbour_features=nb, neighbour_scores=scores
    )
    if mode == "soft_positive":
        expected = ref_soft_positive(v, t, nb, scores, 12.0, 0.05)
    else:
        expected = ref_feature_aug(v, t, nb, scores, 12.0, 0.05, 0.3)
    assert out["retrieval"].item() == pytest.approx(expected, abs=1e-9)
    assert out["total"].item() == pytest.approx(ref_infonce(v, t, 12.0) + 0.4 * expected, abs=1e-9)


def test_retrieval_gradient_matches_autograd_of_reference():
    """Gradient of the soft-positive term w.r.t. the titles vs autograd through an independent tensor formula."""
    n, k, d = 5, 3, 8
    v, nb = unit(n, d, seed=16), unit(n, k, d, seed=17)
    t = unit(n, d, seed=18).requires_grad_()
    scores = torch.randn(n, k, generator=torch.Generator().manual_seed(19), dtype=torch.float64)
    loss = HierarchicalLoss(world_size=1, retrieval=RetrievalCfg(mode="soft_positive"))._soft_positive(
        v, t, torch.tensor(9.0), nb, scores
    )
    (grad,) = torch.autograd.grad(loss, t)
    t2 = t.detach().clone().requires_grad_()
    w = torch.softmax(scores / 0.1, dim=1)
    rows = []
    for i in range(n):
        cand = torch.cat([nb[i], torch.cat([v[:i], v[i + 1 :]])])  # neighbours first, then the other videos
        logp = torch.log_softmax(9.0 * cand @ t2[i], dim=0)
        rows.append(-(w[i] * logp[:k]).sum())
    (grad_ref,) = torch.autograd.grad(torch.stack(rows).mean(), t2)
    torch.testing.assert_close(grad, grad_ref, atol=1e-10, rtol=0)


def test_retrieval_off_or_absent_adds_nothing():
    v, t = unit(4, 8, seed=20), unit(4, 8, seed=21)
    nb, sc = unit(4, 2, 8, seed=22), torch.zeros(4, 2, dtype=torch.float64)
    off = HierarchicalLoss(world_size=1, retrieval=RetrievalCfg(mode="off")).video_loss(
        v, t, torch.tensor(5.0), neighbour_features=nb, neighbour_scores=sc
    )
    assert "retrieval" not in off
    on_absent = HierarchicalLoss(world_size=1, retrieval=RetrievalCfg(mode="feature_aug")).video_loss(
        v, t, torch.tensor(5.0)
    )
    assert "retrieval" not in on_absent
    assert off["total"].item() == pytest.approx(on_absent["total"].item(), abs=1e-12)


def test_mean_text_per_video_matches_loop():
    feats = unit(7, 6, seed=23)
    owner = torch.tensor([0, 2, 2, 1, 0, 2, 1])
    got = mean_text_per_video(feats, owner, 3)
    for vid in range(3):
        mean = feats[owner == vid].mean(dim=0)
        torch.testing.assert_close(got[vid], mean / mean.norm())
    with pytest.raises(ModelError, match="videos without: \\[3\\]"):
        mean_text_per_video(feats, owner, 4)
    with pytest.raises(ModelError, match="video_index"):
        mean_text_per_video(feats, torch.tensor([0, 1, 2, 3, 4, 5, 9]), 3)


def test_bad_inputs_raise_model_error():
    a = unit(4, 8, seed=24)
    with pytest.raises(ModelError, match="same shape"):
        ClipLoss(world_size=1)(a, a[:3], torch.tensor(1.0))
    with pytest.raises(ModelError, match="repeated_text"):
        HierarchicalLoss(LossCfg(repeated_text="maybe"), world_size=1)
    with pytest.raises(ConfigError, match="retrieval.mode = 'sometimes'"):
        RetrievalCfg(mode="sometimes").validate()
    loss = HierarchicalLoss(world_size=1, retrieval=RetrievalCfg(mode="soft_positive"))
    with pytest.raises(ModelError, match="neighbour_features must be"):
        loss.video_loss(
            a, a, torch.tensor(1.0), neighbour_features=unit(4, 8, seed=1), neighbour_scores=torch.zeros(4, 8)
        )
    with pytest.raises(ModelError, match="level"):
        loss(level="frame")
