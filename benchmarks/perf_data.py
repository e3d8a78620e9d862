"""Data loading: the frame-cache loader against what a training step consumes, and against decoding mp4.

    python -m benchmarks.perf_data                          # demo clip batch (32 x 4 frames), 5 reps
    python -m benchmarks.perf_data --reps 10 --batches 8 --workers 0,1,2 --out runs/perf_data.json

Side by side in one run, on the same dataset root (generated once like ``perf_train_step``), the
clip level of ``OphCLIP-tiny-MiniLM`` at the demo batch, with the training augmentation:

* **frame cache, num_workers=N**: ``Trainer.next_batch("clip")``, the trainer's own DataLoader
  over ``ophclip.data.ClipDataset`` (memory-mapped ``frames/<id>.npy`` + augmentation),
  for each N of ``--workers``. Each block of ``--batches`` batches is timed back to back, after
  draining the batches the workers prefetched while the other variants ran;
* **PyAV decode**: the same clips and frame times (same window, same jitter, same augmentation
  seed), decoded from the source mp4 on the fly with PyAV (seek to the keyframe before the
  window, decode forward, resize to the cache's size), one process, as the cache builder does once;
* **trainer consumption**: clips x frames per second that one clip-level training step eats
  (``Trainer.train_step`` minus its data fetch, at ``--threads``).

The repetitions are interleaved (cache loaders, PyAV, training step, then again), median of
``--reps``. Goal: the cache loader delivers at least 2x what the step consumes.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks._machine import finish_machine_facts, machine_facts, markdown_table, write_json
from benchmarks.perf_train_step import DEFAULT_DATA, _BatchRecorder, _FixedLevel, ensure_dataset
from benchmarks.perf_train_step import make_trainer as make_benchmark_trainer
from ophbase.video import open_video
from ophclip.data import LevelBatchSampler, collate

logger = logging.getLogger(__name__)

MODEL = "OphCLIP-tiny-MiniLM"


def decode_frames_at(path: str | Path, times: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB frames of ``path`` shown at ``times`` (seconds, ascending), resized to ``width x height``.

    The frame shown at ``t`` is the last one whose timestamp is <= t (as the frame cache's
    resampling does). Seeks once to the keyframe before ``times[0]`` and decodes forward;
    only the frames picked are converted (and resized) to arrays.
    """
    order = np.argsort(times)
    picked: list[Any] = [None] * len(times)
    with open_video(path) as (container, stream):
        container.seek(max(0, int(float(times[order[0]]) / stream.time_base)), stream=stream, backward=True)
        i, prev = 0, None
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else 0.0
            while i < len(order) and t > float(times[order[i]]) + 1e-6:
                picked[order[i]] = prev if prev is not None else frame
                i += 1
            if i >= len(order):
                break
            prev = frame
        while i < len(order):  # past the last frame: it stays on screen
            picked[order[i]] = prev
            i += 1
    return np.stack([f.to_ndarray(format="rgb24", width=width, height=height) for f in picked])


class DecodeClips:
    """The clip dataset's samples, decoded from the source mp4 instead of read from the frame cache.

    ``clips[key]`` draws exactly what ``ClipDataset.__getitem__(key)`` draws (window, frame jitter,
    augmentation seed), so both paths produce the same clips from different sources.
    """

    def __init__(self, clips, video_paths: dict[str, str]):
        self.clips, self.paths = clips, video_paths
        index = clips.cache.index
        self.size = {v: (int(index.loc[v, "width"]), int(index.loc[v, "height"])) for v in set(clips._video_ids)}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        rng = np.random.default_rng(seed)
        lo, hi = self.clips.window(index, rng)
        n = self.clips.n_frames
        edges = np.linspace(lo, hi, n + 1)  # one time per equal segment, jittered (ClipDataset's rule)
        times = edges[:-1] + rng.random(n) * np.diff(edges)
        video_id = self.clips._video_ids[index]
        frames = decode_frames_at(self.paths[video_id], times, *self.size[video_id])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tensor = self.clips.transform(frames)
        return {"frames": tensor, "text": self.clips.texts[index], "video_id": video_id}


def make_trainer(root: Path, out_dir: Path, num_workers: int, args: argparse.Namespace):
    sizes = {"clip_batch": args.clip_batch, "clip_frames": args.clip_frames, "video_batch": 8, "video_frames": 16}
    ns = argparse.Namespace(num_workers=num_workers, k=4, refresh="full", refresh_every=100, index="flat")
    # train.video_every=0: the clip level only
    return make_benchmark_trainer(MODEL, root, out_dir, sizes, "off", ns, extra=["train.video_every=0"])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="cache folder of the generated synthetic dataset "
                                                           "(default: perf_train_step's)")
    p.add_argument("--root", type=Path, default=None, help="use this dataset root (its videos.parquet paths must exist)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads of the main process (default 1)")
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers values to compare")
    p.add_argument("--clip-batch", type=int, default=32, help="clips per batch (demo: 32)")
    p.add_argument("--clip-frames", type=int, default=4, help="frames per clip (demo: 4)")
    p.add_argument("--batches", type=int, default=4, help="batches per timed block")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median)")
    p.add_argument("--steps", type=int, default=1, help="training steps per timed block of the consumption measure")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_data.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    torch.set_num_threads(args.threads)
    facts = machine_facts()
    root = args.root if args.root is not None else ensure_dataset(args.data or DEFAULT_DATA)[1]
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    frames_per_batch = args.clip_batch * args.clip_frames

    with tempfile.TemporaryDirectory(prefix="perf_data_") as work:
        trainers = {w: make_trainer(Path(root), Path(work) / f"w{w}", w, args) for w in workers}
        consumer = trainers[workers[0]]
        recorder = _BatchRecorder(consumer)
        consumer.next_batch = recorder
        consumer.schedule = _FixedLevel("clip")
        clips = consumer.levels.clip
        videos = pd.read_parquet(Path(root) / "videos.parquet")
        decoder = DecodeClips(clips, dict(zip(videos["video_id"].astype(str), videos["path"].astype(str), strict=True)))
        # The PyAV path walks the same batches of sample keys the trainer's sampler hands out.
        sampler = iter(LevelBatchSampler(len(clips), args.clip_batch, seed=consumer.cfg.train.seed, level="clip"))
        prefetched = {w: 2 * w for w in workers}  # prefetch_factor 2 per worker (ContrastiveObjective._loader)

        def loader_block(w: int) -> float:
            t = trainers[w]
            fetch = t.next_batch if w != workers[0] else recorder
            for _ in range(prefetched[w]):  # ready before the clock starts: made while other variants ran
                fetch("clip")
            t0 = time.perf_counter()
            for _ in range(args.batches):
                fetch("clip")
            return (time.perf_counter() - t0) / args.batches

        def pyav_block() -> float:
            t0 = time.perf_counter()
            for _ in range(args.batches):
                collate([decoder[key] for key in next(sampler)])
            return (time.perf_counter() - t0) / args.batches

        def consume_block() -> float:
            total = 0.0
            for _ in range(args.steps):
                m = consumer.train_step()
                total += m["step_time_s"] - recorder.seconds
            return total / args.steps

        variants = [(f"frame cache + aug, num_workers={w}", lambda w=w: loader_block(w)) for w in workers]
        variants += [("PyAV decode mp4 + resize + aug (1 process)", pyav_block),
                     (f"trainer consumption ({MODEL} clip step)", consume_block)]
        for _name, fn in variants:  # warm-up: worker start-up, first allocations, page cache
            fn()
        samples: dict[str, list[float]] = {name: [] for name, _ in variants}
        for rep in range(args.reps):
            for name, fn in variants:
                samples[name].append(fn())
            logger.info("rep %d/%d done", rep + 1, args.reps)
        for t in trainers.values():  # stop the persistent loader workers
            t.objective._iterators.clear()

    consume_name = variants[-1][0]
    consumed_fps = frames_per_batch / float(np.median(samples[consume_name]))
    rows = []
    for name, _ in variants:
        sec = float(np.median(samples[name]))
        fps = frames_per_batch / sec
        rows.append({
            "variant": name, "batch_ms": 1000 * sec, "min_ms": 1000 * min(samples[name]),
            "max_ms": 1000 * max(samples[name]), "clips_per_s": args.clip_batch / sec, "frames_per_s": fps,
            "x_consumption": fps / consumed_fps,
        })
    by = {r["variant"]: r for r in rows}
    pyav = by["PyAV decode mp4 + resize + aug (1 process)"]
    ratios = {f"{r['variant']} / consumption": r["x_consumption"] for r in rows if r["variant"] != consume_name}
    ratios.update({f"{r['variant']} / PyAV": r["frames_per_s"] / pyav["frames_per_s"]
                   for r in rows if r["variant"].startswith("frame cache")})
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dataset": {"root": str(root), "clips": len(clips),
                    "cache_frame_size": list(decoder.size[next(iter(decoder.size))]),
                    "source_size": [int(videos["width"].iloc[0]), int(videos["height"].iloc[0])]},
        "model": MODEL,
        "machine": finish_machine_facts(facts),
        "frames_per_batch": frames_per_batch,
        "rows": rows,
        "ratios": ratios,
        "goal": "frame cache frames/s >= 2 x trainer consumption",
        "samples_ms": {k: [1000 * x for x in v] for k, v in samples.items()},
    }
    print(f"\n## Data loading, clip level ({args.clip_batch} clips x {args.clip_frames} frames, {MODEL} transforms, "
          f"{report['machine']['cpu_model']}, {report['machine']['cpus']} CPUs, main process {args.threads} thread(s))\n")
    print(markdown_table(rows))
    print()
    print(markdown_table([{"comparison": k, "ratio": v} for k, v in ratios.items()]))
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
