"""`ophclip bank`: build the silent-video memory bank from a checkpoint, and query it.

    ophclip bank build runs/pretrain/model out/dataset --out runs/bank
    ophclip bank query runs/bank --text "the surgeon removes the lens" -k 5
    ophclip bank query runs/bank --video silent_0007          # a video id of the dataset root
    ophclip bank query runs/bank --video clip.mp4 -k 10       # any video file
    ophclip bank gallery runs/bank --labels synth/surgery_types.csv --out report/gallery.png

``build`` writes the bank (``retrieval.MemoryBank.save``) plus ``build.json`` naming the
checkpoint and dataset root, so ``query`` needs only the bank folder.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

# ophclip.bank is imported inside each command (lazy): it needs faiss, an optional extra, and the
# model stack (open_clip, transformers), and `ophclip --help` must start fast and without them.


def register(app: typer.Typer) -> None:
    bank_app = typer.Typer(help="Build and query the silent-video memory bank (FAISS).", no_args_is_help=True)

    @bank_app.command("build")
    def build(
        checkpoint: str = typer.Argument(..., help="save_pretrained folder (or a registered model name)."),
        dataset_root: Path = typer.Argument(..., help="Dataset root with videos.parquet and frames/."),
        out: Path = typer.Option(..., "--out", help="Folder to write the bank into."),
        index: str = typer.Option(
            "flat", "--index", help="flat (exact) | ivf | hnsw; see retrieval.indexes."
        ),
        frames: int = typer.Option(8, "--frames", help="Frames per silent video."),
        batch_size: int = typer.Option(16, "--batch-size", help="Videos per encoding batch."),
    ) -> None:
        """Encode the silent videos of DATASET_ROOT with CHECKPOINT and save the bank."""
        from ..bank import build_bank  # lazy: see the note at the top

        info = build_bank(checkpoint, dataset_root, out, index=index, n_frames=frames, batch_size=batch_size)
        table = Table(title=f"memory bank -> {out}")
        table.add_column("item", style="bold")
        table.add_column("value")
        for key in ("count", "dim", "index", "n_frames", "encode_s", "checkpoint", "dataset_root"):
            table.add_row(key, str(info[key]))
        Console().print(table)

    @bank_app.command("query")
    def query(
        bank_dir: Path = typer.Argument(..., help="Folder written by `ophclip bank build`."),
        text: str = typer.Option(None, "--text", help="A sentence to search the silent videos with."),
        video: str = typer.Option(None, "--video", help="A video file, or a video id of the dataset root."),
        k: int = typer.Option(5, "-k", help="How many silent videos to show."),
        checkpoint: str = typer.Option(
            None, "--checkpoint", help="Model to encode the query (default: the bank's)."
        ),
        root: Path = typer.Option(None, "--root", help="Dataset root for --video ids (default: the bank's)."),
    ) -> None:
        """Print the top-K silent videos for a text or a video, with cosine scores."""
        from ..bank import query_bank  # lazy: see the note at the top

        hits = query_bank(bank_dir, text=text, video=video, k=k, checkpoint=checkpoint, dataset_root=root)
        table = Table(
            title=f"top-{k} silent videos for {'text ' + repr(text) if text is not None else 'video ' + video}"
        )
        table.add_column("rank", justify="right")
        table.add_column("video_id")
        table.add_column("score", justify="right")
        for rank, (vid, score) in enumerate(hits, 1):
            table.add_row(str(rank), vid, f"{score:.4f}")
        Console().print(table)

    @bank_app.command("gallery")
    def gallery(
        bank_dir: Path = typer.Argument(..., help="Folder written by `ophclip bank build`."),
        out: Path = typer.Option(
            ..., "--out", help="PNG to write (a .json with the numbers goes beside it)."
        ),
        labels: Path = typer.Option(
            None, "--labels", help="CSV with video_id and a label column (e.g. surgery_types.csv)."
        ),
        label_column: str = typer.Option("surgery_type", "--label-column"),
        k: int = typer.Option(4, "-k", help="Neighbours per query."),
        show: int = typer.Option(4, "--show", help="Queries drawn in the PNG (all are measured)."),
        checkpoint: str = typer.Option(
            None, "--checkpoint", help="Model to encode the queries (default: the bank's)."
        ),
        root: Path = typer.Option(
            None, "--root", help="Dataset root of the narrated queries (default: the bank's)."
        ),
    ) -> None:
        """Top-K silent neighbours of the narrated videos: a PNG gallery and the label-agreement fraction."""
        from ..bank import bank_gallery  # lazy: see the note at the top

        report = bank_gallery(
            bank_dir,
            out,
            labels_csv=labels,
            label_column=label_column,
            n_show=show,
            k=k,
            checkpoint=checkpoint,
            dataset_root=root,
        )
        line = f"{report['n_queries']} narrated queries, top-{k} silent neighbours -> {out}"
        if report["label_agreement"] is not None:
            line += f"; {label_column} agreement {report['label_agreement']:.3f}"
        Console().print(line)

    app.add_typer(bank_app, name="bank")
