"""SilentPoolBank: encoding, warm-up, refresh policies, EMA, retrieval with gradient, DDP sharding.

Runs a real (micro) OphCLIP from a JSON config over a real frame cache on disk; expected
values come from encoding each video directly with the model, one at a time, and from
brute-force numpy search.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import ophclip  # noqa: E402
from data_pipeline.frame_cache import FrameCache, write_index  # noqa: E402
from ophclip.data import VideoDataset  # noqa: E402
from ophclip.distributed import DistInfo  # noqa: E402
from ophclip.loss import HierarchicalLoss, LossCfg  # noqa: E402
from ophclip.memory import RetrievalCfg, SilentPoolBank, encode_pool  # noqa: E402

MICRO = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
    "text_cfg": {
        "type": "open_clip",
        "context_length": 8,
        "vocab_size": 49408,
        "width": 16,
        "heads": 2,
        "layers": 1,
    },
    "temporal_cfg": {"pool": "mean"},
    "text_frozen": False,
    "logit_scale_learnable": True,
    "init_temperature": 0.07,
}
MODEL_NAME = "OphCLIP-test-memory-micro"
N_FRAMES = 4
TINTS = {"cataract": (200, 60, 60), "vitrectomy": (60, 200, 60), "glaucoma": (60, 60, 200)}


def write_frame_cache(root: Path, n_videos: int = 18, seed: int = 0) -> list[str]:
    """Silent videos whose frames are tinted by surgery type, in the frame-cache contract."""
    rng = np.random.default_rng(seed)
    frames_dir = root / "frames"
    frames_dir.mkdir(parents=True)
    rows, ids = [], []
    for i in range(n_videos):
        surgery = list(TINTS)[i % len(TINTS)]
        vid = f"silent_{surgery}_{i:02d}"
        arr = np.clip(np.array(TINTS[surgery]) + rng.integers(-40, 41, (12, 16, 16, 3)), 0, 255).astype(
            np.uint8
        )
        np.save(frames_dir / f"{vid}.npy", arr)
        rows.append(
            {
                "video_id": vid,
                "file": f"{vid}.npy",
                "n_frames": 12,
                "fps": 4.0,
                "height": 16,
                "width": 16,
                "source_sha256": "",
            }
        )
        ids.append(vid)
    write_index(frames_dir, rows)
    return ids


@pytest.fixture(scope="module")
def micro_model_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cfg") / f"{MODEL_NAME}.json"
    path.write_text(json.dumps(MICRO), encoding="utf-8")
    ophclip.add_model_config(path)
    return MODEL_NAME


def make_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model, _, preprocess_eval = ophclip.create_model_and_transforms(name)
    return model, preprocess_eval


@pytest.fixture(scope="module")
def pool_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    write_frame_cache(root)
    return root


def make_pool(root: Path, transform) -> VideoDataset:
    cache = FrameCache(root)
    return VideoDataset(
        cache.index["video_id"].tolist(), cache, n_frames=N_FRAMES, transform=transform, train=False
    )


def direct_embeddings(model, pool) -> np.ndarray:
    """Reference: each video encoded on its own, in eval mode."""
    model.eval()
    with torch.no_grad():
        out = np.stack(
            [model.encode_video(pool[i]["frames"][None], normalize=True)[0].numpy() for i in range(len(pool))]
        )
    model.train()
    return out


def test_warmup_then_full_bank_equals_direct_encoding(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    hook = SilentPoolBank(RetrievalCfg(k=3, warmup_steps=5, batch_size=4, max_score=None), pool)
    queries = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    for step in range(5):
        hook.maybe_refresh(step, model)
        assert hook.bank is None and hook.neighbours(["q0", "q1"], queries) is None
    hook.maybe_refresh(5, model)
    assert hook.active and len(hook.bank) == len(pool)
    ref = direct_embeddings(model, pool)
    np.testing.assert_allclose(hook.bank.get_vectors(pool.video_ids), ref, atol=1e-5)
    emb, scores = hook.neighbours(["q0", "q1"], queries)
    sims = queries.numpy() @ ref.T
    top = np.argsort(-sims, axis=1)[:, :3]
    assert hook.last_neighbour_ids == [[pool.video_ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(sims, top, 1), atol=1e-5)
    np.testing.assert_allclose(emb.numpy(), ref[top], atol=1e-5)


def test_self_matches_and_near_duplicates_are_excluded(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    hook = SilentPoolBank(RetrievalCfg(k=4, max_score=0.999), pool)
    hook.maybe_refresh(0, model)
    ref = direct_embeddings(model, pool)
    # Query 0 is a pool video (its own id must not come back); query 1 a near-copy of video 3 under another id.
    q = torch.from_numpy(np.stack([ref[0], ref[3]]))
    _, scores = hook.neighbours([pool.video_ids[0], "narrated_x"], q)
    ids = hook.last_neighbour_ids
    assert pool.video_ids[0] not in ids[0] and pool.video_ids[3] not in ids[1]
    sims = q.numpy() @ ref.T
    for i in range(2):
        allowed = [j for j in np.argsort(-sims[i]) if sims[i, j] <= 0.999 and not (i == 0 and j == 0)]
        assert ids[i] == [pool.video_ids[j] for j in allowed[:4]]
    assert (scores <= 0.999).all()


def perturb(model, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_full_refresh_every_r_steps_swaps_a_new_bank(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    hook = SilentPoolBank(RetrievalCfg(refresh="full", refresh_every=3), pool)
    hook.maybe_refresh(0, model)
    first = hook.bank
    perturb(model)
    hook.maybe_refresh(1, model)
    hook.maybe_refresh(2, model)
    assert hook.bank is first  # not yet due
    hook.maybe_refresh(3, model)
    assert hook.bank is not first and hook.holder.generation == 2
    np.testing.assert_allclose(
        hook.bank.get_vectors(pool.video_ids), direct_embeddings(model, pool), atol=1e-5
    )
    assert not np.allclose(
        first.get_vectors(pool.video_ids), hook.bank.get_vectors(pool.video_ids), atol=1e-3
    )


def test_incremental_refresh_updates_a_rotating_slice(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    hook = SilentPoolBank(RetrievalCfg(refresh="incremental", incremental_slice=5), pool)
    hook.maybe_refresh(0, model)  # first call builds the whole bank
    old = direct_embeddings(model, pool)
    bank = hook.bank
    perturb(model)
    new = direct_embeddings(model, pool)
    hook.maybe_refresh(1, model)
    got = bank.get_vectors(pool.video_ids)
    np.testing.assert_allclose(got[:5], new[:5], atol=1e-5)
    np.testing.assert_allclose(got[5:], old[5:], atol=1e-5)
    for step in range(2, 5):  # 18 videos, 5 per step: positions 5..19 wrap around to 0
        hook.maybe_refresh(step, model)
    assert hook.bank is bank  # incremental never swaps
    np.testing.assert_allclose(bank.get_vectors(pool.video_ids), new, atol=1e-5)


def test_ema_follows_the_reference_formula_and_feeds_the_bank(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    m = 0.9
    hook = SilentPoolBank(RetrievalCfg(encoder="ema", ema_momentum=m, refresh="full", refresh_every=1), pool)
    hook.maybe_refresh(0, model)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    perturb(model)
    hook.maybe_refresh(1, model)
    ema_state = hook.ema.model.state_dict()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(
                ema_state[name], m * theta0[name] + (1 - m) * p.detach(), atol=1e-6, rtol=0
            )
    np.testing.assert_allclose(
        hook.bank.get_vectors(pool.video_ids), direct_embeddings(hook.ema.model, pool), atol=1e-5
    )
    # The EMA copy is not the model: the bank differs from the model's own embeddings.
    assert not np.allclose(hook.bank.get_vectors(pool.video_ids), direct_embeddings(model, pool), atol=1e-4)


def test_soft_positive_neighbours_carry_gradient_into_the_vision_tower(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    hook = SilentPoolBank(RetrievalCfg(k=3, update_seen=True, max_score=None), pool)
    hook.maybe_refresh(0, model)
    ref = direct_embeddings(model, pool)
    videos = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    titles = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    emb_const, scores = hook.neighbours([f"n{i}" for i in range(4)], videos)
    model.eval()  # same numerics as the bank's encoding (no dropout in the micro model anyway)
    emb = hook.neighbour_embeddings_with_grad(lambda frames: model.encode_video(frames, normalize=True))
    assert emb.requires_grad and emb.shape == (4, 3, 16)
    torch.testing.assert_close(emb.detach(), emb_const, atol=1e-5, rtol=0)
    loss = HierarchicalLoss(LossCfg(), rank=0, world_size=1, retrieval=RetrievalCfg(mode="soft_positive"))
    out = loss.video_loss(videos, titles, torch.tensor(10.0), neighbour_features=emb, neighbour_scores=scores)
    model.zero_grad()
    out["retrieval"].backward()
    grads = [p.grad for p in model.visual.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # update_seen wrote the (unchanged) embeddings back: the bank still equals the direct encoding.
    np.testing.assert_allclose(hook.bank.get_vectors(pool.video_ids), ref, atol=1e-5)


def test_encode_pool_restores_training_mode(micro_model_config, pool_root):
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    model.train()
    out = encode_pool(model, pool, [0, 1, 2], batch_size=2)
    assert model.training and out.shape == (3, 16) and not out.requires_grad


def test_bad_config_is_a_clear_error():
    from ophclip.errors import ConfigError

    with pytest.raises(ConfigError, match="retrieval.refresh = 'sometimes'"):
        RetrievalCfg(refresh="sometimes").validate()
    with pytest.raises(ConfigError, match="retrieval.index = 'annoy'"):
        RetrievalCfg(index="annoy").validate()
    with pytest.raises(ConfigError, match="ema_momentum"):
        RetrievalCfg(ema_momentum=1.0).validate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_path: str, root: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ophclip.add_model_config(cfg_path)
        model, pre = make_model(MODEL_NAME)
        pool = make_pool(Path(root), pre)
        hook = SilentPoolBank(RetrievalCfg(batch_size=3), pool, dist=DistInfo(rank=rank, world_size=world))
        hook.maybe_refresh(0, model)
        np.save(Path(out_dir) / f"rank{rank}.npy", hook.bank.get_vectors(pool.video_ids))
        pd.Series(hook.bank.ids).to_json(Path(out_dir) / f"rank{rank}_ids.json")
        # Each rank retrieves for its own queries, re-encodes them with a changed model and
        # writes them back: the banks must stay identical (the union of both ranks' updates).
        perturb(model)  # same seed on both ranks: same weights
        g = torch.Generator().manual_seed(100 + rank)
        q = torch.nn.functional.normalize(torch.randn(2, 16, generator=g), dim=-1)
        hook.neighbours([f"q{rank}_{i}" for i in range(2)], q)
        model.eval()
        hook.neighbour_embeddings_with_grad(lambda frames: model.encode_video(frames, normalize=True))
        np.save(Path(out_dir) / f"rank{rank}_after.npy", hook.bank.get_vectors(pool.video_ids))
        (Path(out_dir) / f"rank{rank}_neighbours.json").write_text(json.dumps(hook.last_neighbour_ids))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes each import torch + ophclip: about 30-60 s on 2 shared cores
def test_ddp_ranks_encode_shards_and_hold_the_same_bank(micro_model_config, pool_root, tmp_path):
    cfg_file = tmp_path / f"{MODEL_NAME}.json"
    cfg_file.write_text(json.dumps(MICRO), encoding="utf-8")
    cfg_path = str(cfg_file)
    mp.start_processes(
        _ddp_worker,
        args=(2, _free_port(), cfg_path, str(pool_root), str(tmp_path)),
        nprocs=2,
        start_method="spawn",
    )
    model, pre = make_model(micro_model_config)
    pool = make_pool(pool_root, pre)
    ref = direct_embeddings(model, pool)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"), ref, atol=1e-5)
        assert pd.read_json(tmp_path / f"rank{rank}_ids.json", typ="series").tolist() == pool.video_ids
    seen = {
        v
        for rank in range(2)
        for row in json.loads((tmp_path / f"rank{rank}_neighbours.json").read_text())
        for v in row
    }
    perturb(model)
    new = direct_embeddings(model, pool)
    expected = np.stack([new[i] if v in seen else ref[i] for i, v in enumerate(pool.video_ids)])
    assert 0 < len(seen) < len(pool)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}_after.npy"), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["feature_aug", pytest.param("soft_positive", marks=pytest.mark.slow)])
def test_trainer_runs_with_the_bank_as_its_retrieval_hook(dataset_root, tiny_model_config, tmp_path, mode):
    """The real training loop with retrieval on: the bank is built after warm-up and the term is trained."""
    from conftest import tiny_overrides

    from ophclip.config import load_config
    from ophclip.train import PretrainConfig, Trainer, build_components

    overrides = tiny_overrides(
        dataset_root, tiny_model_config, tmp_path / "run", **{"train.video_every": 1, "train.save_every": 100}
    )
    cfg = load_config(
        PretrainConfig, None, [*overrides, f"retrieval.mode={mode}", "retrieval.weight=1.0"]
    )
    components = build_components(cfg)
    hook = SilentPoolBank.from_dataset_root(
        RetrievalCfg(k=2, warmup_steps=3, max_score=None),
        dataset_root,
        n_frames=4,
        transform=components.preprocess_eval,
        progress=False,
    )
    trainer = Trainer(cfg, components=components, retrieval=hook)
    trainer.fit(progress=False)
    video_steps = [r for r in trainer.history if "loss/video/video_title" in r]
    with_retrieval = [r["step"] for r in video_steps if "loss/video/retrieval" in r]
    # Video steps are steps 1, 3, 5 (logged after the step as 2, 4, 6); warm-up ends at step 3.
    assert [r["step"] for r in video_steps] == [2, 4, 6] and with_retrieval == [4, 6]
    assert all(
        np.isfinite(r["loss/video/retrieval"]) and r["loss/video/retrieval"] > 0 for r in video_steps[1:]
    )
    assert hook.stats["full_refreshes"] == 1 and len(hook.bank) == 2  # the fixture's two silent videos


def test_the_memory_config_section_builds_the_bank_and_resume_restores_it_exactly(dataset_root, tiny_model_config, tmp_path):
    """No hook passed: ``memory:`` builds one. A run resumed mid-way holds the same (stale) bank,
    EMA encoder and weights as an uninterrupted run, because the checkpoint carries them."""
    from conftest import tiny_overrides

    from ophclip.config import load_config
    from ophclip.train import PretrainConfig, Trainer

    def config(out: Path):
        overrides = tiny_overrides(
            dataset_root, tiny_model_config, out, **{"train.video_every": 1, "train.save_every": 100}
        )
        memory = ["retrieval.k=1", "retrieval.warmup_steps=1", "retrieval.encoder=ema", "retrieval.ema_momentum=0.5",
                  "retrieval.refresh=incremental", "retrieval.incremental_slice=1", "retrieval.max_score=null"]
        return load_config(
            PretrainConfig, None, [*overrides, *memory, "retrieval.mode=feature_aug", "retrieval.weight=1.0"]
        )

    straight = Trainer(config(tmp_path / "straight"))
    assert isinstance(straight.retrieval, SilentPoolBank) and straight.retrieval.cfg.encoder == "ema"
    straight.fit(progress=False)

    first = Trainer(config(tmp_path / "resumed"))
    for _ in range(3):
        first.train_step()
    first.save()
    resumed = Trainer(config(tmp_path / "resumed"), resume="latest")
    assert resumed.step == 3 and resumed.retrieval.bank is not None  # restored, not re-encoded
    resumed.fit(progress=False)

    a, b = straight.retrieval, resumed.retrieval
    assert a.stats["incremental_updates"] == b.stats["incremental_updates"] > 0
    assert a.bank.ids == b.bank.ids
    np.testing.assert_array_equal(a.bank.get_vectors(a.bank.ids), b.bank.get_vectors(b.bank.ids))
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in a.ema.state_dict().items():
        assert torch.equal(value, b.ema.state_dict()[name]), name


def test_retrieval_off_builds_no_bank(dataset_root, tiny_model_config, tmp_path):
    from conftest import tiny_overrides

    from ophclip.config import load_config
    from ophclip.memory import NoRetrieval
    from ophclip.train import PretrainConfig, Trainer

    cfg = load_config(PretrainConfig, None, tiny_overrides(dataset_root, tiny_model_config, tmp_path / "run"))
    assert cfg.retrieval.mode == "off"
    assert isinstance(Trainer(cfg).retrieval, NoRetrieval)


def test_a_bad_memory_section_is_a_config_error_naming_the_key(dataset_root, tiny_model_config, tmp_path):
    from conftest import tiny_overrides

    from ophclip.config import load_config
    from ophclip.errors import ConfigError
    from ophclip.train import PretrainConfig
    from ophclip.train.config import validate

    cfg = load_config(PretrainConfig, None, [*tiny_overrides(dataset_root, tiny_model_config, tmp_path), "retrieval.index=annoy"])
    with pytest.raises(ConfigError, match="retrieval.index = 'annoy'"):
        validate(cfg)
