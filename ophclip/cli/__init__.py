"""The ``ophclip`` command line: one typer app, one module per subcommand group.

Library errors print as one clean line; ``ophclip --debug ...`` shows the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from ophclip.allocator import keep_freed_memory
from ophclip.errors import OphclipError

app = typer.Typer(
    name="ophclip",
    help="OphCLIP: vision-language pretraining on ophthalmic surgery video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: an error names a file; a path broken over two lines cannot be copied back into a shell.
console = Console(stderr=True, soft_wrap=True)

# Each module defines ``register(app)``; order is the order of `ophclip --help`.
COMMAND_MODULES = (
    "synth",
    "pipeline",
    "pretrain",
    "ssl",
    "bank",
    "zeroshot",
    "probe",
    "distill",
    "stream",
    "demo",
    "doctor",
)

_state = {"debug": False}


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if debug:
        level = logging.DEBUG
    if console.is_terminal:
        logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    else:
        # Piped into a file or a CI log: whole lines with a timestamp, so paths stay on one line and grep works.
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Library INFO lines (stage summaries) are useful by default; third-party chatter is not.
    for name in ("ophclip", "data_pipeline", "retrieval", "benchmarks"):
        logging.getLogger(name).setLevel(min(level, logging.INFO))


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module_name = f"{__name__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)


def main() -> None:
    keep_freed_memory()  # every command trains or encodes on the CPU: see ophclip/allocator.py
    _register_all()
    try:
        app()
    except OphclipError as e:  # the one root of every package's errors (ophbase.errors)
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/bold red] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
