"""`python -m batch`: score a folder or S3 prefix now (with a progress bar), or watch it and score new files.

    python -m batch score INPUT OUTPUT [--engine embedded|spark] [--workers N] [--aggregate mean:credit_limit ...]
    python -m batch watch INPUT OUTPUT [--interval 60] [--max-polls N]
    python -m batch customers OUTPUT       # every customer of the online store (make materialize), no input files

The model is the one ModelService serves (RUN_ID, else the registry alias), or `--model-dir` (a downloaded MLflow
model folder) for offline runs. Exit codes: 0 all scored, 1 some files rejected (listed), 2 the run could not start
(bad argument, MLflow/S3 unreachable: the message names the setting).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from batch.runner import BatchSummary, run_batch
from mlops.aws import ServiceUnavailable
from mlops.model import ModelBundle
from mlops.settings import ConfigurationError, Settings, load_settings

EXIT_OK, EXIT_REJECTS, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m batch", description="Batch churn scoring of account files.")
    commands = parser.add_subparsers(dest="command", required=True)
    customers = commands.add_parser("customers", help="score every customer of the online store (batch by id)")
    customers.add_argument("output", help="folder or s3://bucket/prefix; the file goes under <output>/<run id>/")
    customers.add_argument("--run-id", default=None, help="MLflow run to score with (default: RUN_ID / alias)")
    customers.add_argument("--model-dir", type=Path, default=None, help="a downloaded MLflow model folder")
    customers.add_argument("--env", default=None, help="local or cloud (default: ENV)")
    for name, text in (
        ("score", "score every file not yet scored by this model"),
        ("watch", "poll and score new files"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("input", help="folder or s3://bucket/prefix of CSV/Parquet files in the raw schema")
        command.add_argument("output", help="folder or s3://bucket/prefix; outputs go under <output>/<run id>/")
        command.add_argument("--engine", choices=("embedded", "spark"), default="embedded")
        command.add_argument("--workers", type=int, default=None, help="processes (default: the cores)")
        command.add_argument(
            "--spark-master",
            default=None,
            help="engine=spark: local[N] on this machine, spark://HOST:PORT a standalone cluster (make "
            "spark-cluster), or 'submit' under spark-submit / EMR (default: SPARK_MASTER, local[*])",
        )
        command.add_argument(
            "--aggregate",
            action="append",
            default=[],
            metavar="FUNCTION:COLUMN",
            help="per-file feature as an output column, e.g. mean:credit_limit (repeatable)",
        )
        command.add_argument(
            "--explain",
            default="0",
            metavar="K",
            help="add each row's K top reasons (log-odds contributions; 'all' for every feature) as columns "
            "reasons, reasons_bias, reasons_other",
        )
        command.add_argument("--run-id", default=None, help="MLflow run to score with (default: RUN_ID / alias)")
        command.add_argument("--model-dir", type=Path, default=None, help="a downloaded MLflow model folder")
        command.add_argument("--env", default=None, help="local or cloud (default: ENV)")
        if name == "watch":
            command.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
            command.add_argument("--max-polls", type=int, default=None, help="stop after N polls (default: never)")
        else:
            command.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return parser


def load_model(args: argparse.Namespace, settings: Settings) -> ModelBundle:
    """The served model, through ModelService (so batch and the API score with the very same model)."""
    if args.model_dir:
        run_id = args.run_id or args.model_dir.resolve().parent.name
        return ModelBundle.from_model_dir(args.model_dir, run_id=run_id, nthread=1)
    from mlops.model_service import ModelService

    return ModelService.from_settings(settings).bundle


def score_with_progress(
    args: argparse.Namespace, bundle: ModelBundle, settings: Settings, console: Console, show: bool
) -> BatchSummary:
    columns = (
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not show, transient=False) as bar:
        task = bar.add_task("score", total=None, rows=0)
        rows_done = 0

        def planned(to_score: int, skipped: int) -> None:
            bar.update(task, total=to_score)
            if skipped:
                console.print(f"{skipped} file(s) already scored by this model: skipped")

        def advanced(files: int, rows: int) -> None:
            nonlocal rows_done
            rows_done += rows
            bar.update(task, advance=files, rows=rows_done)

        return run_batch(
            args.input,
            args.output,
            bundle,
            settings=settings,
            engine=args.engine,
            workers=args.workers,
            aggregates=args.aggregate,
            explain=args.explain,
            progress=advanced,
            on_plan=planned,
        )


def report(summary: BatchSummary, console: Console) -> None:
    for reject in summary.rejects:
        console.print(f"[red]rejected[/red] {reject['input']}: {reject['reason']}", highlight=False, soft_wrap=True)
    console.print(summary.line(), highlight=False, soft_wrap=True)


def watch(
    args: argparse.Namespace,
    bundle: ModelBundle,
    settings: Settings,
    console: Console,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll: each round scores what is new (the manifest makes it cheap); bad files are retried only when changed."""
    known_rejects: dict[str, str] = {}
    polls, worst = 0, EXIT_OK
    try:
        while args.max_polls is None or polls < args.max_polls:
            summary = run_batch(
                args.input,
                args.output,
                bundle,
                settings=settings,
                engine=args.engine,
                workers=args.workers,
                aggregates=args.aggregate,
                explain=args.explain,
                known_rejects=known_rejects,
            )
            known_rejects.update({r["input_name"]: r["fingerprint"] for r in summary.rejects})
            if summary.scored or summary.rejected:
                report(summary, console)
                worst = max(worst, summary.exit_code)
            polls += 1
            if args.max_polls is None or polls < args.max_polls:
                sleep(args.interval)
    except KeyboardInterrupt:
        console.print("watch stopped")
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    try:
        overrides = {"run_id": args.run_id} if args.run_id else {}
        settings = load_settings(args.env, **overrides)
        bundle = load_model(args, settings)
        if args.command == "customers":
            from batch.customers import score_customers
            from mlops.stores.online import OnlineStoreUnavailable

            try:
                console.print(score_customers(bundle, args.output, settings).line(), highlight=False, soft_wrap=True)
            except OnlineStoreUnavailable as error:
                raise ServiceUnavailable(str(error)) from error
            return EXIT_OK
        if args.engine == "spark":
            from batch.spark_engine import session_for

            # one session for the run (or every poll of a watch)
            args.spark = session_for(args.spark_master or settings.spark_master)
        if args.command == "watch":
            return watch(args, bundle, settings, console)
        summary = score_with_progress(args, bundle, settings, console, show=not args.no_progress)
    except (ServiceUnavailable, ConfigurationError, LookupError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]batch: {error}[/red]", highlight=False, soft_wrap=True)
        return EXIT_ERROR
    finally:
        if getattr(args, "spark", None) is not None:
            args.spark.stop()
    report(summary, console)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
