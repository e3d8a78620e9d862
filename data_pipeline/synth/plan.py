"""One video's ground truth, decided before any pixel is drawn.

:func:`plan_video` draws, from the video's own random stream, the surgery's phase
sequence (skips and repeats), phase durations in frames, which tools appear when,
the title and description. Everything downstream (frames, narration, annotation
files) reads the plan, so the annotations are true by construction.

Random streams are keyed by (seed, video index, purpose), so a video does not change
when another video, or another purpose (e.g. narration) of the same video, changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import SynthConfig
from .taxonomy import ALL_TOOLS, SURGERY_TYPES, SurgeryType

# Purposes of the per-video random streams.
STREAM_PLAN, STREAM_ANATOMY, STREAM_RENDER, STREAM_NARRATION, STREAM_AUDIO = range(5)

SPLIT_NARRATED = "narrated_pretrain"
SPLIT_SILENT = "silent_pretrain"
SPLIT_EVAL = "eval"


def video_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, purpose)))


@dataclass
class PhaseSegment:
    phase_id: int
    start: int  # first frame
    end: int  # one past the last frame


@dataclass
class ToolInterval:
    tool: str
    port: str
    motion: str
    start: int
    end: int  # exclusive
    segment: int  # index into VideoPlan.segments


@dataclass
class VideoPlan:
    index: int
    video_id: str
    c101_id: int
    split: str
    kind: str  # narrated | silent
    surgery: str
    indication: str
    title: str
    description: str
    fps: int
    width: int
    height: int
    n_frames: int
    segments: list[PhaseSegment]
    tools: list[ToolInterval]
    initial_state: dict[str, float] = field(default_factory=dict)
    surgeon: int = 1  # Cataract-101's videos.csv columns
    experience: int = 1

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    @property
    def surgery_type(self) -> SurgeryType:
        return SURGERY_TYPES[self.surgery]

    def phase_per_frame(self) -> np.ndarray:
        labels = np.zeros(self.n_frames, np.int64)
        for seg in self.segments:
            labels[seg.start:seg.end] = seg.phase_id
        return labels

    def tool_matrix(self) -> np.ndarray:
        """(n_frames, len(ALL_TOOLS)) uint8 presence, columns in ALL_TOOLS order."""
        out = np.zeros((self.n_frames, len(ALL_TOOLS)), np.uint8)
        col = {t: i for i, t in enumerate(ALL_TOOLS)}
        for iv in self.tools:
            out[iv.start:iv.end, col[iv.tool]] = 1
        return out

    def segment_at(self, frame: int) -> int:
        for k, seg in enumerate(self.segments):
            if seg.start <= frame < seg.end:
                return k
        raise IndexError(f"frame {frame} outside 0..{self.n_frames - 1}")

    def states_at_segment_starts(self) -> list[dict[str, float]]:
        """Tissue state entering each segment (after the previous segments completed)."""
        st = dict(self.initial_state)
        out = []
        for seg in self.segments:
            out.append(dict(st))
            spec = self.surgery_type.phase(seg.phase_id)
            st.update(spec.sets)
            st.update(spec.targets)
            for key in spec.pulses:
                st[key] = 0.0
        return out

    def state_at(self, frame: int, starts: list[dict[str, float]] | None = None) -> dict[str, float]:
        starts = starts if starts is not None else self.states_at_segment_starts()
        k = self.segment_at(frame)
        seg = self.segments[k]
        spec = self.surgery_type.phase(seg.phase_id)
        progress = (frame - seg.start + 0.5) / (seg.end - seg.start)
        st = dict(starts[k])
        st.update(spec.sets)
        for key, target in spec.targets.items():
            st[key] = st[key] + (target - st[key]) * progress
        for key in spec.pulses:
            st[key] = math.sin(math.pi * progress)
        return st


def assign_surgeries(cfg: SynthConfig, n: int, salt: int) -> list[str]:
    """Balanced surgery types for ``n`` videos of one split (weighted round-robin, then shuffled)."""
    weights = np.asarray(cfg.surgery_weights, float) / sum(cfg.surgery_weights)
    credit = np.zeros(len(weights))
    out = []
    for _ in range(n):
        credit += weights
        k = int(np.argmax(credit))
        credit[k] -= 1
        out.append(cfg.surgery_types[k])
    rng = np.random.default_rng(np.random.SeedSequence(entropy=cfg.seed, spawn_key=(10**6 + salt,)))
    rng.shuffle(out)
    return out


def dataset_plan(cfg: SynthConfig) -> list[tuple[int, str, str, str]]:
    """(index, split, kind, surgery) for every video of the dataset."""
    rows = []
    for salt, (split, n, kind) in enumerate((
        (SPLIT_NARRATED, cfg.n_narrated, "narrated"),
        (SPLIT_SILENT, cfg.n_silent, "silent"),
        (SPLIT_EVAL, cfg.n_eval, cfg.eval_kind),
    )):
        for surgery in assign_surgeries(cfg, n, salt):
            rows.append((len(rows), split, kind, surgery))
    return rows


def video_id_of(index: int) -> str:
    return f"synth{index:04d}"


def plan_video(cfg: SynthConfig, index: int, split: str, kind: str, surgery: str) -> VideoPlan:
    rng = video_rng(cfg.seed, index, STREAM_PLAN)
    st = SURGERY_TYPES[surgery]
    indication = st.indications[rng.integers(len(st.indications))]
    sequence = _phase_sequence(st, indication.skip, rng, cfg.repeat_prob_scale)
    fps = cfg.fps
    min_frames = max(1, math.ceil(cfg.min_phase_s * fps))
    n_frames = max(round(rng.uniform(*cfg.duration_s) * fps), min_frames * len(sequence))
    weights = np.array([st.phase(p).weight for p in sequence]) * rng.lognormal(0.0, 0.35, len(sequence))
    lengths = _allocate(n_frames, weights, min_frames)
    segments, start = [], 0
    for pid, length in zip(sequence, lengths, strict=False):
        segments.append(PhaseSegment(pid, start, start + int(length)))
        start += int(length)
    tools = _tool_intervals(st, segments, rng)
    initial = dict(st.initial)
    if "density" in initial:
        initial["density"] = float(rng.uniform(0.3, 0.8))
    initial.update(dict(indication.initial))
    title = indication.titles[rng.integers(len(indication.titles))]
    description = _description(st, indication.name, rng)
    surgeon = int(rng.integers(1, 5))
    return VideoPlan(
        index=index, video_id=video_id_of(index), c101_id=1000 + index, split=split, kind=kind,
        surgery=surgery, indication=indication.name, title=title, description=description, fps=fps,
        width=cfg.width, height=cfg.height, n_frames=n_frames, segments=segments, tools=tools,
        initial_state=initial, surgeon=surgeon, experience=1 if surgeon <= 2 else 2,
    )


def _phase_sequence(st: SurgeryType, skip: tuple[int, ...], rng: np.random.Generator, repeat_scale: float) -> list[int]:
    present = [p for p in st.phases if p.id not in skip and not (p.skip_prob and rng.random() < p.skip_prob)]
    present_ids = {p.id for p in present}
    seq = []
    for p in present:
        seq.append(p.id)
        for after, inserted, prob in st.repeats:
            if after == p.id and inserted in present_ids and rng.random() < prob * repeat_scale:
                seq.append(inserted)
    return seq


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` frames proportionally to ``weights``, each part >= ``minimum`` (largest remainder)."""
    extra = total - minimum * len(weights)
    share = extra * weights / weights.sum()
    parts = np.floor(share).astype(int)
    rest = extra - parts.sum()
    parts[np.argsort(-(share - parts), kind="stable")[:rest]] += 1
    return parts + minimum


def _tool_intervals(st: SurgeryType, segments: list[PhaseSegment], rng: np.random.Generator) -> list[ToolInterval]:
    out = []
    for k, seg in enumerate(segments):
        n = seg.end - seg.start
        for use in st.phase(seg.phase_id).tools:
            if rng.random() >= use.prob:
                continue
            if use.primary:
                a = seg.start + int(rng.uniform(0.0, 0.12) * n)
                b = seg.start + int(math.ceil(rng.uniform(0.85, 1.0) * n))
            else:
                length = max(1, int(rng.uniform(0.25, 0.6) * n))
                a = seg.start + int(rng.integers(0, max(1, n - length + 1)))
                b = a + length
            b = min(max(b, a + 1), seg.end)
            out.append(ToolInterval(use.tool, use.port, use.motion, a, b, k))
    return out


_DETAILS = {
    "cataract": (
        "{size} mm temporal clear corneal incision, continuous curvilinear capsulorhexis, {technique} "
        "nucleus removal and a {iol} in the bag.",
        ("2.2", "2.4", "2.75"), ("divide-and-conquer", "stop-and-chop", "phaco-chop"),
        ("hydrophobic acrylic single-piece IOL", "toric IOL", "three-piece IOL"),
    ),
    "trabeculectomy": (
        "{size} mm fornix-based conjunctival flap, {technique} scleral flap, mitomycin C {iol}, "
        "sclerostomy with peripheral iridectomy and releasable sutures.",
        ("8", "10"), ("rectangular", "triangular"), ("0.2 mg/ml for 2 minutes", "0.4 mg/ml for 3 minutes"),
    ),
    "vitrectomy": (
        "{size}-gauge three-port pars plana vitrectomy with {technique} viewing; {iol}.",
        ("23", "25", "27"), ("wide-angle", "contact-lens"), ("the procedure was uneventful", "no complications"),
    ),
}


def _description(st: SurgeryType, indication: str, rng: np.random.Generator) -> str:
    template, sizes, techniques, iols = _DETAILS[st.key]
    eye = "Right" if rng.random() < 0.5 else "Left"
    age = int(rng.integers(45 if st.key != "cataract" else 55, 88))
    sex = "female" if rng.random() < 0.5 else "male"
    body = template.format(size=sizes[rng.integers(len(sizes))], technique=techniques[rng.integers(len(techniques))],
                           iol=iols[rng.integers(len(iols))])
    return f"{eye} eye of a {age}-year-old {sex} patient with {indication}. {st.name}: {body}"
