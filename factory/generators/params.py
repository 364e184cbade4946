"""Recipe-facing settings of each generator backend (light: no heavy imports here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from factory.generators.base import GeneratorParams
from factory.secrets import EnvVarName


class PriceSpec(BaseModel):
    """A model's price in USD per million tokens, when the shipped price table lacks it or is wrong for you."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")
    batch_input: float | None = Field(None, ge=0, description="USD per million prompt tokens through the Batch API (default: input).")
    batch_output: float | None = Field(None, ge=0, description="USD per million completion tokens through the Batch API (default: output).")


class BatchSpec(BaseModel):
    """How `mode: batch` submits and collects OpenAI Batch API jobs."""

    model_config = ConfigDict(extra="forbid")

    completion_window: Literal["24h"] = Field("24h", description="The Batch API's completion window.")
    poll_s: float = Field(10.0, gt=0, description="Seconds before the first status check; the wait grows 1.5x per check.")
    poll_max_s: float = Field(120.0, gt=0, description="Longest wait between two status checks.")
    resubmits: int = Field(2, ge=0, le=10, description="Times a request that failed or expired inside a batch is submitted again.")
    max_requests: int = Field(50_000, ge=1, le=50_000, description="Requests per batch file (the API takes at most 50,000).")


class OpenAIParams(GeneratorParams):
    """Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp's server."""

    backend: Literal["openai"]
    base_url: str = Field("https://api.openai.com/v1", description="Server URL up to and including /v1.")
    api_key_env: EnvVarName | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable that holds the API key (never the key itself); null for none.",
    )
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once.")
    timeout: float = Field(60.0, gt=0, description="Seconds one request may take before it is retried.")
    max_attempts: int = Field(4, ge=1, le=20, description="Attempts per request, the first included (the only retry layer).")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds, doubled each attempt unless the server sends Retry-After.")
    json_mode: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto", description="How to ask for JSON: auto tries json_schema, then json_object, then plain text, and "
                            "remembers what the server accepted.",
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra fields sent with every request (server-specific).")
    price: PriceSpec | None = Field(
        None, description="USD per million tokens; default: the shipped price table (a dated copy of litellm's), "
                          "else unknown (cost null).")
    rpm: int | None = Field(None, ge=1, description="Requests per minute the account may send (default: learned from "
                                                   "the server's x-ratelimit headers).")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + max_tokens, as OpenAI counts them at "
                                                   "admission; default: learned from x-ratelimit headers).")
    tokenizer: str | None = Field(
        None, description="A local tokenizer (a Hugging Face folder or Hub id, or a packaged model's name) that counts "
                          "prompt tokens exactly for estimates and the budget; default: an upper bound from the bytes.")
    mode: Literal["online", "batch"] = Field(
        "online", description="batch: send the requests through the Batch API (/v1/files, /v1/batches): cheaper, slower.")
    batch: BatchSpec = Field(default_factory=BatchSpec, description="Settings of mode: batch.")


# Measured with benchmarks/local_generation.py on a 2-core machine (docs/benchmarks.md, "Local generation"): 4
# sequences gave 1.42x the rows/s of a bare sequential loop, 8 gave 1.29x and 16 1.49x, with the
# first row after 12.5, 18.3 and 33.3 s; 4 keeps most of the gain and a short wait.
PARALLEL_DEFAULT = 4


class LlamaCppParams(GeneratorParams):
    """An in-process GGUF model through llama-cpp-python."""

    backend: Literal["llamacpp"]
    model: str = Field(
        "qwen2.5-coder-1.5b-instruct",
        description="A catalog name (see `factory models`) or a path to a .gguf file.",
    )
    n_ctx: int = Field(2048, ge=256, description="Context window in tokens.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; default: all cores.")
    n_gpu_layers: int = Field(0, description="Layers to offload to a GPU (-1: all), when llama.cpp was built with one.")
    json_mode: bool = Field(True, description="Constrain the output to the reply's JSON schema with a grammar.")
    parallel: int = Field(
        PARALLEL_DEFAULT, ge=1, le=64,
        description="Requests decoded together in one llama.cpp context (continuous batching); 1: one at a "
                    "time through llama-cpp-python's chat API (the engine before batching). Each slot holds n_ctx tokens.",
    )


class TransformersParams(GeneratorParams):
    """An in-process Hugging Face causal LM, loaded once and run in batches."""

    backend: Literal["transformers"]
    model: str = Field(description="A Hub id, a local folder, or a catalog name (loaded from its GGUF file).")
    gguf_file: str | None = Field(None, description="GGUF file name inside `model`, when loading a GGUF checkpoint.")
    parallel: int = Field(
        8, ge=1, validation_alias=AliasChoices("parallel", "batch_size"),
        description="Prompts generated together in one generate() call (`batch_size` is accepted too).",
    )
    device: str = Field("cpu", description="torch device.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Weights' dtype.")


ALL_PARAMS = (OpenAIParams, LlamaCppParams, TransformersParams)
# Each backend's `backend:` value: the recipe loader drops these union tags from error paths.
BACKENDS = frozenset(p.model_fields["backend"].annotation.__args__[0] for p in ALL_PARAMS)
