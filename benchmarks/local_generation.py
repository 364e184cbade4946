"""Local generation: tokens/s through `factory build` against a bare llama-cpp-python loop.

Both run the same model on the same prompts with the same seeds (the factory's own prompts for
recipes/movie-reviews.yaml), so they produce the same tokens. Target: factory >= 0.9 x bare loop.

With --cpu-paths, also measures each of llama.cpp's CPU paths that the factory may fall back to
(factory/generators/llamacpp_probe.py): prompt and generation tokens/s of `default` (llama.cpp as
built, weights repacked for the CPU's extra kernels) against `no_repack` (use_extra_bufts=False).
A path that faults on this CPU is reported as such (each runs in its own process).

With --transformers, also compares the seed article's pattern, a `pipeline()` created for every
sample, against the factory's transformers backend (loaded once, batched), on SmolLM2.

    python benchmarks/local_generation.py [--model smollm2-135m-instruct] [--requests 24] [--cpu-paths] [--transformers]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from factory import build
from factory.generators.catalog import resolve_model
from factory.spec import load_recipe
from factory.tasks import make_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "movie-reviews.yaml"


def spec_for(backend: str, model: str, requests: int, max_tokens: int, **extra: object):
    spec = load_recipe(RECIPE)
    params = {"name": "bench", "backend": backend, "model": model, "temperature": 0.9, "max_tokens": max_tokens, **extra}
    # Generation only: no real data, no eval, the cheapest filter (those are measured elsewhere).
    data = spec.resolved() | {"generators": [params], "filters": [{"type": "exact_dedup"}], "real_data": None, "eval": None}
    data["generate"] |= {"per_label": requests // 2, "max_requests": requests}
    return type(spec).model_validate(data)


def prompts_of(spec, requests: int):
    recipe = make_recipe(spec)
    labels = list(spec.labels)
    # The build's first round asks for ceil(1.05 x target) per label, capped by the budget in label order.
    return [recipe.prompt(label, i) for label in labels for i in range(requests // len(labels))]


def factory_run(spec) -> tuple[float, int, dict]:
    """Seconds of the build's generation phase (model load included, like the bare loop), tokens, manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        result = build(spec, Path(tmp) / "run", progress=False)
    return result.manifest.timings.generation_s, result.manifest.tokens.completion, result.manifest


def bare_llama(model: str, prompts, max_tokens: int) -> tuple[float, int]:
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(model_path=str(resolve_model(model)), n_ctx=2048, n_threads=os.cpu_count(), seed=0, verbose=False)
    tokens = 0
    for p in prompts:
        out = llm.create_chat_completion(
            messages=p.messages, temperature=0.9, top_p=0.95, max_tokens=max_tokens, seed=p.seed,
            response_format={"type": "json_object", "schema": p.schema},
        )
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - start, tokens


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
            "generate_tok_s": completion_tokens / generate_s, "completion_tokens": completion_tokens}


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
              f"(x{row['generate_tok_s'] / baseline['generate_tok_s']:.2f} of {baseline['cpu_path']})")


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
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--transformers", action="store_true")
    parser.add_argument("--transformers-requests", type=int, default=4)
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--cpu-paths", action="store_true", help="measure each llama.cpp CPU path")
    parser.add_argument("--one-cpu-path", help=argparse.SUPPRESS)  # the child of --cpu-paths
    args = parser.parse_args()

    if args.one_cpu_path:
        spec = spec_for("llamacpp", args.model, args.requests, args.max_tokens)
        print(json.dumps(cpu_path_rates(args.model, prompts_of(spec, args.requests), args.max_tokens, args.one_cpu_path)))
        return
    if args.cpu_paths:
        cpu_path_comparison(args)
    if not args.skip_llama:
        llama(args)
    if args.transformers:
        transformers_comparison(args.transformers_requests)


def llama(args: argparse.Namespace) -> None:
    spec = spec_for("llamacpp", args.model, args.requests, args.max_tokens)
    prompts = prompts_of(spec, args.requests)
    bare_s, bare_tok = bare_llama(args.model, prompts, args.max_tokens)
    fac_s, fac_tok, manifest = factory_run(spec)
    bare_rate, fac_rate = bare_tok / bare_s, fac_tok / fac_s
    print(f"llama.cpp, {args.model}, {len(prompts)} requests (model load included in both)")
    print(f"  bare llama-cpp-python loop: {bare_tok} tokens in {bare_s:.1f} s = {bare_rate:.1f} tok/s")
    print(f"  factory build:              {fac_tok} tokens in {fac_s:.1f} s = {fac_rate:.1f} tok/s "
          f"({manifest.budget.used} requests)")
    print(f"  ratio {fac_rate / bare_rate:.2f} (target >= 0.90)  {'PASS' if fac_rate >= 0.9 * bare_rate else 'FAIL'}")



def transformers_comparison(n: int) -> None:
    spec = spec_for("transformers", "smollm2-135m-instruct", n, 48, parallel=n)
    seed_s, seed_tok = pipeline_per_sample("smollm2-135m-instruct", prompts_of(spec, n), 48)
    tf_s, tf_tok, _ = factory_run(spec)
    print(f"transformers, smollm2-135m-instruct, {n} requests")
    print(f"  pipeline per sample (seed article): {seed_tok} tokens in {seed_s:.1f} s = {seed_tok / seed_s:.2f} tok/s")
    print(f"  factory backend (load once, batch): {tf_tok} tokens in {tf_s:.1f} s = {tf_tok / tf_s:.2f} tok/s "
          f"({(tf_tok / tf_s) / (seed_tok / seed_s):.1f}x)")

if __name__ == "__main__":
    main()
