"""Parallel backends give the same dataset root as the in-process run: a local process pool, and
Ray Data actor pools (ASR and LLM) on a local ``ray.init()`` with 2 workers."""

from __future__ import annotations

import threading
from http.server import HTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pipeline_fakes import FakeOpenAIHandler
from pipeline_media import media_config as _cfg

from data_pipeline.run import run_pipeline

TABLES = ("videos", "segments", "clips", "video_texts", "quarantine", "sentences")


@pytest.fixture(scope="module")
def llm_server():
    httpd = HTTPServer(("127.0.0.1", 0), FakeOpenAIHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


def _config(media_dir: Path, out: Path, server: str, **run):
    cfg = _cfg(media_dir, out)
    cfg.llm.backend, cfg.llm.model, cfg.llm.base_url, cfg.llm.api_key_env = "openai", "served", server, "PIPE_TEST_KEY"
    cfg.frames.enabled = False
    for k, v in run.items():
        setattr(cfg.run, k, v)
    return cfg


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(root / f"{t}.parquet") for t in TABLES}


@pytest.fixture(scope="module")
def reference(media_dir, llm_server, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PIPE_TEST_KEY", "sekret")
    out = tmp_path_factory.mktemp("ref")
    info = run_pipeline(_config(media_dir, out, llm_server))
    yield out, info
    mp.undo()


@pytest.mark.slow
def test_process_pool_equals_in_process(reference, media_dir, llm_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPE_TEST_KEY", "sekret")
    ref, ref_info = reference
    assert ref_info["counts"]["rewrite_by_status"].get("ok", 0) >= 1  # the LLM path really ran
    run_pipeline(_config(media_dir, tmp_path, llm_server, workers=2))
    for name, df in _tables(ref).items():
        pd.testing.assert_frame_equal(df, _tables(tmp_path)[name], check_exact=True)


@pytest.mark.slow
def test_ray_backend_equals_local(reference, media_dir, llm_server, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("PIPE_TEST_KEY", "sekret")  # before ray.init: workers inherit the environment
    ref, _ = reference
    try:
        info = run_pipeline(_config(media_dir, tmp_path, llm_server, backend="ray", workers=2))
    finally:
        ray.shutdown()
    assert info["counts"]["clips"] >= 1
    for name, df in _tables(ref).items():
        pd.testing.assert_frame_equal(df, _tables(tmp_path)[name], check_exact=True)
