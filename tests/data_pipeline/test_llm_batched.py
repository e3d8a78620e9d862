"""The batched LLM path: CTranslate2 (converted once, cached) and the chunked generation the stages use."""

from __future__ import annotations

import os

import pytest

from data_pipeline.config import LLMConfig
from data_pipeline.llm import LLM, CTranslate2LLM, generate_in_batches, llm_model_id, load_llm

NARRATIONS = [
    "now we open the capsule gently with the cystotome",
    "uh so the phaco tip goes in and we start sculpting the nucleus",
    "we inject viscoelastic to deepen the anterior chamber",
    "the lens is folded in the injector and goes into the bag",
    "irrigation aspiration removes the remaining cortex",
]


class RecordingLLM(LLM):
    """A test double that echoes its prompts and records each call's size (the real path is tested below)."""

    batch_size = 2

    def __init__(self):
        self.calls: list[list[str]] = []

    def generate(self, prompts, max_new_tokens):
        self.calls.append(list(prompts))
        return [p.upper() for p in prompts]


def test_batches_are_fixed_slices_of_all_items_so_a_rerun_forms_the_same_ones():
    llm, stored, ticks = RecordingLLM(), [], []
    items = [*NARRATIONS, NARRATIONS[0]]  # a repeated narration is generated once
    generate_in_batches(llm, items, items, lambda chunk: list(chunk),
                        lambda todo, out: stored.extend(zip(todo, out, strict=True)), 16, progress=lambda: ticks.append(1))
    order = sorted(set(NARRATIONS))
    assert llm.calls == [order[0:2], order[2:4], order[4:5]]
    assert stored == [(n, n.upper()) for n in order] and len(ticks) == len(order)
    # After a kill, only the last two are pending: their batches are generated whole, as the first time.
    rerun, again = RecordingLLM(), []
    generate_in_batches(rerun, items, order[3:], lambda chunk: list(chunk),
                        lambda todo, out: again.extend(zip(todo, out, strict=True)), 16)
    assert rerun.calls == [order[2:4], order[4:5]]
    assert again == [(n, n.upper()) for n in order[3:]]


def test_unknown_backend_lists_the_known_ones():
    from data_pipeline.errors import StageError

    with pytest.raises(StageError, match="known: none, transformers, ctranslate2, openai"):
        load_llm(LLMConfig(backend="vllm"))


@pytest.mark.slow  # the one-time conversions (GGUF -> safetensors -> CTranslate2 int8) take about 30 s on 2 cores
def test_ctranslate2_converts_once_and_reruns_write_the_same_text(tmp_path):
    prompts = {n: f"Rewrite this surgical narration as one clear sentence: {n}" for n in NARRATIONS}
    cfg = LLMConfig(backend="ctranslate2", cache_dir=str(tmp_path / "cache"), batch_size=2, device="cpu")
    llm = load_llm(cfg)
    assert isinstance(llm, CTranslate2LLM) and llm.model_id == llm_model_id(cfg) == "ctranslate2:SmolLM2-135M-Instruct.Q4_1:int8"
    first: dict[str, str] = {}
    generate_in_batches(llm, NARRATIONS, NARRATIONS, lambda chunk: [prompts[n] for n in chunk],
                        lambda todo, out: first.update(zip(todo, out, strict=True)), 32)
    assert set(first) == set(NARRATIONS) and all(text.strip() for text in first.values())
    converted = sorted((tmp_path / "cache").glob("*-ct2-int8/model.bin"))
    assert len(converted) == 1
    mtime = os.stat(converted[0]).st_mtime_ns
    # A new process in spirit: the cached conversion is read, and a rerun of the last three
    # (as after a kill) writes byte-identical text.
    again = load_llm(cfg)
    assert os.stat(converted[0]).st_mtime_ns == mtime
    rerun: dict[str, str] = {}
    pending = sorted(NARRATIONS)[2:]
    generate_in_batches(again, NARRATIONS, pending, lambda chunk: [prompts[n] for n in chunk],
                        lambda todo, out: rerun.update(zip(todo, out, strict=True)), 32)
    assert rerun == {n: first[n] for n in pending}
