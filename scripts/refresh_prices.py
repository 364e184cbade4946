"""Refresh factory/generators/model_prices.json, the factory's dated copy of litellm's model price map.

The factory prices requests to paid OpenAI-compatible APIs from that file rather than depending on litellm
(a large package with many dependencies). This script keeps the same selection and conversion every time:

* entries whose ``mode`` is ``"chat"`` and whose ``litellm_provider`` is one of PROVIDERS (APIs that speak
  OpenAI's chat-completions protocol or are commonly reached through an OpenAI-compatible endpoint);
* entries with both an input and an output price (zero counts: it is a free model's price);
* per-token costs converted to USD per million tokens (``round(cost * 1e6, 6)``): ``input``, ``output`` and,
  where litellm lists them, the Batch API's ``batch_input`` and ``batch_output``; the context limits
  ``max_input_tokens`` and ``max_output_tokens`` where they are whole numbers;
* model names kept exactly as litellm spells them, sorted, one model per line so that diffs stay readable.

When to run it: when a provider changes its prices or adds a model that the factory should price, and before
a release, so the file's ``date`` stays recent. Review the diff before committing it.

How to run it (from the repository root, with the factory installed; no litellm needed except for --installed):

    python scripts/refresh_prices.py
        Online: litellm's main-branch map from GitHub (litellm_version "main"), dated today (UTC).
    python scripts/refresh_prices.py --installed
        The map bundled with the installed litellm package (its version is recorded).
    python scripts/refresh_prices.py --from PATH --litellm-version VERSION [--date YYYY-MM-DD]
        A JSON file already on disk, e.g. litellm/model_prices_and_context_window_backup.json taken out of a
        litellm wheel (``pip download litellm --no-deps``); give the release's version and, for a
        reproducible file, its release date.

The committed file was produced by the --from form; its first lines record the litellm version and date.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.request
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from factory.run.store import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "factory" / "generators" / "model_prices.json"
DEFAULT_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
PACKAGED_MAP = "litellm/model_prices_and_context_window_backup.json"  # inside the litellm package
REFRESH_COMMAND = "python scripts/refresh_prices.py"
UNITS = "USD per million tokens"

# litellm providers whose chat models are served through OpenAI's chat-completions protocol, natively or
# through an OpenAI-compatible endpoint. (text-completion-openai is not chat: it is left out.)
PROVIDERS: frozenset[str] = frozenset(
    {
        "openai",
        "azure",
        "deepseek",
        "groq",
        "mistral",
        "together_ai",
        "fireworks_ai",
        "openrouter",
        "anthropic",
        "gemini",
        "xai",
        "perplexity",
        "deepinfra",
        "cerebras",
    }
)

# litellm's per-token field -> this file's per-million-token field, in the order written.
PRICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("input_cost_per_token", "input"),
    ("output_cost_per_token", "output"),
    ("input_cost_per_token_batches", "batch_input"),
    ("output_cost_per_token_batches", "batch_output"),
)
LIMIT_FIELDS: tuple[str, ...] = ("max_input_tokens", "max_output_tokens")


def _cost(value: object) -> float | None:
    """A per-token cost as a finite, non-negative number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    cost = float(value)
    if not math.isfinite(cost) or cost < 0:
        return None
    return cost


def per_million(cost_per_token: float) -> float:
    """USD per token -> USD per million tokens, rounded to drop float noise (1.5e-07 -> 0.15)."""
    return float(round(cost_per_token * 1e6, 6))


def _limit(value: object) -> int | None:
    """A token limit as a positive int, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value > 0:
        return value
    return None


def convert_entry(entry: object) -> dict[str, Any] | None:
    """One litellm entry -> this file's entry, or None when it is not a priced chat model of PROVIDERS."""
    if not isinstance(entry, dict) or entry.get("mode") != "chat":
        return None
    provider = entry.get("litellm_provider")
    if not isinstance(provider, str) or provider not in PROVIDERS:
        return None
    out: dict[str, Any] = {"provider": provider}
    for source_field, field in PRICE_FIELDS:
        cost = _cost(entry.get(source_field))
        if cost is not None:
            out[field] = per_million(cost)
    if "input" not in out or "output" not in out:
        return None
    for field in LIMIT_FIELDS:
        limit = _limit(entry.get(field))
        if limit is not None:
            out[field] = limit
    return out


def select_models(price_map: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The subset of litellm's map that the factory ships, sorted by model name."""
    models: dict[str, dict[str, Any]] = {}
    for name in sorted(price_map):
        converted = convert_entry(price_map[name])
        if converted is not None:
            models[name] = converted
    return models


def build_document(price_map: dict[str, Any], *, source: str, litellm_version: str, day: str) -> dict[str, Any]:
    return {
        "source": source,
        "litellm_version": litellm_version,
        "date": day,
        "refresh": REFRESH_COMMAND,
        "units": UNITS,
        "models": select_models(price_map),
    }


def render(document: dict[str, Any]) -> str:
    """The document as JSON: header fields one per line, then one model per line."""
    lines = ["{"]
    for key, value in document.items():
        if key != "models":
            lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    models: dict[str, dict[str, Any]] = document["models"]
    model_lines = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in models.items()]
    lines.append(' "models": {')
    if model_lines:
        lines.append(",\n".join(model_lines))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _parse_map(raw: bytes | str, origin: str) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise SystemExit(f"{origin}: expected a JSON object of model entries, got {type(data).__name__}")
    return data


def load_file(path: Path) -> dict[str, Any]:
    return _parse_map(path.read_bytes(), str(path))


def load_installed() -> tuple[dict[str, Any], str]:
    """The map bundled with the installed litellm package (found through its metadata, never imported)."""
    try:
        dist = metadata.distribution("litellm")
    except metadata.PackageNotFoundError:
        raise SystemExit("litellm is not installed: use --from PATH, or run online without --installed") from None
    path = Path(str(dist.locate_file(PACKAGED_MAP)))
    if not path.is_file():
        raise SystemExit(f"litellm {dist.version} has no {PACKAGED_MAP} (looked at {path})")
    return load_file(path), dist.version


def load_url(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"User-Agent": "dataset-factory refresh_prices"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        raise SystemExit(f"could not download {url}: {exc} (offline? use --from PATH or --installed)") from None
    return _parse_map(raw, url)


def _iso_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Refresh factory/generators/model_prices.json from litellm's model price map.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--from", dest="from_path", type=Path, metavar="PATH", help="read the map from this JSON file")
    where.add_argument("--installed", action="store_true", help="read the map bundled with the installed litellm package")
    where.add_argument("--url", default=DEFAULT_URL, help="download the map from here (the default source; default: %(default)s)")
    parser.add_argument(
        "--litellm-version",
        help="litellm version to record (required with --from; default: the installed version, or 'main' online)",
    )
    parser.add_argument("--date", type=_iso_date, help="date to record, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="download timeout in seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.from_path is not None and not args.litellm_version:
        parser.error("--from needs --litellm-version (the litellm release the file came from)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_path is not None:
        price_map = load_file(args.from_path)
        source = f"litellm {args.from_path.name}"
        version: str = args.litellm_version
    elif args.installed:
        price_map, installed_version = load_installed()
        source = f"litellm {Path(PACKAGED_MAP).name}"
        version = args.litellm_version or installed_version
    else:
        price_map = load_url(args.url, args.timeout)
        source = f"litellm {args.url.rsplit('/', 1)[-1]} ({args.url})"
        version = args.litellm_version or "main"
    day = args.date or datetime.now(UTC).date().isoformat()
    document = build_document(price_map, source=source, litellm_version=version, day=day)
    text = render(document)
    json.loads(text)  # the hand-laid-out JSON must still parse
    atomic_write_text(args.out, text)
    size = len(text.encode("utf-8"))
    print(f"wrote {args.out}: {len(document['models'])} models from {source} (litellm {version}, {day}), {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
