"""The loopback OpenAI server itself, driven by the official `openai` SDK: rate limits, quota errors,
the Files API and the Batch API behave the way real OpenAI clients expect."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

sys.path.insert(0, str(Path(__file__).parent))

from loopback_openai import Action, LoopbackOpenAI, default_text, insufficient_quota, openai_duration  # noqa: E402

MESSAGES = [{"role": "user", "content": 'Write one review. {"label": "positive"}'}]
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture()
def serve() -> Iterator[Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]]:
    """Start a server with the given kwargs and an SDK client for it; both stop after the test."""
    servers: list[LoopbackOpenAI] = []

    def start(**kwargs: Any) -> tuple[LoopbackOpenAI, openai.OpenAI]:
        server = LoopbackOpenAI(**kwargs).__enter__()
        servers.append(server)
        return server, openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def seconds(duration: str) -> float:
    """Parse OpenAI's reset durations ("120ms", "1.5s", "6m0s")."""
    if duration.endswith("ms"):
        return float(duration[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)([hms])", duration):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES, **kwargs)


def jsonl(client: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def batch_file(client: openai.OpenAI, ids: list[str]) -> str:
    lines = [{"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "m", "seed": i, "messages": [{"role": "user", "content": f'request {cid} {{"label": "x"}}'}]}}
             for i, cid in enumerate(ids)]
    return client.files.create(file=("in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="batch").id


def wait_terminal(client: openai.OpenAI, batch_id: str, timeout: float = 5.0) -> list[Any]:
    """Poll like a client does; return every batch object seen (the last one is terminal)."""
    seen = [client.batches.retrieve(batch_id)]
    deadline = time.monotonic() + timeout
    while seen[-1].status not in TERMINAL:
        assert time.monotonic() < deadline, f"batch stuck in {seen[-1].status}"
        time.sleep(0.02)
        seen.append(client.batches.retrieve(batch_id))
    return seen


def test_openai_duration_format() -> None:
    assert [openai_duration(s) for s in (0, 0.12, 1, 1.5, 360, 3723.5)] == ["0s", "120ms", "1s", "1.5s", "6m0s", "1h2m3.5s"]


def test_defaults_unchanged(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve()
    raw = chat(client, seed=4)
    reply = raw.parse()
    assert reply.choices[0].message.content == default_text({"messages": MESSAGES, "seed": 4})
    assert reply.usage.prompt_tokens == 50
    assert reply.usage.completion_tokens == len(reply.choices[0].message.content.split())
    assert not [h for h in raw.headers if h.startswith("x-ratelimit")]
    assert len(server.completed()) == 1 and server.rate_limited == 0


def test_rpm_limit_429_with_retry_after_and_headers(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    calls: list[int] = []

    def script(body: dict[str, Any], n: int) -> Action:
        calls.append(n)
        return Action(text="two words")

    server, client = serve(script=script, rpm=2, window=2.0)  # refills 1 request per second
    first, second = chat(client), chat(client)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert [first.headers["x-ratelimit-remaining-requests"], second.headers["x-ratelimit-remaining-requests"]] == ["1", "0"]
    assert 1.5 < seconds(second.headers["x-ratelimit-reset-requests"]) <= 2.0
    assert "x-ratelimit-limit-tokens" not in first.headers  # only the limit that is set is reported

    with pytest.raises(openai.RateLimitError) as info:
        chat(client)
    exc = info.value
    assert exc.status_code == 429 and exc.code == "rate_limit_exceeded" and exc.type == "requests"
    assert exc.message.startswith("Error code: 429") and "Rate limit reached for requests" in str(exc.body)
    assert re.fullmatch(r"\d+\.\d{3}", exc.response.headers["retry-after"])
    assert 0.5 < float(exc.response.headers["retry-after"]) <= 1.0
    assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in exc.response.headers
    assert server.rate_limited == 1 and len(server.rate_limited_at) == 1
    assert calls == [0, 1]  # the limited request never reached the script
    assert [r.status for r in server.log] == [200, 200, 429]


def test_tpm_limit_without_retry_after_and_token_hooks(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve(tpm=100, window=10.0, rate_limit_retry_after=False,
                           prompt_tokens=lambda messages: 30, completion_tokens=lambda text: len(text))
    first = chat(client, max_tokens=20)  # admission cost: 30 prompt + 20 budget
    usage = first.parse().usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, len(first.parse().choices[0].message.content))
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    assert first.headers["x-ratelimit-remaining-tokens"] == "50"
    assert "x-ratelimit-limit-requests" not in first.headers
    chat(client, max_completion_tokens=20)
    with pytest.raises(openai.RateLimitError) as info:
        chat(client, max_tokens=20)
    exc = info.value
    assert exc.type == "tokens" and exc.code == "rate_limit_exceeded"
    assert exc.body["message"].startswith("Rate limit reached for tokens")
    assert "retry-after" not in exc.response.headers
    assert int(exc.response.headers["x-ratelimit-remaining-tokens"]) < 50
    assert server.rate_limited == 1


def test_default_completion_budget_is_16_tokens(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    _, client = serve(tpm=1000, window=60.0)
    assert chat(client).headers["x-ratelimit-remaining-tokens"] == str(1000 - 50 - 16)


def test_limits_replenish_and_the_sdk_honours_retry_after(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve(rpm=2, window=0.5)  # refills 4 requests per second
    chat(client), chat(client)
    with pytest.raises(openai.RateLimitError) as info:
        chat(client)
    time.sleep(float(info.value.response.headers["retry-after"]) + 0.02)
    assert chat(client).http_response.status_code == 200

    retrying = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=5)
    for _ in range(4):  # more than the bucket holds: the SDK waits out the 429s by Retry-After
        retrying.chat.completions.create(model="m", messages=MESSAGES)
    assert server.rate_limited >= 2
    assert server.rate_limited_at == sorted(server.rate_limited_at)


def test_insufficient_quota(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    _, client = serve(script=lambda body, n: insufficient_quota())
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
    assert info.value.body["message"].startswith("You exceeded your current quota")


def test_file_upload_round_trip(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]], tmp_path: Path) -> None:
    server, client = serve()
    content = 'first\r\n{"ü": "\\u00fc"}\nlast line\n'.encode() + bytes(range(256))
    uploaded = client.files.create(file=("in put.jsonl", content), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.object == "file" and uploaded.status == "processed"
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == ("in put.jsonl", "batch", len(content))
    assert client.files.retrieve(uploaded.id).model_dump() == uploaded.model_dump()
    assert client.files.content(uploaded.id).content == content
    assert server.files[uploaded.id].content == content

    path = tmp_path / "disk.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    with path.open("rb") as handle:
        from_disk = client.files.create(file=handle, purpose="batch")
    assert from_disk.filename == "disk.jsonl" and client.files.content(from_disk.id).content == b'{"a": 1}\n'
    assert [f.id for f in client.files.list()] == [from_disk.id, uploaded.id]

    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve("file-nope")
    assert "No such File object" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")
    assert client.files.delete(from_disk.id).deleted
    assert from_disk.id not in server.files


def test_batch_completes_with_output_and_error_lines(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    def script(body: dict[str, Any], n: int) -> Action:
        return Action(status=500) if "fail" in body["messages"][-1]["content"] else Action(text=default_text(body))

    server, client = serve(script=script, batch_seconds=0.6)
    ids = [f"ok-{i}" for i in range(8)] + ["fail-a", "fail-b"]
    created = client.batches.create(input_file_id=batch_file(client, ids), endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"run": "t1"})
    assert created.status == "validating" and created.id.startswith("batch_") and created.metadata == {"run": "t1"}
    seen = wait_terminal(client, created.id)
    statuses = [b.status for b in seen]
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert [s for s in order if s in statuses] == [s for i, s in enumerate(statuses) if s not in statuses[:i]]
    assert any(0 < b.request_counts.completed + b.request_counts.failed < 10 for b in seen if b.status == "in_progress")

    done = seen[-1]
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (10, 8, 2)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.expires_at
    assert done.failed_at is None and done.expired_at is None and done.errors is None
    output = jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ids[:8]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        reply = ChatCompletion.model_validate(line["response"]["body"])
        assert reply.usage and reply.usage.prompt_tokens == 50
    errors = jsonl(client, done.error_file_id)
    assert [line["custom_id"] for line in errors] == ["fail-a", "fail-b"]
    assert all(line["response"]["status_code"] == 500 and "error" in line["response"]["body"] for line in errors)
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    # every line was answered once, through the script and the log, however often the client polls
    client.batches.retrieve(created.id)
    assert sorted(r.body["messages"][-1]["content"].split()[1] for r in server.log if r.batch_id == created.id) == sorted(ids)
    assert len(server.completed()) == 8
    assert server.batches[created.id].status == "completed"


def test_batch_with_bad_lines_fails_validation(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve()
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": MESSAGES}}
    content = "\n".join([json.dumps(good), "not json", json.dumps(good), json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"})])
    file_id = client.files.create(file=("bad.jsonl", content.encode()), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_terminal(client, batch.id)[-1]
    assert failed.status == "failed" and failed.failed_at and failed.errors and failed.errors.object == "list"
    assert [(e.code, e.line) for e in failed.errors.data] == [("invalid_json_line", 2), ("duplicate_custom_id", 3), ("url_mismatch", 4)]
    assert failed.output_file_id is None and failed.error_file_id is None
    assert not server.log  # nothing was answered


def test_batch_expires_half_done(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve(batch_seconds=0.3, batch_expire_after=lambda index: 3 if index == 0 else None)
    ids = [f"r{i}" for i in range(6)]
    first = client.batches.create(input_file_id=batch_file(client, ids), endpoint="/v1/chat/completions", completion_window="24h")
    second = client.batches.create(input_file_id=batch_file(client, ids), endpoint="/v1/chat/completions", completion_window="24h")

    expired = wait_terminal(client, first.id)[-1]
    assert expired.status == "expired" and expired.expired_at and expired.completed_at is None
    assert (expired.request_counts.total, expired.request_counts.completed) == (6, 3)
    assert [line["custom_id"] for line in jsonl(client, expired.output_file_id)] == ids[:3]
    leftovers = jsonl(client, expired.error_file_id)
    assert [line["custom_id"] for line in leftovers] == ids[3:]
    assert all(line["response"] is None and line["error"] == {
        "code": "batch_expired", "message": "This request could not be executed before the completion window expired."}
        for line in leftovers)

    assert wait_terminal(client, second.id)[-1].status == "completed"
    assert len([r for r in server.log if r.batch_id == first.id]) == 3  # the expired lines were never answered


def test_batch_list_pagination(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    _, client = serve()
    file_id = batch_file(client, ["only"])
    made = [client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id
            for _ in range(5)]
    newest_first = made[::-1]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    page2 = client.batches.list(limit=2, after=page.data[-1].id)
    assert [b.id for b in page2.data] == newest_first[2:4] and page2.has_more
    last = client.batches.list(limit=2, after=page2.data[-1].id)
    assert [b.id for b in last.data] == newest_first[4:] and not last.has_more
    assert [b.id for b in client.batches.list(limit=2)] == newest_first  # the SDK's auto-pagination follows `after`
    assert all(b.status == "completed" for b in client.batches.list())  # listing advances them too


def test_batch_cancel(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    server, client = serve(batch_seconds=1.0)
    ids = [f"c{i}" for i in range(10)]
    batch = client.batches.create(input_file_id=batch_file(client, ids), endpoint="/v1/chat/completions", completion_window="24h")
    time.sleep(0.4)  # about a third of the lines are due
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    answered = cancelling.request_counts.completed
    assert 0 < answered < 10

    cancelled = wait_terminal(client, batch.id)[-1]
    assert cancelled.status == "cancelled" and cancelled.cancelled_at and cancelled.request_counts.completed == answered
    assert [line["custom_id"] for line in jsonl(client, cancelled.output_file_id)] == ids[:answered]
    assert [line["error"]["code"] for line in jsonl(client, cancelled.error_file_id)] == ["batch_cancelled"] * (10 - answered)
    assert len([r for r in server.log if r.batch_id == batch.id]) == answered
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_batch_lines_share_the_script_and_skip_the_limiter(serve: Callable[..., tuple[LoopbackOpenAI, openai.OpenAI]]) -> None:
    tries: list[int] = []

    def script(body: dict[str, Any], n: int) -> Action:
        tries.append(n)
        return Action(text=default_text(body))

    server, client = serve(script=script, rpm=1, window=60.0)
    batch = client.batches.create(input_file_id=batch_file(client, ["a", "b", "c"]), endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert wait_terminal(client, batch.id)[-1].request_counts.completed == 3  # 3 lines despite rpm=1
    body = server.log[0].body
    client.chat.completions.create(model=body["model"], seed=body["seed"], messages=body["messages"])
    assert tries == [0, 0, 0, 1]  # the chat retry of a batched request counts as its second try
    assert server.rate_limited == 0


def test_command_line(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "loopback_openai.py"), "--delay", "0.05", "--rpm", "5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert chat(client).headers["x-ratelimit-limit-requests"] == "5"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
