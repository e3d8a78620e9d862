"""Rewrite and title-summary stages: validation, cache, the OpenAI-compatible HTTP backend, and the
real offline SmolLM2 GGUF through transformers."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import HTTPServer

import pytest
from pipeline_fakes import FakeOpenAIHandler

from data_pipeline.cache import JsonCache
from data_pipeline.config import LLMConfig, RewriteConfig, SummaryConfig
from data_pipeline.errors import StageError
from data_pipeline.lexicon import Lexicon
from data_pipeline.llm import OpenAICompatibleLLM, llm_model_id, load_llm
from data_pipeline.rewrite import Rewriter, clean_output, validate_rewrite
from data_pipeline.summarize import SUMMARY_KEYS, Summarizer, parse_summary, render_summary


@pytest.fixture(scope="module")
def lexicon():
    return Lexicon.from_file()


@pytest.mark.parametrize(
    "output,expected",
    [
        ("The cystotome opens the anterior capsule.", "ok"),
        ("The forceps open the anterior capsule with the cystotome.", "invented_terms"),  # forceps not in input
        ("The surgeon opens it.", "dropped_terms"),  # cystotome + anterior capsule dropped
        ("Cystotome.", "too_short"),
        (" ".join(["cystotome anterior capsule"] * 20), "too_long"),
    ],
)
def test_validate_rewrite(lexicon, output, expected):
    source = "Okay now the cystotome opens the anterior capsule."
    assert validate_rewrite(source, output, lexicon, RewriteConfig()) == expected


def test_clean_output():
    assert clean_output('\n"Rewritten: The lens is placed."\nextra') == "The lens is placed."
    assert clean_output("Narration: The lens is placed.") == "The lens is placed."


def test_parse_summary_schema():
    good = {k: ("x" if t is str else ["a"]) for k, t in SUMMARY_KEYS.items()}
    obj, err = parse_summary("Sure! ```json\n" + json.dumps(good) + "\n```")
    assert err is None and obj == good
    assert parse_summary(json.dumps({**good, "key_steps": "one"}))[1] == "key_steps must be a list of strings"
    assert "missing keys" in parse_summary(json.dumps({"surgery": "x"}))[1]
    assert parse_summary("no json here")[1] == "no JSON object in the reply"
    assert render_summary(good).startswith("x. Indication: x. Objective: x. Key steps: a.")


@pytest.fixture()
def server():
    FakeOpenAIHandler.requests = []
    httpd = HTTPServer(("127.0.0.1", 0), FakeOpenAIHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


def test_openai_backend_rewrite_validate_and_cache(server, monkeypatch, lexicon, tmp_path):
    monkeypatch.setenv("MY_KEY", "sekret")
    cfg = LLMConfig(backend="openai", model="served-model", base_url=server, api_key_env="MY_KEY")
    llm = load_llm(cfg)
    assert llm.model_id == llm_model_id(cfg) == "openai:served-model"
    rw = Rewriter(RewriteConfig(), llm, lexicon, JsonCache(tmp_path), llm.model_id)
    narr = ["Okay so the cystotome opens the anterior capsule, right.", "The phaco probe enters."]
    rw.generate_pending(narr)
    assert len(FakeOpenAIHandler.requests) == 2
    req = FakeOpenAIHandler.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "served-model"
    assert narr[0] in req["body"]["messages"][0]["content"]  # the template was filled
    first = rw.result(narr[0])
    assert (first.text, first.model, first.status) == ("The cystotome opens the anterior capsule.", "openai:served-model", "ok")
    second = rw.result(narr[1])  # the reply drops "phaco probe" and invents "forceps" -> fallback
    assert (second.text, second.model, second.status) == (narr[1], "", "invented_terms")
    # rerun: every narration is cached, the server is not called again
    rw2 = Rewriter(RewriteConfig(), llm, lexicon, JsonCache(tmp_path), llm.model_id)
    assert rw2.pending(narr) == []
    rw2.generate_pending(narr)
    assert len(FakeOpenAIHandler.requests) == 2
    # title summary through the same server
    sm = Summarizer(SummaryConfig(), llm, lexicon, JsonCache(tmp_path), llm.model_id)
    sm.generate_pending([("Cataract surgery", "")])
    res = sm.result("Cataract surgery", "")
    assert res.status == "ok" and res.summary["post_op_care"] == "steroid drops"
    assert "Post-operative care: steroid drops." in res.text


def test_openai_backend_missing_key_is_explained(server, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    llm = OpenAICompatibleLLM(LLMConfig(backend="openai", model="m", base_url=server, api_key_env="NO_SUCH_KEY_VAR"))
    with pytest.raises(StageError, match=r"HTTP 401 .*is \$NO_SUCH_KEY_VAR set\?"):
        llm.generate(["hi"], 8)


def test_openai_backend_unreachable_server():
    llm = OpenAICompatibleLLM(LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", timeout_s=2))
    with pytest.raises(StageError, match="check llm.base_url"):
        llm.generate(["hi"], 8)


def test_summary_fallback_without_llm(lexicon, tmp_path):
    sm = Summarizer(SummaryConfig(), None, lexicon, JsonCache(tmp_path), "none")
    res = sm.result("Phacoemulsification with trypan blue", "Cystotome and IOL.")
    assert res.status == "disabled" and res.model == ""
    assert res.summary["medications"] == ["trypan blue"]
    assert res.summary["instruments"] == ["IOL", "cystotome"]
    assert res.summary["key_steps"] == ["phacoemulsification"]


@pytest.mark.slow
def test_smollm2_gguf_rewrite_and_summary(lexicon, tmp_path):
    """The real offline default: SmolLM2-135M-Instruct GGUF loaded by transformers (2 generations)."""
    cfg = LLMConfig(converted_dir=str(tmp_path / "smollm2"))
    llm = load_llm(cfg)  # dequantises the GGUF and saves a safetensors copy
    assert llm.model_id == "transformers:" + llm_model_id(cfg).split(":", 1)[1]
    cache = JsonCache(tmp_path)
    rw = Rewriter(RewriteConfig(max_new_tokens=16), llm, lexicon, cache, llm.model_id)
    narr = "Now we perform the capsulorhexis with the cystotome."
    rw.generate_pending([narr])
    res = rw.result(narr)
    assert res.status in ("ok", "too_short", "too_long", "invented_terms", "dropped_terms")
    assert res.text == narr if res.status != "ok" else res.model == llm.model_id
    # The converted copy loads without the GGUF and, decoding greedily, says exactly the same
    # (so caching across runs and conversions is sound).
    assert (tmp_path / "smollm2" / "model.safetensors").is_file()
    again = load_llm(cfg)
    assert again.model_id == llm.model_id
    assert again.generate(rw.prompts([narr]), 16) == [cache.get(rw.key(narr))["output"]]
    sm = Summarizer(SummaryConfig(max_new_tokens=16), llm, lexicon, cache, llm.model_id)
    sm.generate_pending([("Cataract surgery", "")])
    s = sm.result("Cataract surgery", "")
    assert set(s.summary) == set(SUMMARY_KEYS) and s.text
    shutil.rmtree(tmp_path / "smollm2")  # 0.5 GB of float32 weights
