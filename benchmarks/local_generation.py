"""Local generation: `factory build`, sequential and batched, against a bare llama-cpp-python loop.

All run the same model on the same prompts with the same seeds (the factory's own prompts for
recipes/movie-reviews.yaml): (a) a bare sequential llama-cpp-python loop, (b) `factory build` with
`parallel: 1`, (c) `factory build` batched at each width of --parallel. Each line prints tokens/s,
rows/s, the parse rate and the time to the first row, with the ratio of its rows/s to the bare loop's.
Targets: sequential build >= 0.9 x the bare loop's tokens/s; batched >= 2.5 x its rows/s.

With --cpu-paths, also measures each of llama.cpp's CPU paths that the factory may fall back to
(factory/generators/llamacpp_probe.py): prompt and generation tokens/s of `default` (llama.cpp as
built, weights repacked for the CPU's extra kernels) against `no_repack` (use_extra_bufts=False).
A path that faults on this CPU is reported as such (each runs in its own process).

With --transformers, also compares the seed article's pattern, a `pipeline()` created for every
sample, against the factory's transformers backend (loaded once, batched), on SmolLM2.

With --cpu-paths, each path's batched decoding is measured too (16 sequences per pass).

With --grammar, the batched engine with the JSON grammar checked on the sampled token first (the
default, as llama.cpp's common_sampler does) against the grammar applied to the whole vocabulary at
every step, on the same prompts: seconds, tokens/s and how many steps took the full pass.

    python benchmarks/local_generation.py [--model qwen2.5-coder-1.5b-instruct] [--requests 32]
        [--parallel 2,4,8,16] [--cpu-paths] [--transformers]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from factory import build
from factory.generators.catalog import resolve_model
from factory.recipe_file import load_recipe
from factory.records import STAGE_PARSE
from factory.run.store import settle_seeds
from factory.tasks import make_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "movie-reviews.yaml"


def spec_for(backend: str, model: str, requests: int, max_tokens: int, **extra: object):
    spec = load_recipe(RECIPE)
    params = {"name": "bench", "backend": backend, "model": model, "temperature": 0.9, "max_tokens": max_tokens, **extra}
    # Generation only: no real data, no eval, the cheapest filter (those are measured elsewhere).
    data = spec.resolved() | {"generators": [params], "filters": [{"type": "exact_dedup"}], "real_data": None, "eval": None}
    # batch_size 1: each row is written as it finishes, so the time to the first row shows.
    data["generate"] |= {"per_label": requests // 2, "max_requests": requests, "batch_size": 1}
    return type(spec).model_validate(data)


def prompts_of(spec, requests: int):
    """The build's first round: the labels' prompts taken in turns, with the seeds the build gives them."""
    recipe = make_recipe(spec)
    labels = list(spec.labels)
    prompts = [recipe.prompt(label, i) for i in range(requests // len(labels)) for label in labels]
    settle_seeds(prompts, Counter(), recipe.seed_salt)
    return prompts


@dataclass
class Run:
    """One way of answering the prompts: wall seconds (model load included), tokens, rows, first row."""

    seconds: float
    tokens: int
    requests: int
    parsed: int
    first_row_s: float | None

    def line(self, name: str, baseline: Run | None) -> str:
        ratio = f", x{(self.parsed / self.seconds) / (baseline.parsed / baseline.seconds):.2f} rows/s of the bare loop" if baseline else ""
        first = f"{self.first_row_s:.1f} s" if self.first_row_s is not None else "-"
        return (f"  {name:<28} {self.tokens / self.seconds:6.1f} tok/s  {self.parsed / self.seconds:6.3f} rows/s  "
                f"parsed {self.parsed}/{self.requests}  first row {first}  ({self.seconds:.1f} s){ratio}")


def factory_run(spec) -> Run:
    """`factory build`'s generation phase (model load included, like the bare loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        first = _watch_first_row(run_dir / "generated.jsonl")
        started = time.monotonic()
        result = build(spec, run_dir, progress=False)
        first.stop.set()
    manifest = result.manifest
    parsed = next(stage.kept for stage in manifest.funnel if stage.stage == STAGE_PARSE)
    return Run(manifest.timings.generation_s, manifest.tokens.completion, manifest.budget.used, parsed,
               first.at - started if first.at else None)


class _watch_first_row(threading.Thread):
    """Notes when the first row reaches the run's generated.jsonl (rows flush as they finish)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.at, self.stop = path, None, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.is_set() and self.at is None:
            if self.path.exists() and self.path.stat().st_size > 0:
                self.at = time.monotonic()
            time.sleep(0.05)


def bare_llama(model: str, prompts, max_tokens: int) -> Run:
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(model_path=str(resolve_model(model)), n_ctx=2048, n_threads=os.cpu_count(), seed=0, verbose=False)
    tokens = parsed = 0
    first = None
    for p in prompts:
        out = llm.create_chat_completion(
            messages=p.messages, temperature=0.9, top_p=0.95, max_tokens=max_tokens, seed=p.seed,
            response_format={"type": "json_object", "schema": p.schema},
        )
        tokens += out["usage"]["completion_tokens"]
        parsed += _parses(out["choices"][0]["message"]["content"], p.schema)
        first = first or time.perf_counter() - start
    return Run(time.perf_counter() - start, tokens, len(prompts), parsed, first)


def _parses(text: str, schema: dict) -> bool:
    """The reply is a JSON object with the schema's required keys (what the build's parser needs first)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and all(key in data for key in schema.get("required", []))


def cpu_path_rates(model: str, prompts, max_tokens: int, cpu_path: str) -> dict:
    """A plain llama-cpp-python loop on `cpu_path`: load time, prompt and generation token rates."""
    from llama_cpp import Llama

    from factory.generators.llamacpp_probe import model_params_for

    start = time.perf_counter()
    with model_params_for(cpu_path):
        llm = Llama(model_path=str(resolve_model(model)), n_ctx=2048, n_threads=os.cpu_count(), seed=0, verbose=False)
    loaded = time.perf_counter()
    prompt_tokens = completion_tokens = 0
    prompt_s = 0.0
    for p in prompts:
        # Prompt evaluation alone: one token out, on a cold KV cache (reset), so every prompt token is read.
        llm.reset()
        t0 = time.perf_counter()
        first = llm.create_chat_completion(messages=p.messages, max_tokens=1, temperature=0.0, seed=p.seed)
        prompt_s += time.perf_counter() - t0
        prompt_tokens += first["usage"]["prompt_tokens"]
    t0 = time.perf_counter()
    for p in prompts:
        out = llm.create_chat_completion(
            messages=p.messages, temperature=0.9, top_p=0.95, max_tokens=max_tokens, seed=p.seed,
            response_format={"type": "json_object", "schema": p.schema},
        )
        completion_tokens += out["usage"]["completion_tokens"]
    generate_s = time.perf_counter() - t0
    return {"cpu_path": cpu_path, "load_s": loaded - start, "prompt_tok_s": prompt_tokens / prompt_s,
            "generate_tok_s": completion_tokens / generate_s, "completion_tokens": completion_tokens,
            "one_tok_s": batched_decode_rate(llm, prompts[0], 1), "batched_tok_s": batched_decode_rate(llm, prompts[0], 16)}


def batched_decode_rate(llm, prompt, width: int, steps: int = 8) -> float:
    """Tokens/s of `width` sequences decoded together, one token each per pass, after one prompt."""
    from factory.generators.llamacpp import _ChatEncoder
    from factory.generators.llamacpp_batch import BatchEngine, SamplingSettings

    engine = BatchEngine(llm.model, n_parallel=width, n_ctx_per_seq=512, n_threads=os.cpu_count(),
                         sampling=SamplingSettings(0.9, 0.95))
    tokens, _ = _ChatEncoder(llm).tokens(prompt.messages)
    tokens = tokens[:400]
    engine._evaluate(tokens, 0, 0)  # once, then copied: the rate is the decoding's, not the prompt's
    for seq in range(1, width):
        engine._ll.llama_memory_seq_cp(engine._mem, 0, seq, -1, -1)
    start = time.perf_counter()
    for step in range(steps):
        engine._decode([(tokens[-1], len(tokens) + step, seq) for seq in range(width)], all_logits=True)
    rate = width * steps / (time.perf_counter() - start)
    engine.close()
    return rate


def cpu_path_comparison(args: argparse.Namespace) -> None:
    """Each CPU path in its own process (one that faults must not end the benchmark)."""
    from factory.generators.llamacpp_probe import PATHS

    print(f"llama.cpp CPU paths, {args.model}, {args.requests} requests, {os.cpu_count()} threads")
    baseline = None
    for path in PATHS:
        cmd = [sys.executable, __file__, "--model", args.model, "--requests", str(args.requests),
               "--max-tokens", str(args.max_tokens), "--one-cpu-path", path]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  {path:<10} failed on this CPU: exit {done.returncode} {done.stderr.strip()[-200:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        baseline = baseline or row
        print(f"  {path:<10} load {row['load_s']:.1f} s, prompt {row['prompt_tok_s']:.1f} tok/s, "
              f"generation {row['generate_tok_s']:.1f} tok/s "
              f"(x{row['generate_tok_s'] / baseline['generate_tok_s']:.2f} of {baseline['cpu_path']}), "
              f"bare decoding (no sampling): 1 sequence per pass {row['one_tok_s']:.1f} tok/s, "
              f"16 per pass {row['batched_tok_s']:.1f} tok/s (x{row['batched_tok_s'] / row['one_tok_s']:.2f})")


def grammar_comparison(args: argparse.Namespace) -> None:
    from llama_cpp import Llama

    from factory.generators.llamacpp import _ChatEncoder
    from factory.generators.llamacpp_batch import BatchEngine, SamplingSettings
    from factory.generators.params import LlamaCppParams

    spec = spec_for("llamacpp", args.model, args.requests, args.max_tokens)
    params = LlamaCppParams(backend="llamacpp", model=args.model, max_tokens=args.max_tokens)
    llm = Llama(model_path=str(resolve_model(args.model)), n_ctx=256, n_threads=os.cpu_count(), seed=0, verbose=False)
    requests = _ChatEncoder(llm).requests(prompts_of(spec, args.requests), params)
    width = args.parallel[0]
    print(f"JSON grammar in the batched engine, {args.model}, {len(requests)} requests, parallel {width}")
    for lazy in (False, True):
        engine = BatchEngine(llm.model, n_parallel=width, n_ctx_per_seq=params.n_ctx, n_threads=os.cpu_count(),
                             sampling=SamplingSettings(0.9, 0.95), lazy_grammar=lazy)
        parsed = 0
        start = time.perf_counter()

        def emit(request, reply) -> None:
            nonlocal parsed
            parsed += _parses(reply.text, request.tag.schema)

        engine.run(requests, emit)
        seconds = time.perf_counter() - start
        stats = engine.stats
        engine.close()
        name = "sampled token checked first" if lazy else "grammar over the vocabulary"
        print(f"  {name:<30} {seconds:6.1f} s  {stats.generated / seconds:5.1f} tok/s  parsed {parsed}/{len(requests)}  "
              f"full grammar passes {stats.grammar_full_passes} of {stats.generated} tokens", flush=True)


def pipeline_per_sample(model: str, prompts, max_tokens: int) -> tuple[float, int]:
    """The seed article's loop: a new transformers pipeline for every sample."""
    import transformers

    path = resolve_model(model)
    start = time.perf_counter()
    tokens = 0
    for p in prompts:
        # pipeline() does not pass gguf_file to its config loader, so the per-sample load is spelled out.
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        pipe = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
        out = pipe(p.messages, max_new_tokens=max_tokens, do_sample=True, temperature=0.9, top_p=0.95)
        reply = out[0]["generated_text"][-1]["content"]
        tokens += len(pipe.tokenizer(reply)["input_ids"])
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=160)  # the main recipe's
    parser.add_argument("--parallel", type=lambda text: [int(x) for x in text.split(",")], default=[2, 4, 8, 16])
    parser.add_argument("--transformers", action="store_true")
    parser.add_argument("--transformers-requests", type=int, default=4)
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--grammar", action="store_true", help="the grammar's fast path vs the full pass")
    parser.add_argument("--cpu-paths", action="store_true", help="measure each llama.cpp CPU path")
    parser.add_argument("--one-cpu-path", help=argparse.SUPPRESS)  # the child of --cpu-paths
    args = parser.parse_args()

    if args.one_cpu_path:
        spec = spec_for("llamacpp", args.model, args.requests, args.max_tokens)
        print(json.dumps(cpu_path_rates(args.model, prompts_of(spec, args.requests), args.max_tokens, args.one_cpu_path)))
        return
    if args.cpu_paths:
        cpu_path_comparison(args)
    if args.grammar:
        grammar_comparison(args)
    if not args.skip_llama:
        llama(args)
    if args.transformers:
        transformers_comparison(args.transformers_requests)


def llama(args: argparse.Namespace) -> None:
    spec = spec_for("llamacpp", args.model, args.requests, args.max_tokens)
    prompts = prompts_of(spec, args.requests)
    print(f"llama.cpp, {args.model}, {len(prompts)} requests, {os.cpu_count()} threads (model load included in each)")
    bare = bare_llama(args.model, prompts, args.max_tokens)
    print(bare.line("bare llama-cpp-python loop", None), flush=True)
    sequential = factory_run(spec_for("llamacpp", args.model, args.requests, args.max_tokens, parallel=1))
    print(sequential.line("factory build, parallel 1", bare), flush=True)
    print(f"  sequential build / bare loop, tokens/s: {(sequential.tokens / sequential.seconds) / (bare.tokens / bare.seconds):.2f}"
          " (target >= 0.90)", flush=True)
    for width in args.parallel:
        batched = factory_run(spec_for("llamacpp", args.model, args.requests, args.max_tokens, parallel=width))
        print(batched.line(f"factory build, parallel {width}", bare), flush=True)


def transformers_comparison(n: int) -> None:
    spec = spec_for("transformers", "smollm2-135m-instruct", n, 48, parallel=n)
    seed_s, seed_tok = pipeline_per_sample("smollm2-135m-instruct", prompts_of(spec, n), 48)
    tf = factory_run(spec)
    tf_s, tf_tok = tf.seconds, tf.tokens
    print(f"transformers, smollm2-135m-instruct, {n} requests")
    print(f"  pipeline per sample (seed article): {seed_tok} tokens in {seed_s:.1f} s = {seed_tok / seed_s:.2f} tok/s")
    print(f"  factory backend (load once, batch): {tf_tok} tokens in {tf_s:.1f} s = {tf_tok / tf_s:.2f} tok/s "
          f"({(tf_tok / tf_s) / (seed_tok / seed_s):.1f}x)")

if __name__ == "__main__":
    main()
