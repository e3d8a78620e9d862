"""The silent-video memory bank as files: build it from a checkpoint, query it, draw a gallery.

``build_bank`` encodes a dataset root's silent videos and saves ``retrieval.MemoryBank``
plus ``build.json`` naming the checkpoint and the root, so ``query_bank`` and
``bank_gallery`` need only the bank folder. ``ophclip bank`` (``ophclip/cli/bank.py``)
is the command line over these; the demo and the ablation call them directly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from data_pipeline.frame_cache import FrameCache, iter_resampled_frames
from data_pipeline.manifests import read_manifest
from ophbase.io import atomic_path, atomic_write_json, read_json
from retrieval import MemoryBank, label_agreement

from . import __version__
from .errors import ConfigError, DataError
from .factory import create_model_and_transforms, get_tokenizer
from .memory import encode_pool, silent_pool

logger = logging.getLogger(__name__)

BUILD_JSON = "build.json"
# Frames are decoded from a video file at this rate before n_frames are picked evenly.
QUERY_DECODE_FPS = 4.0


def build_bank(
    checkpoint: str,
    dataset_root: Path,
    out: Path,
    *,
    index: str = "flat",
    n_frames: int = 8,
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Encode the silent pool of ``dataset_root`` with ``checkpoint`` and save the bank into ``out``."""
    model, _, preprocess_eval = create_model_and_transforms(checkpoint)
    pool = silent_pool(dataset_root, n_frames=n_frames, transform=preprocess_eval)
    t0 = time.perf_counter()
    emb = encode_pool(model, pool, list(range(len(pool))), batch_size=batch_size, progress=progress)
    encode_s = time.perf_counter() - t0
    bank = MemoryBank(emb.shape[1], index)
    bank.add(pool.video_ids, emb)
    bank.save(out)
    ckpt_path = Path(checkpoint)
    info = {
        "checkpoint": str(ckpt_path.resolve()) if ckpt_path.exists() else checkpoint,
        "dataset_root": str(Path(dataset_root).resolve()),
        "n_frames": n_frames,
        "index": index,
        "count": len(bank),
        "dim": bank.dim,
        "encode_s": round(encode_s, 3),
        "ophclip": __version__,
    }
    atomic_write_json(Path(out) / BUILD_JSON, info)
    return info


def read_build_info(bank_dir: Path) -> dict:
    return read_json(Path(bank_dir) / BUILD_JSON, DataError,
                     f"{bank_dir} was not written by `ophclip bank build`; pass --checkpoint and --root")


def query_bank(
    bank_dir: Path,
    *,
    text: str | None = None,
    video: str | None = None,
    k: int = 5,
    checkpoint: str | None = None,
    dataset_root: Path | None = None,
    n_frames: int | None = None,
) -> list[tuple[str, float]]:
    """Top-``k`` (video_id, score) of the bank for a text or a video (file path or dataset video id)."""
    if (text is None) == (video is None):
        raise ConfigError("give exactly one of --text or --video")
    bank = MemoryBank.load(bank_dir)
    needs_info = checkpoint is None or (video is not None and dataset_root is None) or n_frames is None
    info = read_build_info(bank_dir) if needs_info else {}
    checkpoint = checkpoint or info["checkpoint"]
    n_frames = n_frames or int(info.get("n_frames", 8))
    model, _, preprocess_eval = create_model_and_transforms(checkpoint)
    model.eval()
    exclude = None
    with torch.no_grad():
        if text is not None:
            tokenizer = get_tokenizer(checkpoint)
            query = model.encode_text(tokenizer([text]), normalize=True)
        else:
            frames = _video_frames(video, dataset_root or Path(info["dataset_root"]), n_frames)
            query = model.encode_video(preprocess_eval(frames)[None], normalize=True)
            exclude = [[video]]  # a video of the bank is not its own neighbour
    if query.shape[1] != bank.dim:
        raise DataError(
            f"the checkpoint embeds into {query.shape[1]} dims but the bank holds {bank.dim}; use the bank's checkpoint"
        )
    result = bank.search(query, k, exclude=exclude)
    return [
        (vid, float(s))
        for vid, s in zip(result.ids[0], result.scores[0], strict=True)
        if vid is not None and np.isfinite(s)
    ]


def _video_frames(video: str, dataset_root: Path, n_frames: int):
    """(n_frames, H, W, 3) uint8: decoded from a file, or read from the dataset's frame cache by id.

    A file that cannot be decoded raises the pipeline's InputError, a :class:`DataError`.
    """
    path = Path(video)
    if path.is_file():
        frames = np.stack(list(iter_resampled_frames(path, QUERY_DECODE_FPS, short_side=None)))
        return frames[segment_centres(len(frames), n_frames)]
    cache = FrameCache(dataset_root)
    if video not in cache:
        raise DataError(
            f"--video {video!r} is neither a video file nor a video id in the frame cache of {dataset_root}"
        )
    return cache.get(video, segment_centres(cache.n_frames(video), n_frames))


def segment_centres(total: int, n: int):
    """Frame at the centre of each of ``n`` equal segments: how the bank samples a silent video
    (``VideoDataset`` with ``train=False``), so a bank video queried by id meets its own embedding."""
    return np.minimum(np.floor((np.arange(n) + 0.5) * total / n).astype(np.int64), total - 1)


def bank_gallery(
    bank_dir: Path,
    out_png: Path,
    *,
    labels_csv: Path | None = None,
    label_column: str = "surgery_type",
    queries: list[str] | None = None,
    n_show: int = 4,
    k: int = 4,
    checkpoint: str | None = None,
    dataset_root: Path | None = None,
    batch_size: int = 16,
) -> dict:
    """Retrieve top-``k`` silent neighbours for the narrated videos; draw a gallery; measure label agreement.

    Every narrated video of the dataset root (or ``queries``) is a query. With a labels
    table (``video_id`` + ``label_column``, e.g. the synthetic set's ``surgery_types.csv``)
    the fraction of neighbours that share their query's label is reported; the PNG shows
    the first ``n_show`` queries (one per label first, so every label appears) and their
    neighbours' middle frames. ``gallery.json`` beside the PNG holds every number.
    """
    bank = MemoryBank.load(bank_dir)
    info = read_build_info(bank_dir) if checkpoint is None or dataset_root is None else {}
    checkpoint = checkpoint or info["checkpoint"]
    root = Path(dataset_root or info["dataset_root"])
    n_frames = int(info.get("n_frames", 8))
    label_of: dict[str, str] = {}
    if labels_csv is not None:
        table = pd.read_csv(labels_csv, dtype=str)
        missing = {"video_id", label_column} - set(table.columns)
        if missing:
            raise DataError(
                f"{labels_csv}: missing column(s) {sorted(missing)}; expected video_id and {label_column}"
            )
        label_of = dict(zip(table["video_id"], table[label_column], strict=True))
    if queries is None:
        videos = read_manifest(root, "videos")
        ok = videos["status"].astype("string").fillna("").isin(["", "ok"])
        queries = sorted(videos.loc[ok & (videos["kind"].astype(str) == "narrated"), "video_id"].astype(str))
    if not queries:
        raise DataError(f"{root / 'videos.parquet'}: no narrated videos to query the bank with")
    cache = FrameCache(root)
    model, _, preprocess_eval = create_model_and_transforms(checkpoint)
    model.eval()
    emb = []
    with torch.no_grad():
        for lo in range(0, len(queries), batch_size):
            batch = [
                preprocess_eval(cache.get(v, segment_centres(cache.n_frames(v), n_frames)))
                for v in queries[lo : lo + batch_size]
            ]
            emb.append(model.encode_video(torch.stack(batch), normalize=True))
    result = bank.search(torch.cat(emb), k, exclude=[[v] for v in queries])
    agreement = None
    if label_of:
        agreement = label_agreement(result.ids, [label_of.get(v, "") for v in queries], label_of)
    # One query per label first, so the picture shows every kind of surgery.
    shown, seen_labels = [], set()
    for i, v in enumerate(queries):
        if label_of.get(v) not in seen_labels:
            shown.append(i)
            seen_labels.add(label_of.get(v))
    shown = (shown + [i for i in range(len(queries)) if i not in shown])[:n_show]
    _render_gallery(out_png, cache, queries, result, shown, label_of)
    report = {
        "checkpoint": checkpoint,
        "bank": str(bank_dir),
        "k": k,
        "n_queries": len(queries),
        "label_column": label_column if label_of else None,
        "label_agreement": agreement,
        "neighbours": {
            v: [
                {"video_id": n, "score": float(sc), "label": label_of.get(n)}
                for n, sc in zip(ids, scores, strict=True)
                if n is not None
            ]
            for v, ids, scores in zip(queries, result.ids.tolist(), result.scores.tolist(), strict=True)
        },
        "query_labels": {v: label_of.get(v) for v in queries},
    }
    atomic_write_json(Path(out_png).with_suffix(".json"), report)
    return report


def _render_gallery(out_png: Path, cache, queries, result, shown, label_of) -> None:
    """Rows: a query's middle frame, then its neighbours' middle frames, titled with label and score."""
    k = result.ids.shape[1]
    # matplotlib's object API, not pyplot: drawing a gallery does not switch the process's backend.
    fig = Figure(figsize=(2.2 * (k + 1), 2.4 * len(shown)))
    axes = fig.subplots(len(shown), k + 1, squeeze=False)
    for row, qi in enumerate(shown):
        cells = [(queries[qi], None)] + list(zip(result.ids[qi], result.scores[qi], strict=True))
        for col, (vid, score) in enumerate(cells):
            ax = axes[row][col]
            ax.axis("off")
            if vid is None:
                continue
            ax.imshow(cache.get(vid, [cache.n_frames(vid) // 2])[0])
            label = label_of.get(vid, "")
            title = f"QUERY {vid}\n{label}" if score is None else f"{vid}\n{label} {score:.3f}"
            match = score is not None and label_of and label == label_of.get(queries[qi])
            ax.set_title(title, fontsize=7, color="green" if match else "black" if score is None else "red")
    fig.suptitle("narrated query (left) and its top silent neighbours", fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
