"""The training loop in one process: learning, accumulation, outputs, and clear errors on bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import tiny_overrides

from data_pipeline.manifests import read_manifest, write_manifest
from ophclip.config import load_config
from ophclip.errors import ConfigError, DataError
from ophclip.train import PretrainConfig, Trainer, TrainingDivergedError
from ophclip.train.checkpoint import load_checkpoint
from ophclip.train.logs import loss_curve, read_log


def _cfg(root, model_config, out, **extra) -> PretrainConfig:
    return load_config(PretrainConfig, None, tiny_overrides(root, model_config, out, **extra))


def test_a_run_writes_config_run_json_logs_checkpoints_and_the_model(dataset_root, tiny_model_config, tmp_path):
    cfg = _cfg(dataset_root, tiny_model_config, tmp_path / "run", **{"log.tensorboard": True})
    summary = Trainer(cfg).fit(progress=False)
    out = tmp_path / "run"
    assert summary["steps"] == 6
    assert load_config(PretrainConfig, out / "config.yaml") == cfg
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["counts"]["clips"] == 32 and run["counts"]["videos"] == 8
    assert run["versions"]["torch"] == torch.__version__ and run["seed"] == 0
    log = read_log(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    # video_every=2: steps 3 and 6 are video steps, the rest clip steps.
    assert [("loss/video" in r) for r in log] == [False, False, True, False, False, True]
    assert all(r["samples_per_s"] > 0 and r["lr"] > 0 and r["logit_scale"] > 1 for r in log)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert state["step"] == 6 and state["data"]["clip"]["batches"] == 4 and state["data"]["video"]["batches"] == 2
    assert (out / "checkpoints" / "best.pt").is_file()
    assert (out / "final" / "model.safetensors").is_file()
    png = loss_curve(out / "log.jsonl", out / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_the_loss_falls_on_a_tiny_run(dataset_root, tiny_model_config, tmp_path):
    cfg = _cfg(dataset_root, tiny_model_config, tmp_path / "run", **{"train.steps": 10, "train.video_every": 0, "train.save_every": 100})
    trainer = Trainer(cfg)
    trainer.fit(progress=False)
    losses = [r["loss/clip"] for r in trainer.history]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses


def test_the_frozen_minilm_text_tower_is_cached_per_sentence_and_gets_no_gradient(dataset_root, tmp_path):
    overrides = tiny_overrides(dataset_root, "", tmp_path / "run", **{"train.steps": 2, "train.save_every": 100})
    overrides = [o for o in overrides if not o.startswith(("model.name", "model.config_file"))]
    cfg = load_config(PretrainConfig, None, [*overrides, "model.name=OphCLIP-tiny-MiniLM"])
    trainer = Trainer(cfg)
    # MiniLM is frozen in this model config: each unique sentence (clip texts and summaries) is encoded once.
    expected = set(read_manifest(dataset_root, "clips")["text"]) | set(read_manifest(dataset_root, "video_texts")["summary_text"])
    assert trainer.text_cache is not None and set(trainer.text_cache.row) == expected
    sentences = sorted(trainer.text_cache.row)
    trainer.model.eval()
    with torch.no_grad():
        fresh = trainer.model.encode_text(trainer.components.tokenizer(sentences), normalize=True)
    torch.testing.assert_close(trainer.text_cache.lookup(sentences), fresh, rtol=0, atol=1e-6)
    text_before = {k: v.clone() for k, v in trainer.model.text.state_dict().items()}
    _, grads = _gradients(trainer, "clip")
    assert grads and not any(name.startswith("text.") for name in grads)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.fit(progress=False)
    for name, value in trainer.model.text.state_dict().items():
        assert torch.equal(value, text_before[name]), name


def _gradients(trainer: Trainer, level: str) -> tuple[dict, dict]:
    batch = trainer.next_batch(level)
    losses = trainer.forward_backward(level, batch)
    return losses, {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_accumulation_with_cached_features_equals_the_full_batch_gradient(dataset_root, tiny_model_config, tmp_path):
    full = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "a"))
    accum = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "b", **{"train.accum_freq": 4}))
    for level in ("clip", "video"):
        loss_full, grads_full = _gradients(full, level)
        loss_accum, grads_accum = _gradients(accum, level)
        assert loss_accum == pytest.approx(loss_full, abs=1e-6)
        assert grads_full.keys() == grads_accum.keys() and "logit_scale" in grads_full
        for name, grad in grads_full.items():
            # Relative too: summed in a different order, a float32 gradient of size ~30 moves by ~1e-5.
            torch.testing.assert_close(grads_accum[name], grad, rtol=1e-5, atol=1e-5, msg=f"{level} {name}")
        full.optimizer.zero_grad(set_to_none=True)
        accum.optimizer.zero_grad(set_to_none=True)


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(dataset_root, tiny_model_config, tmp_path):
    cfg = _cfg(dataset_root, tiny_model_config, tmp_path / "run", **{"train.steps": 3, "train.save_every": 2})
    trainer = Trainer(cfg)
    trainer.fit(progress=False)  # checkpoints at steps 2 and 3
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    cfg.train.steps = 6
    resumed = Trainer(cfg, resume="latest")
    with torch.no_grad():
        resumed.model.visual.conv1.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan at step 3 \(clip level\).*latest\.pt.*--resume latest"):
        resumed.fit(progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == 3
    for name, value in good.items():
        assert torch.equal(state["model"][name], value)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


def test_an_empty_clip_level_is_a_clear_error(dataset_root, tiny_model_config, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    clips = read_manifest(root, "clips")
    clips["text"] = ""
    write_manifest(root, "clips", clips)
    with pytest.raises(DataError, match=r"clips\.parquet.*clip level is empty.*32 dropped"):
        Trainer(_cfg(root, tiny_model_config, tmp_path / "run"))


def test_an_empty_video_level_is_a_clear_error_unless_video_steps_are_off(dataset_root, tiny_model_config, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    write_manifest(root, "video_texts", read_manifest(root, "video_texts").iloc[:0])
    with pytest.raises(DataError, match=r"video_texts\.parquet.*video level is empty.*train\.video_every=0"):
        Trainer(_cfg(root, tiny_model_config, tmp_path / "run"))
    trainer = Trainer(_cfg(root, tiny_model_config, tmp_path / "run", **{"train.video_every": 0, "train.steps": 1}))
    assert trainer.fit(progress=False)["steps"] == 1


def test_an_unknown_model_name_lists_the_known_ones(dataset_root, tmp_path):
    cfg = load_config(PretrainConfig, None, [f"data.root={dataset_root}", "model.name=OphCLIP-nonexistent", f"train.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"model\.name = 'OphCLIP-nonexistent' is not a known model.*OphCLIP-tiny-MiniLM"):
        Trainer(cfg)


def test_batches_that_do_not_split_over_ranks_and_micro_batches_are_config_errors(dataset_root, tiny_model_config, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.video_batch_size = 4.*world size x train\.accum_freq = 1 x 3"):
        Trainer(_cfg(dataset_root, tiny_model_config, tmp_path, **{"train.accum_freq": 3, "train.clip_batch_size": 9}))


def test_a_missing_frame_cache_entry_is_named_before_training(dataset_root, tiny_model_config, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    (root / "frames" / "vid002.npy").unlink()
    with pytest.raises(DataError, match=r"clips\.parquet: video 'vid002' is listed in .*index\.parquet but its frame file .*vid002\.npy is missing; rerun the pipeline's frames stage"):
        Trainer(_cfg(root, tiny_model_config, tmp_path / "run"))


def test_a_level_smaller_than_its_global_batch_is_named_at_start(dataset_root, tiny_model_config, tmp_path):
    with pytest.raises(DataError, match=r"video level has 8 samples, fewer than one global batch of 16; lower train\.video_batch_size"):
        Trainer(_cfg(dataset_root, tiny_model_config, tmp_path, **{"train.video_batch_size": 16}))


class _FixedNeighbours:
    """Retrieval-hook test double: the two silent videos are every video's neighbours."""

    def __init__(self, root):
        from ophclip.data import silent_videos

        self.pool = silent_videos(root, n_frames=2)
        self.model = None
        self.refreshed = []

    def _frames(self, batch: int) -> torch.Tensor:
        frames = torch.stack([self.pool[i]["frames"] for i in range(len(self.pool))]).float() / 255
        return frames.unsqueeze(0).expand(batch, -1, -1, -1, -1, -1).flatten(0, 1)  # (B*K, T, 3, S, S)

    def maybe_refresh(self, step, model):
        self.refreshed.append(step)

    def neighbours(self, video_ids, video_emb):
        self.batch = len(video_ids)
        with torch.no_grad():
            emb = self.model.encode_video(self._frames(self.batch), normalize=True).view(self.batch, len(self.pool), -1)
        return emb, torch.einsum("bd,bkd->bk", video_emb, emb)

    def neighbour_embeddings_with_grad(self, encode):
        return encode(self._frames(self.batch)).view(self.batch, len(self.pool), -1)


def test_soft_positive_neighbours_train_with_gradient_and_accumulate_exactly(dataset_root, tiny_model_config, tmp_path):
    extra = {"retrieval.mode": "soft_positive"}
    results = []
    for k, accum in enumerate((1, 2)):
        hook = _FixedNeighbours(dataset_root)
        trainer = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / f"r{k}", **extra, **{"train.accum_freq": accum}), retrieval=hook)
        hook.model = trainer.model
        results.append(_gradients(trainer, "video"))
        assert hook.refreshed == [0]
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a["retrieval"] > 0 and loss_b["retrieval"] == pytest.approx(loss_a["retrieval"], abs=1e-6)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=0, atol=1e-5, msg=name)


def test_loader_workers_do_not_change_the_augmented_batches(dataset_root, tiny_model_config, tmp_path):
    inline = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "a"))
    workers = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "b", **{"data.num_workers": 2}))
    assert inline.components.preprocess_train.is_augmenting
    for level in ("clip", "video", "clip"):
        a, b = inline.next_batch(level), workers.next_batch(level)
        assert a["text"] == b["text"]
        assert torch.equal(a["frames"], b["frames"])


def test_a_folder_that_is_not_a_dataset_root_is_named_before_any_model_is_built(tmp_path):
    cfg = load_config(PretrainConfig, None, [f"data.root={tmp_path / 'nowhere'}", f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"data\.root = '.*nowhere' is not a dataset root"):
        Trainer(cfg)


def test_the_frame_text_term_trains_single_frames_and_accumulates_exactly(dataset_root, tiny_model_config, tmp_path):
    extra = {"loss.frame_text_weight": 0.5, "loss.text_target_temperature": 0.1}
    (loss_a, grads_a), (loss_b, grads_b) = (
        _gradients(Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / f"r{accum}", **extra,
                                **{"train.accum_freq": accum})), "clip") for accum in (1, 2))
    assert loss_a["frame_text"] > 0 and loss_b["frame_text"] == pytest.approx(loss_a["frame_text"], abs=1e-6)
    assert loss_a["total"] == pytest.approx(loss_a["clip"] + 0.5 * loss_a["frame_text"], abs=1e-6)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-5, msg=name)
    # The term changes the vision tower's gradient (it is not a logged-only quantity).
    _, grads_off = _gradients(Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "off",
                                           **{"loss.text_target_temperature": 0.1})), "clip")
    name = next(n for n in grads_a if n.startswith("visual."))
    assert not torch.allclose(grads_a[name], grads_off[name])


def test_clips_per_video_groups_the_clip_batches_by_video(dataset_root, tiny_model_config, tmp_path):
    def same_video_neighbours(trainer):
        videos = trainer.levels.clip.video_ids
        order = trainer.objective._sampler("clip").order(0)
        return sum(videos[a] == videos[b] for a, b in zip(order[:-1], order[1:], strict=True))

    grouped = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "g", **{"data.clips_per_video": 4}))
    plain = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "p"))
    n = len(grouped.levels.clip)
    n_videos = len(set(grouped.levels.clip.video_ids))
    # Runs of 4 clips of one video: every adjacent pair inside a run is the same video.
    assert same_video_neighbours(grouped) >= n - 2 * n_videos > same_video_neighbours(plain)
