"""Ray Data backend for the model stages (the ``distributed`` extra).

ASR and LLM generation run as actor pools: each actor loads its model once in
``__init__`` and then serves batches, the pattern Ray Data recommends for batch
inference. Results come back in input order, so the driver writes the same state
records as the local backend. ``run.ray_address`` = "" starts a local Ray.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from .config import ASRConfig, LLMConfig, PipelineConfig
from .errors import StageError
from .llm import load_llm
from .transcribe import load_asr, transcribe_task

logger = logging.getLogger(__name__)


def _ensure_ray(cfg: PipelineConfig):
    try:
        import ray  # lazy: Ray is the optional `distributed` extra
    except ImportError:
        raise StageError("run.backend = ray needs Ray: pip install 'ophclip[distributed]'") from None
    if not ray.is_initialized():
        kwargs = {"address": cfg.run.ray_address} if cfg.run.ray_address else {"num_cpus": max(cfg.run.workers, 1)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    return ray


class ASRActor:
    def __init__(self, asr_cfg: dict):
        self.backend = load_asr(ASRConfig(**asr_cfg))

    def __call__(self, batch: dict) -> dict:
        recs = [transcribe_task(self.backend, {"path": p, "key": k}) for p, k in zip(batch["path"], batch["key"], strict=True)]
        return {"order": batch["order"], "record": [json.dumps(r) for r in recs]}


class LLMActor:
    def __init__(self, llm_cfg: dict, max_new_tokens: int):
        self.llm = load_llm(LLMConfig(**llm_cfg))
        self.max_new_tokens = max_new_tokens

    def __call__(self, batch: dict) -> dict:
        return {"order": batch["order"], "output": self.llm.generate(list(batch["prompt"]), self.max_new_tokens)}


def _map_in_order(cfg: PipelineConfig, items: list[dict], actor, kwargs: dict, out_key: str) -> list:
    ray = _ensure_ray(cfg)
    ds = ray.data.from_items([{**it, "order": k} for k, it in enumerate(items)])
    ds = ds.map_batches(actor, fn_constructor_kwargs=kwargs, batch_size=1, concurrency=max(cfg.run.workers, 1),
                        num_cpus=1, batch_format="numpy")
    rows = sorted(ds.take_all(), key=lambda r: int(r["order"]))
    if len(rows) != len(items):
        raise StageError(f"ray returned {len(rows)} results for {len(items)} items")
    return [r[out_key] for r in rows]


def run_asr_ray(tasks: list[dict], cfg: PipelineConfig) -> list[dict]:
    items = [{"path": t["path"], "key": t["key"]} for t in tasks]
    out = _map_in_order(cfg, items, ASRActor, {"asr_cfg": dataclasses.asdict(cfg.asr)}, "record")
    return [json.loads(str(r)) for r in out]


def run_llm_ray(prompts: list[str], cfg: PipelineConfig, max_new_tokens: int) -> list[str]:
    out = _map_in_order(cfg, [{"prompt": p} for p in prompts], LLMActor,
                        {"llm_cfg": dataclasses.asdict(cfg.llm), "max_new_tokens": max_new_tokens}, "output")
    return [str(o) for o in out]
