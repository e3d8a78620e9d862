"""`ophclip doctor`: what a bug report needs to know about this machine."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

import typer
from rich.console import Console
from rich.table import Table

from data_pipeline.offline_models import smollm2_gguf_file, whisper_tiny_en_dir

from ..errors import OphclipError


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        return "MISSING (apt-get install " + tool + ")"
    try:
        out = subprocess.run([tool, "--version" if tool != "ffmpeg" else "-version"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        first = "present"
    return f"{first} ({path})"


def collect() -> list[tuple[str, str]]:
    """Rows of (item, finding); used by the CLI and by tests."""
    # lazy: CLI start-up time (torch, and ophclip.pretrained which imports it)
    import torch

    from ..pretrained import minilm_dir

    rows: list[tuple[str, str]] = [
        ("python", f"{platform.python_version()} on {platform.platform()}"),
        ("ophclip", _version("ophclip")),
        ("torch", f"{torch.__version__}; CUDA available: {torch.cuda.is_available()}"
                  + (f" ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda})" if torch.cuda.is_available() else "")),
        ("bf16 on GPU", str(torch.cuda.is_available() and torch.cuda.is_bf16_supported())),
        ("torchvision", _version("torchvision")),
        ("open_clip_torch", _version("open_clip_torch")),
        ("transformers", _version("transformers")),
    ]
    try:
        import faiss  # lazy: faiss is an optional extra; whether it imports is one of the findings

        gpu = hasattr(faiss, "StandardGpuResources")
        ngpu = faiss.get_num_gpus() if gpu else 0
        rows.append(("faiss", f"{faiss.__version__}; GPU support: {gpu}; GPUs: {ngpu}"))
    except ImportError:
        rows.append(("faiss", "not installed (pip install 'ophclip[cpu]' or 'ophclip[gpu]')"))
    rows.append(("faster-whisper", _version("faster-whisper")))
    rows.append(("openai-whisper", _version("openai-whisper")))
    rows.append(("ray", _version("ray")))
    rows.append(("ffmpeg", _tool_version("ffmpeg")))
    rows.append(("espeak-ng", _tool_version("espeak-ng")))
    for label, locate in (
        ("model: faster-whisper tiny.en", whisper_tiny_en_dir),
        ("model: MiniLM (all-MiniLM-L6-v2)", minilm_dir),
        ("model: SmolLM2-135M GGUF", smollm2_gguf_file),
    ):
        try:
            rows.append((label, str(locate())))
        except OphclipError as e:  # the root of every package's errors, the pipeline's StageError too
            rows.append((label, f"NOT FOUND: {e}"))
    return rows


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor() -> None:
        """Report versions, GPU/faiss support, system tools and offline models (paste into bug reports)."""
        table = Table(title="ophclip doctor", show_lines=False)
        table.add_column("item", style="bold")
        table.add_column("finding")
        for item, finding in collect():
            table.add_row(item, finding)
        Console().print(table)
