"""`mode: batch`: a generator's requests through OpenAI's Batch API, resumable across builds.

The requests go out as one JSONL file (`/v1/files`) and one job (`/v1/batches`) per chunk. Every step
is written to the generator's journal in the run directory before and after it happens (upload, file
id, batch id, collected), so a build killed at any point finds its jobs again: a job whose id was
recorded is polled and collected, a file uploaded without a recorded job is looked up among the
account's batches by its file id before a job is created for it, and nothing is paid for twice.
Both the output and the error file are read; requests that failed or expired inside a job are
submitted again, up to `batch.resubmits` times, and what a job returned is kept whatever its end.
The results are kept beside the journal too, so replies collected just before a crash are not lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import GenerationError
from factory.generators.failures import BATCH_PENDING
from factory.records import Completion, Prompt
from factory.run.store import JsonlLog, atomic_write_text, read_jsonl, request_key

if TYPE_CHECKING:
    from factory.generators.openai_compat import OpenAIGenerator

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


@dataclass
class Job:
    """One submitted (or about to be submitted) batch, as the journal tells it."""

    id: str
    custom_ids: list[str]
    attempt: int = 0
    file_id: str | None = None
    batch_id: str | None = None
    collected: bool = False
    worst_usd: dict[str, float] = field(default_factory=dict)  # reservations on the meter, per request


class BatchRunner:
    """Submits, finds again, polls and collects the Batch API jobs of one generator."""

    def __init__(self, generator: OpenAIGenerator, client: Any) -> None:
        state = generator.run.state_dir
        if state is None:
            raise GenerationError(f"generator '{generator.name}': mode: batch needs a run directory for its journal")
        state.mkdir(parents=True, exist_ok=True)
        self.generator = generator
        self.client = client
        self.params = generator.params
        self.state = state
        self.journal = JsonlLog(state / "journal.jsonl", key=("job", "event"))
        self.identity = generator.identity()

    # -- the journal ----------------------------------------------------------------------------

    def _jobs(self) -> dict[str, Job]:
        jobs: dict[str, Job] = {}
        for event in self.journal.rows():
            name = event["job"]
            if event["event"] == "upload":
                jobs[name] = Job(name, list(event["custom_ids"]), event.get("attempt", 0))
            elif name in jobs:
                job = jobs[name]
                job.file_id = event.get("file_id", job.file_id)
                job.batch_id = event.get("batch_id", job.batch_id)
                job.collected = job.collected or event["event"] == "collected"
        return jobs

    def _note(self, job: Job, event: str, **fields: Any) -> None:
        self.journal.append([{"job": job.id, "event": event, "at": time.time(), **fields}])

    # -- the stream -----------------------------------------------------------------------------

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        wanted = {request_key(self.identity, p): p for p in prompts}
        jobs = self._jobs()
        attempts: dict[str, int] = {}
        # Replies a job returned before a crash kept them from the request cache.
        for job in jobs.values():
            if job.collected and job.batch_id:
                for cid, completion in self._read_results(job.batch_id).items():
                    if cid in wanted and completion.error is None:
                        yield wanted.pop(cid), completion
        running = [job for job in jobs.values() if not job.collected and set(job.custom_ids) & set(wanted)]
        for job in running:
            for cid in job.custom_ids:
                if cid in wanted:
                    attempts[cid] = job.attempt
                    worst = self.generator.worst_cost(wanted[cid], batch=True)
                    if worst is not None and self.generator.run.meter is not None:
                        self.generator.run.meter.hold(worst)  # submitted by an earlier build: committed
                        job.worst_usd[cid] = worst
        taken = {cid for job in running for cid in job.custom_ids}
        fresh = [cid for cid in wanted if cid not in taken]
        for done in await self._submit_all(fresh, wanted, attempt=0, into=running):
            yield done
        for job in running:
            if job.batch_id is None:
                await self._create(job)
        if self.generator.run.no_wait:
            for job in running:
                log.info("batch %s: submitted with %d requests; run the build again to collect it",
                         job.batch_id, len(job.custom_ids))
                for cid in job.custom_ids:
                    if cid in wanted:
                        yield wanted[cid], Completion(text="", error=f"{BATCH_PENDING}: in batch {job.batch_id}")
            return
        delay = self.params.batch.poll_s
        shown: dict[str, tuple[str, int]] = {}
        while running:
            finished = []
            for job in running:
                batch = await self.client.batches.retrieve(job.batch_id)
                counts = batch.request_counts
                state = (batch.status, counts.completed if counts else 0)
                if shown.get(job.batch_id) != state:  # progress, said when it changes
                    shown[job.batch_id] = state
                    log.info("batch %s: %s, %d of %d requests done", job.batch_id, batch.status, state[1],
                             counts.total if counts else len(job.custom_ids))
                if batch.status not in RUNNING:
                    finished.append((job, batch))
            for job, batch in finished:
                running.remove(job)
                again: list[str] = []
                for cid, completion in (await self._collect(job, batch)).items():
                    if cid not in wanted:
                        continue
                    if _retryable(completion) and attempts.get(cid, 0) < self.params.batch.resubmits:
                        again.append(cid)
                        continue
                    yield wanted[cid], completion
                if again:
                    log.info("batch %s: %d request(s) failed or expired; submitting them again", job.batch_id, len(again))
                    before = len(running)
                    for done in await self._submit_all(again, wanted, attempt=job.attempt + 1, into=running):
                        yield done
                    for new in running[before:]:
                        for cid in new.custom_ids:
                            attempts[cid] = new.attempt
                        await self._create(new)
            if running:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, self.params.batch.poll_max_s)

    # -- submission -----------------------------------------------------------------------------

    async def _submit_all(self, ids: list[str], wanted: dict[str, Prompt], attempt: int,
                          into: list[Job]) -> list[tuple[Prompt, Completion]]:
        """Jobs for `ids` (each admitted by the budget first), appended to `into`; the requests refused."""
        refused: list[tuple[Prompt, Completion]] = []
        admitted: dict[str, float] = {}
        for cid in ids:
            reserved, why = await self.generator.admit(wanted[cid], batch=True)
            if why:
                refused.append((wanted[cid], Completion(text="", error=why)))
            else:
                admitted[cid] = reserved or 0.0
        chunk = self.params.batch.max_requests
        order = list(admitted)
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            job = Job(uuid.uuid4().hex[:12], part, attempt, worst_usd={cid: admitted[cid] for cid in part})
            # The file's lines are written before anything is sent: a crash after this finds them again.
            lines = [json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": self._body(wanted[cid])},
                                ensure_ascii=False) for cid in part]
            atomic_write_text(self._input_path(job), "\n".join(lines) + "\n")
            self._note(job, "upload", custom_ids=part, attempt=attempt)
            into.append(job)
        return refused

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        p = self.params
        body: dict[str, Any] = {"model": p.model, "messages": prompt.messages, "temperature": p.temperature,
                                "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": prompt.seed, **p.extra_body}
        fmt = self.generator.response_format(prompt)
        if fmt:
            body["response_format"] = fmt
        return body

    def _input_path(self, job: Job) -> Path:
        return self.state / f"{job.id}.input.jsonl"

    async def _create(self, job: Job) -> None:
        """Upload the job's file (unless done) and create its batch, unless an earlier build already did."""
        if job.file_id is None:
            with self._input_path(job).open("rb") as handle:
                uploaded = await self.client.files.create(file=(f"{job.id}.jsonl", handle.read()), purpose="batch")
            job.file_id = uploaded.id
            self._note(job, "file", file_id=job.file_id)
        else:
            async for batch in self.client.batches.list(limit=100):
                if batch.input_file_id == job.file_id:  # created, then the build died before it noted the id
                    job.batch_id = batch.id
                    self._note(job, "submitted", batch_id=batch.id, found=True)
                    return
        batch = await self.client.batches.create(input_file_id=job.file_id, endpoint=ENDPOINT,
                                                 completion_window=self.params.batch.completion_window,
                                                 metadata={"factory_job": job.id})
        job.batch_id = batch.id
        self._note(job, "submitted", batch_id=batch.id)
        log.info("batch %s: submitted %d requests", batch.id, len(job.custom_ids))

    # -- collection -----------------------------------------------------------------------------

    async def _collect(self, job: Job, batch: Any) -> dict[str, Completion]:
        """Download the job's output and error files, keep them, and settle the job's reservations."""
        for kind, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
            if file_id:
                content = await self.client.files.content(file_id)
                atomic_write_text(self.state / f"{job.batch_id}.{kind}.jsonl", content.text)
        results = self._read_results(job.batch_id)
        reason = _batch_errors(batch)
        for cid in job.custom_ids:
            if cid not in results:  # a failed job (its file refused) returns no line for its requests
                results[cid] = Completion(text="", error=f"batch_{batch.status}: {reason or 'no result returned'}")
        meter = self.generator.run.meter
        for cid, completion in results.items():
            if meter is not None and cid in job.worst_usd:
                meter.settle(job.worst_usd[cid], completion.cost_usd or 0.0)
        self._note(job, "collected", batch_id=job.batch_id, status=batch.status)
        return results

    def _read_results(self, batch_id: str) -> dict[str, Completion]:
        results: dict[str, Completion] = {}
        for kind in ("output", "errors"):
            for line in read_jsonl(self.state / f"{batch_id}.{kind}.jsonl"):
                results[line["custom_id"]] = self._completion(line)
        return results

    def _completion(self, line: dict[str, Any]) -> Completion:
        from openai.types.chat import ChatCompletion

        response = line.get("response") or {}
        error = line.get("error")
        if error:
            return Completion(text="", error=f"batch_{error.get('code', 'error')}: {error.get('message', '')}"[:300])
        status = response.get("status_code", 0)
        body = response.get("body") or {}
        if status != 200:
            message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else str(body)
            return Completion(text="", error=f"http_{status}: {message}"[:300])
        try:
            reply = ChatCompletion.model_validate(body)
        except ValueError as exc:
            return Completion(text="", error=f"bad_response: {str(exc)[:200]}")
        return self.generator.charge(self.generator.completion_of(reply, time.perf_counter()), batch=True)


def _retryable(completion: Completion) -> bool:
    """A request that failed inside a job the way a retry cures: expired, rate limited or a server error."""
    error = completion.error or ""
    return error.startswith(("batch_batch_expired", "http_429", "http_5"))


def _batch_errors(batch: Any) -> str:
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or []
    return "; ".join(f"{e.code}: {e.message}" for e in data[:3])
