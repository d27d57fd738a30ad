"""The command line both simulators share, so `send_data_api` and `send_data_kinesis` read and fail the same way."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlops.settings import ConfigurationError, Settings, load_settings
from mlops.spec import FeatureSpec, SpecError


def add_traffic_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """--env, --interval, --count, --batch, --drift, --drift-strength, --seed; `unit` names what is sent."""
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--interval", type=float, default=60.0, help=f"seconds between {unit}s (default 60)")
    parser.add_argument("--count", type=int, default=0, help=f"{unit}s to make, then stop (default: forever)")
    parser.add_argument("--batch", type=int, default=1, help=f"records per {unit}")
    parser.add_argument("--drift", action="store_true", help="shift the distributions (for drift demos)")
    parser.add_argument("--drift-strength", type=float, default=1.0, help="numeric shift in standard deviations")
    parser.add_argument("--seed", type=int, default=0)


def add_outcome_options(parser: argparse.ArgumentParser) -> None:
    """--outcome-delay, --label-noise, --outcomes-url: the outcomes of what was sent, later (POST /outcomes)."""
    parser.add_argument(
        "--outcome-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also send each record's observed outcome this many seconds later (default: send no outcomes)",
    )
    parser.add_argument(
        "--label-noise", type=float, default=0.0, help="share of outcomes whose label is flipped (0..1, default 0)"
    )
    parser.add_argument("--outcomes-url", default=None, help="default: /outcomes beside the predict API's URL")


def parse_traffic_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.batch < 1 or args.count < 0 or args.interval < 0:
        parser.error("--batch must be >= 1, --count and --interval >= 0")
    if getattr(args, "outcome_delay", None) is not None and args.outcome_delay < 0:
        parser.error("--outcome-delay must be >= 0")
    if not 0.0 <= getattr(args, "label_noise", 0.0) <= 1.0:
        parser.error("--label-noise must be between 0 and 1")
    return args


def settings_and_spec(prog: str, env: str | None) -> tuple[Settings, FeatureSpec] | None:
    """The settings of `env` and their feature spec; None after one line on stderr when either is wrong."""
    try:
        settings = load_settings(env)
        return settings, FeatureSpec.load(settings.feature_spec)
    except (ConfigurationError, SpecError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return None
