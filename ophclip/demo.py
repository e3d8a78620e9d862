"""`ophclip demo`: run the whole chain on the synthetic dataset and write a report.

The demo is a list of stages. Each stage reads what earlier stages left in the
:class:`DemoContext`, writes its files into ``out_dir``, stores its numbers in
``ctx.results[stage.name]`` and returns a Markdown section. After every stage the
report (``report.md``) and the numbers (``counts.json``) are rewritten, so a demo that
stops half-way still leaves a readable report of what ran. Later capabilities append
their stage to :data:`STAGES`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ophclip
from data_pipeline.config import OPHTHALMIC_ASR_PROMPT, PipelineConfig
from data_pipeline.evaluate_pipeline import evaluate
from data_pipeline.frame_cache import FrameCache
from data_pipeline.run import run_pipeline
from data_pipeline.synth import SynthConfig, build_root_from_ground_truth, generate_dataset
from data_pipeline.synth.config import DEMO
from data_pipeline.synth.preview import contact_sheet, phase_timeline, read_phase_segments
from data_pipeline.synth.taxonomy import SURGERY_TYPES
from ophbase.io import atomic_write_json, atomic_write_text
from retrieval import MemoryBank

from .bank import bank_gallery, build_bank
from .config import apply_overrides, from_dict, load_config, save_config
from .datasets import BenchmarkConfig
from .distill import DistillConfig
from .errors import ConfigError
from .eval.config import ModelRef, ZeroShotConfig
from .eval.run import run_zeroshot_config
from .prompts import resolve_prompt_file
from .stream import demo_stream_stage
from .train import PretrainConfig, pretrain
from .train.logs import loss_curve
from .train.objectives.distill import distill

logger = logging.getLogger(__name__)

DEMO_SHORT_SIDE = 160  # pixels of the frame cache's short side (the pretraining tower's input size)


@dataclass
class DemoContext:
    out_dir: Path
    synth_config: Path | None = None  # YAML for the dataset; None uses the built-in demo preset
    overrides: Sequence[str] = ()  # dotted overrides of the synth config
    workers: int | None = None  # None keeps the config's
    pipeline_videos: int = 12  # videos the pipeline stage transcribes (ASR is the slow part of the demo)
    pretrain_overrides: Sequence[str] = ()  # dotted overrides of configs/pretrain_demo.yaml
    results: dict[str, dict] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    @property
    def synth_dir(self) -> Path:
        return self.out_dir / "synth"

    @property
    def root_dir(self) -> Path:
        return self.out_dir / "root"


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[DemoContext], str]  # returns the Markdown body of its report section


# ---- stages ----------------------------------------------------------------------------------------
def synth_stage(ctx: DemoContext) -> str:
    """Generate the synthetic dataset, a contact sheet of frames per phase and phase timelines."""
    if ctx.synth_config is not None:
        cfg = load_config(SynthConfig, ctx.synth_config, list(ctx.overrides))
    else:  # the built-in demo preset (the same as configs/synth_demo.yaml), so an installed package runs
        cfg = from_dict(SynthConfig, apply_overrides(dict(DEMO), list(ctx.overrides)), source="<demo preset>")
    if ctx.workers is not None:
        cfg.workers = ctx.workers
    save_config(cfg, ctx.out_dir / "synth_config.yaml")
    summary = generate_dataset(cfg, ctx.synth_dir)
    contact_sheet(ctx.synth_dir, ctx.out_dir / "contact_sheet.png")
    phase_timeline(ctx.synth_dir, ctx.out_dir / "phase_timeline.png")
    c = summary["counts"]
    ctx.results["synth"] = {"counts": c, "elapsed_s": summary["elapsed_s"], "video_cpu_s": summary["video_cpu_s"],
                            "dir": str(ctx.synth_dir)}
    lines = [
        f"Generated `{ctx.synth_dir.name}/` in **{summary['elapsed_s']:.1f} s** with {cfg.workers} worker(s): "
        f"{c['videos']} videos, {c['frames']:,} frames ({c['duration_s'] / 60:.1f} min at {cfg.fps} fps, "
        f"{cfg.width}x{cfg.height} px), {c['mb_on_disk']:.1f} MB on disk. Rendering and encoding took "
        f"{summary['video_cpu_s']:.1f} CPU seconds summed over workers (the wall time on idle cores is about "
        f"that divided by the worker count; the difference is other load on this machine).",
        "",
        "| split | videos |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in c["by_split"].items()],
        "",
        "| surgery type | videos |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in c["by_surgery_type"].items()],
        "",
        f"Narration: {c['sentences']} spoken sentences, of which {c['chatter_sentences']} are irrelevant chatter; "
        f"{c['phase_occurrences']} phase occurrences in all.",
        "",
        "Frames per phase (middle frame of the phase, one video per column):",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
        "Phase timelines of a few videos, with narration (black) and chatter (grey):",
        "",
        "![phase timelines](phase_timeline.png)",
    ]
    return "\n".join(lines)


def ground_truth_root_stage(ctx: DemoContext) -> str:
    """A dataset root straight from the ground truth (no ASR), for training before the pipeline runs."""
    workers = ctx.workers or json.loads((ctx.synth_dir / "synth.json").read_text())["config"]["workers"]
    # 160 px: the ImageNet tower's features fade at the 64 px the first demo cached (README, "Features that transfer").
    run = build_root_from_ground_truth(ctx.synth_dir, ctx.root_dir, fps=4.0, short_side=DEMO_SHORT_SIDE,
                                       workers=workers)
    ctx.results["ground_truth_root"] = run
    c = run["counts"]
    return (f"Built `{ctx.root_dir.name}/` from the generator's ground truth in {run['elapsed_s']:.1f} s: "
            f"{c['videos']} videos, {c['segments']} script segments, {c['clips']} narration clips "
            f"(chatter removed, merged to >= 4 s), {c['video_texts']} title summaries, "
            f"{c['cached_frames']:,} cached frames at 4 fps (short side {DEMO_SHORT_SIDE} px).")


def phase_baseline_stage(ctx: DemoContext) -> str:
    """How hard are the phases? A linear probe on raw thumbnails, trained on pretraining videos, tested on eval."""
    result = phase_baseline(ctx.root_dir, ctx.synth_dir)
    ctx.results["phase_baseline"] = result
    r = result
    return (f"A linear (ridge) classifier on 16x16 raw-pixel thumbnails (PCA 64), trained on the {r['train_videos']} "
            f"pretraining videos ({r['train_frames']} frames) and tested on the {r['test_videos']} held-out videos "
            f"({r['test_frames']} frames):\n\n"
            f"| measure | value |\n|---|---|\n"
            f"| phase accuracy, {r['classes']} classes | **{r['accuracy']:.3f}** |\n"
            f"| balanced phase accuracy | {r['balanced_accuracy']:.3f} |\n"
            f"| phase accuracy when the surgery type is given | {r['accuracy_within_surgery']:.3f} |\n"
            f"| surgery-type accuracy | {r['surgery_type_accuracy']:.3f} |\n"
            f"| majority class / chance | {r['majority']:.3f} / {1 / r['classes']:.3f} |\n\n"
            f"This is a floor: a model that learns instrument shapes and tissue state across anatomies should "
            f"beat it by a wide margin.")


def phase_baseline(root: Path, synth_dir: Path, thumb: int = 16, stride: int = 2) -> dict:
    """Raw-pixel linear probe for phase recognition across videos (a floor any learned model should beat)."""

    cache = FrameCache(root)
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": str}, keep_default_na=False)
    segs = read_phase_segments(synth_dir)
    xs: dict[str, list] = {"train": [], "test": []}
    ys: dict[str, list] = {"train": [], "test": []}
    for m in meta.itertuples(index=False):
        part = "test" if m.split == "eval" else "train"
        frames = cache.frames(m.video_id)
        fps_cache, fps_src = cache.fps(m.video_id), float(m.fps)
        label = np.zeros(int(m.n_frames), np.int64)
        for s in segs[segs["video_id"] == m.video_id].itertuples(index=False):
            label[s.start:s.end] = s.phase_id
        for k in range(0, len(frames), stride):
            src = min(int(k / fps_cache * fps_src), len(label) - 1)
            img = Image.fromarray(np.asarray(frames[k])).resize((thumb, thumb), Image.BILINEAR)
            xs[part].append(np.asarray(img, np.float32).reshape(-1) / 255.0)
            ys[part].append(label[src])
    if not xs["train"] or not xs["test"]:
        raise ConfigError("the phase baseline needs pretraining and eval videos (n_eval > 0)")
    x_tr, y_tr, x_te, y_te = np.stack(xs["train"]), np.array(ys["train"]), np.stack(xs["test"]), np.array(ys["test"])
    # A ridge classifier: closed form, deterministic and fast, and as good a floor as a logistic probe here.
    model = make_pipeline(StandardScaler(), PCA(n_components=min(64, len(x_tr) - 1), random_state=0),
                          RidgeClassifier(alpha=10.0))
    model.fit(x_tr, y_tr)
    pred = model.predict(x_te)
    # Within the known surgery type: argmax over that surgery's phases only.
    scores = model.decision_function(x_te)
    classes = model.classes_
    surgery_of = {p.id: s for s, st in SURGERY_TYPES.items() for p in st.phases}
    allowed = np.array([[surgery_of[c] == surgery_of[y] for c in classes] for y in y_te])
    pred_within = classes[np.argmax(np.where(allowed, scores, -np.inf), axis=1)]
    values, counts = np.unique(y_tr, return_counts=True)
    majority = values[np.argmax(counts)]
    with warnings.catch_warnings():  # a held-out set may lack a rare phase; the score is still defined
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y_te, pred))
    return {
        "accuracy": float(accuracy_score(y_te, pred)),
        "balanced_accuracy": balanced,
        "accuracy_within_surgery": float(accuracy_score(y_te, pred_within)),
        "surgery_type_accuracy": float(np.mean([surgery_of[a] == surgery_of[b] for a, b in zip(pred, y_te, strict=True)])),
        "majority": float(np.mean(y_te == majority)),
        "classes": int(len(np.unique(np.concatenate([y_tr, y_te])))),
        "train_frames": len(y_tr), "test_frames": len(y_te),
        "train_videos": int((meta["split"] != "eval").sum()), "test_videos": int((meta["split"] == "eval").sum()),
    }


def pipeline_stage(ctx: DemoContext) -> str:
    """The data pipeline on the synthetic videos (real ASR, no LLM), scored against the generator's script."""
    out = ctx.out_dir / "pipeline_root"
    video_list = _pipeline_subset(ctx.synth_dir, ctx.out_dir / "pipeline_videos.csv", ctx.pipeline_videos)
    cfg = from_dict(PipelineConfig, apply_overrides({}, [
        f"input.videos={video_list}", f"output={out}", "llm.backend=none",
        f"run.workers={ctx.workers or 1}", "run.progress=false"]))
    cfg.asr.initial_prompt = OPHTHALMIC_ASR_PROMPT
    run = run_pipeline(cfg)
    m = evaluate(ctx.synth_dir, out)
    ctx.results["pipeline"] = {"counts": run["counts"], "metrics": m}
    c = run["counts"]
    return (f"`ophclip pipeline run` (faster-whisper tiny.en, offline) on {len(pd.read_csv(video_list))} of the "
            f"synthetic videos (half narrated, half silent; `--pipeline-videos` sets how many) into "
            f"`{out.name}/`: {c['videos_narrated']} narrated, {c['videos_silent']} silent, "
            f"{c['videos_quarantined']} quarantined; {c['clips']} clips.\n\n"
            f"| measure (vs the generator's script) | value |\n|---|---|\n"
            f"| narrated/silent accuracy | **{m['narrated_silent_accuracy']:.3f}** |\n"
            f"| WER of kept narration, before -> after lexicon correction | {m['wer_before']:.3f} -> {m['wer_after']:.3f} |\n"
            f"| sentence start, median abs. error | {m['start_mae_median_s']:.2f} s |\n"
            f"| chatter filter precision / recall | {m['chatter_precision']:.2f} / {m['chatter_recall']:.2f} |\n"
            f"| ASR throughput | {m['asr_audio_s_per_wall_s']:.2f} audio-s per wall-s |")


def pretrain_stage(ctx: DemoContext) -> str:
    """Pretrain the demo config's model on the ground-truth root (clip and video levels); plot the loss curve."""
    run_dir = ctx.out_dir / "pretrain"
    cfg = load_config(PretrainConfig, packaged_config("pretrain_demo.yaml"),
                      [f"data.root={ctx.root_dir}", f"train.output_dir={run_dir}", *ctx.pretrain_overrides])
    summary = pretrain(cfg)
    png = loss_curve(run_dir / "log.jsonl", ctx.out_dir / "loss_curve.png", title="demo pretraining loss")
    ctx.results["pretrain"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, dict, list))}
    ctx.results["pretrain"]["model_dir"] = str(run_dir / "final")  # the distill stage's teacher
    first, last = _first_last_losses(run_dir / "log.jsonl")
    rows = "\n".join(f"| {level} | {first[level]:.3f} | {last[level]:.3f} |" for level in sorted(first) if level in last)
    given = "".join(f" {o}" for o in ctx.pretrain_overrides)  # e.g. an SSL warm start: model.init_vision_from=...
    return (f"`ophclip pretrain configs/pretrain_demo.yaml{given}` on `{ctx.root_dir.name}/` (held-out videos excluded): "
            f"{cfg.train.steps} steps of {cfg.model.name} at {summary['samples_per_s']:.1f} samples/s; "
            f"model saved to `{run_dir.name}/final/`.\n\n| level | loss, first 3 logged | loss, last 3 logged |\n"
            f"|---|---|---|\n{rows}\n\n![loss curve]({png.name})")


def zeroshot_stage(ctx: DemoContext) -> str:
    """Zero-shot phase, tool and surgery-type recognition on the held-out videos: trained vs random init."""
    rows = []
    # The baseline is the trained architecture with random weights (whatever the pretraining config chose).
    trained = load_config(PretrainConfig, ctx.out_dir / "pretrain" / "config.yaml")
    for label, model_name in (("demo-trained", str(ctx.out_dir / "pretrain" / "final")),
                              ("random init", trained.model.name)):
        out = ctx.out_dir / ("zeroshot" if label == "demo-trained" else "zeroshot_random_init")
        cfg = ZeroShotConfig(benchmark=BenchmarkConfig(name="synthetic", root=str(ctx.synth_dir)),
                             model=ModelRef(name=model_name), out=str(out))
        cfg.eval.seed = 0
        r = run_zeroshot_config(cfg, progress=False)
        ctx.results[f"zeroshot_{label.replace(' ', '_').replace('-', '_')}"] = r
        p, c = r["phase"], r["phase"]["chance"]
        g = p["given_group"]
        rows.append(f"| {label} | **{p['video_accuracy']:.3f}** | {p['video_f1']:.3f} | **{g['video_accuracy']:.3f}** "
                    f"| {p['pooled_accuracy']:.3f} "
                    f"| {r['tools']['mAP']:.3f} | {r['surgery_type']['accuracy']:.3f} | {r['retrieval']['text_to_video']['R@5']:.3f} |")
    rows.append(f"| chance (uniform / random guess) | {c['uniform_accuracy']:.3f} | {c['random_video_f1']:.3f} "
                f"| {g['chance_uniform_accuracy']:.3f} | {c['random_pooled_accuracy']:.3f} | {r['tools']['chance']['mAP']:.3f} "
                f"| {r['surgery_type']['chance']['uniform_accuracy']:.3f} | {min(1.0, 5 / max(r['retrieval']['n_pairs'], 1)):.3f} |")
    return (f"`ophclip zeroshot configs/eval_synthetic.yaml` on the {r['n_videos']} held-out videos "
            f"({r['n_frames']} frames at {r['eval_fps']} fps), prompts `ophclip/prompts/synthetic.yaml`:\n\n"
            f"| model | phase acc. (mean over videos, {len(p['class_names'])} classes) | phase macro-F1 "
            f"| phase acc., surgery type known (~{g['mean_classes']:.0f} classes) | phase acc. (pooled) | tool mAP "
            "| surgery-type acc. | text->video R@5 |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nPhase ribbons: `zeroshot/ribbons/`; confusion matrix:\n\n![confusion](zeroshot/confusion_matrix.png)")


def retrieval_stage(ctx: DemoContext) -> str:
    """The silent-video memory bank: built with a random-init and with the demo-trained model; gallery and agreement."""


    cfg = load_config(PretrainConfig, ctx.out_dir / "pretrain" / "config.yaml")
    # The untrained model is saved first, so the bank and the gallery embed with the same weights.
    torch.manual_seed(cfg.train.seed)
    random_dir = ctx.out_dir / "random_init_model"
    ophclip.create_model(cfg.model.name).save_pretrained(random_dir)
    k, rows, numbers = cfg.retrieval.k, [], {}
    for label, checkpoint in (("random init", random_dir), ("demo-trained", ctx.out_dir / "pretrain" / "final")):
        tag = "trained" if label == "demo-trained" else "random_init"
        bank_dir = ctx.out_dir / f"bank_{tag}"
        info = build_bank(str(checkpoint), ctx.root_dir, bank_dir, n_frames=cfg.data.video_frames, progress=False)
        report = bank_gallery(bank_dir, ctx.out_dir / f"retrieval_gallery_{tag}.png",
                              labels_csv=ctx.synth_dir / "surgery_types.csv", k=k, n_show=4)
        agreement = report["label_agreement"]
        chance = _agreement_by_chance(bank_dir, report["query_labels"], ctx.synth_dir / "surgery_types.csv")
        numbers[tag] = {"bank": info, "label_agreement": agreement, "chance": chance}
        rows.append(f"| {label} | {info['count']} | **{agreement:.3f}** | {chance:.3f} |")
    ctx.results["retrieval"] = {"k": k, **numbers}
    mode = cfg.retrieval.mode
    return (f"Pretraining ran with retrieval on (`retrieval.mode: {mode}`, top-{k} silent neighbours per "
            f"narrated video, bank refreshed every {cfg.retrieval.refresh_every} steps after a "
            f"{cfg.retrieval.warmup_steps}-step warm-up). Afterwards `ophclip bank build` encodes the "
            f"{numbers['trained']['bank']['count']} silent videos of `{ctx.root_dir.name}/` and every narrated "
            f"video (training and held-out) queries it (maximum inner product, top {k}). Fraction of neighbours whose surgery type "
            f"matches the query's:\n\n| encoder | silent videos in the bank | same surgery type | chance |\n"
            f"|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nTop silent neighbours of a few narrated videos (green title: same surgery type), demo-trained "
            "encoder:\n\n![retrieval gallery](retrieval_gallery_trained.png)\n\nThe same with the random-init "
            "encoder: `retrieval_gallery_random_init.png`.")


def demo_teacher(ctx) -> str | None:
    """The demo's pretrained model folder: from this run's pretrain stage, or left in ``ctx.out_dir`` by an earlier one."""
    pretrained = ctx.results.get("pretrain", {}).get("model_dir")
    earlier = ctx.out_dir / "pretrain" / "final"
    if pretrained is None and (earlier / "model.safetensors").is_file():
        pretrained = str(earlier)  # e.g. `ophclip demo --stages pretrain`, then `--stages distill`
    return pretrained


def demo_distill_stage(ctx, overrides: Sequence[str] = ("train.steps=200",), progress: bool = True) -> str:
    """Distil the demo's teacher (the pretrain stage's model if it ran, now or earlier into the same folder,
    else the random-init default) on its root.

    ``ctx`` is :class:`ophclip.demo.DemoContext`; ``overrides`` are dotted :class:`DistillConfig` overrides
    applied last. Stores ``ctx.results["distill"]`` and returns Markdown.
    """
    pretrained = demo_teacher(ctx)
    prompts = resolve_prompt_file("synthetic")
    base = [f"data.root={ctx.root_dir}", f"train.output_dir={ctx.out_dir / 'distill'}",
            f"teacher.name={pretrained or 'OphCLIP-tiny-MiniLM'}"]
    if prompts.is_file():
        base.append(f"data.prompts={prompts}")
    cfg = load_config(DistillConfig, None, [*base, *overrides])
    steps = cfg.train.steps
    result = distill(cfg, progress=progress)
    params = result.counts["parameters"]
    ctx.results["distill"] = {"student_dir": str(result.student_dir), "teacher": cfg.teacher.name,
                              "agreement": result.agreement, "parameters": params, "seconds": result.seconds,
                              "first_loss": result.counts["first_loss"], "final_loss": result.counts["final_loss"],
                              "history": result.history, "counts": result.counts}
    teacher_note = "the pretrain stage's model" if pretrained else "the random-init OphCLIP-tiny-MiniLM (no pretrain stage ran)"
    rows = [f"| {k} | {v:.3f} |" for k, v in result.agreement.items() if isinstance(v, float)]
    return "\n".join([
        f"Distilled {teacher_note} into `{cfg.student.name}` in {result.seconds:.1f} s ({steps} steps): "
        f"{params['student']['vision']:,} vision parameters against the teacher's {params['teacher']['vision']:,} "
        f"({result.counts['vision_compression']:.1f}x fewer); loss {result.counts['first_loss']:.3f} -> "
        f"{result.counts['final_loss']:.3f}. The student carries the teacher's frozen text tower, so the same prompts work.",
        "", f"Agreement with the teacher ({result.agreement['measured_on']}):", "", "| measure | value |", "|---|---|",
        *rows])


def _agreement_by_chance(bank_dir: Path, query_labels: dict[str, str | None], labels_csv: Path) -> float:
    """Expected same-label fraction if neighbours were drawn at random from the bank."""
    label_of = dict(pd.read_csv(labels_csv, dtype=str).itertuples(index=False, name=None))
    bank_labels = pd.Series([label_of.get(v) for v in MemoryBank.load(bank_dir).ids])
    share = bank_labels.value_counts(normalize=True)
    return float(sum(share.get(q, 0.0) for q in query_labels.values()) / max(len(query_labels), 1))


def packaged_config(name: str) -> Path:
    """A YAML from the repo's configs/ (the demo runs from a checkout; `make demo`)."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    if not path.is_file():
        raise ConfigError(f"{path} not found: `ophclip demo` runs from a source checkout (git clone, then make demo)")
    return path


def _first_last_losses(log_path: Path) -> tuple[dict[str, float], dict[str, float]]:
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    by_level: dict[str, list[float]] = {}
    for rec in records:
        for key, value in rec.items():
            if key.startswith("loss/") and key.count("/") == 1 and isinstance(value, (int, float)):
                by_level.setdefault(key[5:], []).append(float(value))
    first = {k: sum(v[:3]) / len(v[:3]) for k, v in by_level.items() if v}
    last = {k: sum(v[-3:]) / len(v[-3:]) for k, v in by_level.items() if v}
    return first, last


def _pipeline_subset(synth_dir: Path, out_csv: Path, n: int) -> Path:
    """The first n/2 narrated and n/2 silent pretraining videos, so ASR fits the demo's time budget."""
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": str})
    meta = meta[meta["split"] != "eval"]
    picked = pd.concat([g.head((n + 1) // 2) for _, g in meta.groupby("kind", sort=True)])
    picked = picked.assign(path=[str((synth_dir / p).resolve()) for p in picked["path"]])
    atomic_write_text(out_csv, picked.to_csv(index=False))
    return out_csv


STAGES: list[Stage] = [
    Stage("synth", "Synthetic narrated surgery dataset", synth_stage),
    Stage("ground_truth_root", "Dataset root from the ground truth", ground_truth_root_stage),
    Stage("phase_baseline", "How hard are the phases? (raw-pixel baseline)", phase_baseline_stage),
    Stage("pipeline", "Data pipeline: ASR, denoising, clips (scored against the script)", pipeline_stage),
    Stage("pretrain", "Hierarchical pretraining (clip and video levels)", pretrain_stage),
    Stage("zeroshot", "Zero-shot evaluation on the held-out videos", zeroshot_stage),
    Stage("retrieval", "Silent-video memory bank and retrieval", retrieval_stage),
    Stage("distill", "Real-time student (distillation)", lambda ctx: demo_distill_stage(
          ctx, ("train.steps=100", "student.name=OphCLIP-student-RN-Micro"))),
    Stage("stream", "Streaming phase recognition", demo_stream_stage),
]


# ---- orchestration ---------------------------------------------------------------------------------
def run_demo(out_dir: str | Path, synth_config: str | Path | None = None, overrides: Sequence[str] = (),
             stages: Sequence[str] | None = None, workers: int | None = None, pipeline_videos: int = 12,
             pretrain_overrides: Sequence[str] = ()) -> Path:
    """Run the demo stages in order (all, or the named ones) and return the path of ``report.md``."""
    known = [s.name for s in STAGES]
    unknown = [s for s in (stages or []) if s not in known]
    if unknown:
        raise ConfigError(f"unknown demo stage {unknown[0]!r}; stages are: {', '.join(known)}")
    if overrides and stages and "synth" not in stages:
        # Otherwise they would be dropped without a word (e.g. a second pretraining override
        # written without its own --pretrain flag).
        raise ConfigError(f"synth config overrides {list(overrides)} were given, but the synth stage does not run; "
                          "pretraining overrides each need their own flag: --pretrain KEY=VALUE")
    ctx = DemoContext(Path(out_dir), Path(synth_config) if synth_config else None, tuple(overrides), workers,
                      pipeline_videos=pipeline_videos, pretrain_overrides=tuple(pretrain_overrides))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    for stage in STAGES:
        if stages and stage.name not in stages:
            continue
        logger.info("demo stage %s: %s", stage.name, stage.title)
        t0 = time.perf_counter()
        body = stage.run(ctx)
        timings[stage.name] = round(time.perf_counter() - t0, 2)
        ctx.sections.append(f"## {stage.title}\n\n{body}\n\n_stage `{stage.name}`: {timings[stage.name]:.1f} s_\n")
        _write_report(ctx, timings, time.perf_counter() - t_all)
    return ctx.out_dir / "report.md"


def _write_report(ctx: DemoContext, timings: dict[str, float], total_s: float) -> None:
    head = (f"# OphCLIP demo report\n\nEverything below was produced by `ophclip demo --out {ctx.out_dir}` on "
            f"this machine, in {total_s:.1f} s so far ({', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}).\n")
    atomic_write_text(ctx.out_dir / "report.md", head + "\n" + "\n".join(ctx.sections))
    atomic_write_json(ctx.out_dir / "counts.json", {"timings_s": timings, **ctx.results})
