"""The generator's config: plain dataclasses (data only), loaded from YAML by the CLI.

``data_pipeline`` does not import ``ophclip``, so these classes only declare fields;
``ophclip.config.load_config(SynthConfig, "configs/synth_tiny.yaml", overrides)``
maps a YAML file onto them, strictly. Every field has a default, so a YAML file only
states what differs. :func:`preset` returns the two shipped presets in code as well,
for callers that have no config file at hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError
from .taxonomy import SURGERY_TYPES


@dataclass
class NarrationConfig:
    """How narrated videos are spoken."""

    voices: list[str] = field(default_factory=lambda: ["en-us", "en-gb", "en-gb-x-rp", "en-us+m3", "en-gb-scotland"])
    words_per_minute: tuple[int, int] = (150, 185)  # espeak-ng -s, drawn per video
    unnarrated_phase_prob: float = 0.2  # a phase the surgeon does not talk about
    second_sentence_prob: float = 0.5  # a long phase may get a second sentence
    tool_mention_prob: float = 0.7  # a phase sentence names the tools in view ("..., with the Bonn forceps")
    chatter_prob: float = 0.35  # per gap between phases: irrelevant talk ("let me adjust the light")
    gap_s: tuple[float, float] = (0.3, 1.2)  # silence before a sentence
    sample_rate: int = 16000
    speech_peak: float = 0.5  # peak amplitude of speech in the mix
    room_noise: float = 0.002  # RMS of the background hiss (kept low so speech stands out)


@dataclass
class NuisanceConfig:
    """What keeps the frames honest; 0 turns a nuisance off."""

    jitter_px: float = 0.03  # camera shake amplitude, as a fraction of the frame height
    illumination: float = 0.15  # slow light drift, relative gain amplitude
    light_step_prob: float = 0.3  # per video: a sudden light adjustment somewhere
    blur_prob: float = 0.08  # fraction of time out of focus
    occlusion_prob: float = 0.3  # per video: a glove/drape briefly enters the view
    specular: float = 1.0  # strength of the microscope's light reflex on the cornea
    sensor_noise: float = 3.0  # std of additive noise, in 8-bit levels


@dataclass
class SynthConfig:
    """A synthetic narrated ophthalmic-surgery dataset (layout: ``data_pipeline.synth`` docs)."""

    seed: int = 0
    n_narrated: int = 30  # narrated pretraining videos
    n_silent: int = 30  # silent pretraining videos (the memory-bank pool)
    n_eval: int = 12  # held-out evaluation videos
    eval_kind: str = "narrated"  # narrated | silent: whether eval videos carry narration
    duration_s: tuple[float, float] = (30.0, 90.0)  # per video, drawn uniformly
    fps: int = 8
    width: int = 192
    height: int = 160
    surgery_types: list[str] = field(default_factory=lambda: ["cataract", "trabeculectomy", "vitrectomy"])
    surgery_weights: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    min_phase_s: float = 1.0  # no phase is shorter than this
    repeat_prob_scale: float = 1.0  # scales every surgery type's phase-repeat probabilities
    qp: int = 26  # H.264 constant quantiser (lower = better quality, bigger files); see writer.write_mp4
    workers: int = 2  # processes rendering videos in parallel
    narration: NarrationConfig = field(default_factory=NarrationConfig)
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: SynthConfig) -> None:
    """Raise :class:`InputError` naming the field when a value cannot work."""
    def bad(key: str, why: str) -> InputError:
        return InputError(f"synth config: {key} {why}")

    for key in ("n_narrated", "n_silent", "n_eval"):
        if getattr(cfg, key) < 0:
            raise bad(key, f"= {getattr(cfg, key)}; expected a count >= 0")
    if cfg.n_narrated + cfg.n_silent + cfg.n_eval == 0:
        raise bad("n_narrated/n_silent/n_eval", "are all 0; ask for at least one video")
    if cfg.eval_kind not in ("narrated", "silent"):
        raise bad("eval_kind", f"= {cfg.eval_kind!r}; expected 'narrated' or 'silent'")
    lo, hi = cfg.duration_s
    if not 0 < lo <= hi:
        raise bad("duration_s", f"= {list(cfg.duration_s)}; expected [min, max] with 0 < min <= max")
    if cfg.fps < 1:
        raise bad("fps", f"= {cfg.fps}; expected >= 1")
    if cfg.width < 32 or cfg.height < 32 or cfg.width % 2 or cfg.height % 2:
        raise bad("width/height", f"= {cfg.width}x{cfg.height}; expected even sizes >= 32 (H.264 needs even sizes)")
    unknown = [s for s in cfg.surgery_types if s not in SURGERY_TYPES]
    if unknown or not cfg.surgery_types:
        raise bad("surgery_types", f"= {cfg.surgery_types}; choose from {sorted(SURGERY_TYPES)}")
    if len(cfg.surgery_weights) != len(cfg.surgery_types) or any(w < 0 for w in cfg.surgery_weights) \
            or sum(cfg.surgery_weights) <= 0:
        raise bad("surgery_weights", f"= {cfg.surgery_weights}; expected one weight >= 0 per surgery type "
                                     f"({len(cfg.surgery_types)}), not all 0")
    if not 0 <= cfg.qp <= 51:
        raise bad("qp", f"= {cfg.qp}; expected an H.264 quantiser in 0..51 (26 is a good default)")
    if cfg.workers < 1:
        raise bad("workers", f"= {cfg.workers}; expected >= 1")
    if not cfg.narration.voices:
        raise bad("narration.voices", "is empty; give at least one espeak-ng voice (espeak-ng --voices=en)")
    if cfg.narration.sample_rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
        raise bad("narration.sample_rate", f"= {cfg.narration.sample_rate}; expected a standard AAC rate such as 16000")


TINY = dict(
    seed=0, n_narrated=4, n_silent=2, n_eval=2, duration_s=(8.0, 15.0), fps=8, width=96, height=80,
    surgery_weights=[1.0, 1.0, 1.0], min_phase_s=0.5, workers=2,
)
DEMO = dict(seed=0, n_narrated=90, n_silent=30, n_eval=12, duration_s=(30.0, 90.0), fps=8, width=192, height=160)
PRESETS = {"tiny": TINY, "demo": DEMO}


def preset(name: str, **changes) -> SynthConfig:
    """The shipped presets (they match configs/synth_<name>.yaml), with optional field changes."""
    if name not in PRESETS:
        raise InputError(f"unknown synth preset {name!r}; known: {', '.join(PRESETS)}")
    return dataclasses.replace(SynthConfig(**PRESETS[name]), **changes)
