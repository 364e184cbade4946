"""`factory review`: the server's guards over plain HTTP, and the page driven in headless Chromium
(Debian's package, as `.ci/run` installs it) on a real run directory: filter, search, decide with the
keyboard, reload; then the decision log and a following build and export."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action, default_text

from factory import build, load_recipe
from factory.cli import main
from factory.review.server import ReviewServer

# Model text is untrusted: each of these must show as text and run nothing.
INJECTIONS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '"><svg onload="window.__pwned = 3">',
    "</pre><b id=bold>bold</b><pre>",
    "javascript:window.__pwned = 4",
]


def _script(body: dict[str, Any], n: int) -> Action:
    reply = json.loads(default_text(body))
    seed = body.get("seed", 0)
    if seed % 3 == 0:  # every third reply carries a payload
        reply["text"] = f"Payload {seed}: {INJECTIONS[seed % len(INJECTIONS)]} in a review."
    if seed % 5 == 0:  # and some say what another said: exact_dedup drops them
        reply["text"] = f"The same words for {reply['label']}."
    return Action(text=json.dumps(reply))


@pytest.fixture()
def run_dir(tmp_path: Path, loopback, canary_key: str) -> Iterator[tuple[Path, Path, Any]]:
    server = loopback(script=_script)
    recipe = classification_recipe(server.base_url, generate={"per_label": 8}, filters=[{"type": "exact_dedup"}])
    path = write_recipe(tmp_path / "r.yaml", recipe)
    build(load_recipe(path), tmp_path / "run", progress=False)
    yield tmp_path / "run", path, server


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(server: ReviewServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/decide", data=json.dumps(body).encode(),
                                     headers={"X-Review-Token": server.token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_refuses_without_the_token_and_reads_nothing_outside_the_run(run_dir: tuple[Path, Path, Any]) -> None:
    run, _, _ = run_dir
    server = ReviewServer(run, with_map=False).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(f"{base}/")[0] == 403 and _get(f"{base}/api/rows?token=wrong")[0] == 403
        status, page = _get(server.url)
        assert status == 200 and "factory review" in page
        assert _get(f"{base}/api/rows?token={server.token}", host="evil.example:80")[0] == 403  # DNS rebinding
        for path in ("/../../etc/passwd", "/manifest.json", "/requests.sqlite", "/%2e%2e/%2e%2e/etc/passwd"):
            status, body = _get(f"{base}{path}?token={server.token}")
            assert status == 404 and "root:" not in body
        listed = json.loads(_get(f"{base}/api/rows?token={server.token}")[1])
        one = listed["columns"]["id"][0]
        assert listed["count"] == len(listed["columns"]["text"]) > 0
        assert _get(f"{base}/api/row?id=nope&token={server.token}")[0] == 404
        detail = json.loads(_get(f"{base}/api/row?id={one}&token={server.token}")[1])
        assert "provenance" in detail and detail["prompt"][-1]["role"] == "user"  # the request that made the row
        # Its few-shot example, by where the recipe writes it (the recipe has one per label, and few_shot: 1).
        assert detail["provenance"]["few_shot"] == [f"labels.{detail['provenance']['bucket']}.examples[0]"]
        assert json.loads(_get(f"{base}/api/decisions?token={server.token}")[1]) == {}
        assert _post(server, {"ids": ["not-a-row"], "action": "reject"})[0] == 400
        assert _post(server, {"ids": [one], "action": "relabel", "label": "nonsense"})[0] == 400
        assert _post(server, {"ids": [one], "action": "delete"})[0] == 400
        assert _post(server, {"ids": [one], "action": "reject", "note": "x" * 5000})[0] == 400
        assert not (run / "decisions.jsonl").exists()
        status, answer = _post(server, {"ids": [one], "action": "reject", "note": "dull"})
        assert status == 200 and answer["decisions"][one] == {"keep": False, "label": None, "note": "dull"}
    finally:
        server.shutdown()


def _browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Chromium and its driver are not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)  # --no-sandbox: CI runs as root, where Chromium's own sandbox refuses to start
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _wait(driver: Any, condition: str, timeout: float = 30.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(f"return {condition};")
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"the page never reached: {condition}")


def _keys(driver: Any, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def _select(driver: Any, element_id: str, value: str) -> None:
    driver.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input'));", element_id, value)


def test_the_page_filters_searches_and_takes_keyboard_decisions(run_dir: tuple[Path, Path, Any], canary_key: str,
                                                                capsys) -> None:
    run, recipe, openai_server = run_dir
    data = json.loads((run / "manifest.json").read_text())
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    kept = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    total = len(kept) + len({r["id"] for r in rejected})
    server = ReviewServer(run, who="tester").start()
    driver = _browser()
    try:
        driver.get(server.url.replace("token=", "token=wrong"))
        assert "session token" in driver.find_element("tag name", "body").text or "token" in driver.page_source
        driver.get(server.url)
        _wait(driver, f"document.getElementById('count').textContent === '{total} of {total} rows'")
        # Every payload shows as text; none ran, none became an element.
        assert driver.execute_script("return window.__pwned === undefined && !document.getElementById('bold')")
        _select(driver, "f-status", "rejected")
        assert driver.find_element("id", "count").text == f"{len({r['id'] for r in rejected})} of {total} rows"
        _select(driver, "f-reason", "exact_duplicate")
        shown = driver.find_element("id", "count").text
        assert shown.startswith(str(sum(r["reason"] == "exact_duplicate" for r in rejected)))
        _select(driver, "f-status", "")
        _select(driver, "f-reason", "")
        payload = next(t for t in kept["text"] if "<script>" in t or "onerror" in t or "<svg" in t or "</pre>" in t)
        search = driver.find_element("id", "search")
        search.send_keys(payload.split(":")[0])  # "Payload 12"
        _wait(driver, "document.getElementById('count').textContent.startsWith('1 of')")
        _wait(driver, "document.getElementById('detail').textContent.includes('[user]')")  # the prompt came
        detail = driver.find_element("id", "detail").text
        assert payload in detail  # the payload, verbatim, as text
        assert driver.execute_script("return window.__pwned === undefined && !document.getElementById('bold')")
        search.clear()
        driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'));"
                              "document.getElementById('search').blur();")
        _select(driver, "f-status", "kept")
        counts = pd.Series([*kept["text"], *(r["text"] for r in rejected)]).value_counts()
        unique = [i for i, t in zip(kept["id"], kept["text"]) if counts[t] == 1]
        reject_id, relabel_id = unique[0], unique[1]
        driver.execute_script("move(state.shown.findIndex(r => r.id === arguments[0]))", reject_id)
        _keys(driver, "r")  # reject; the cursor moves on to the next row
        _wait(driver, "document.getElementById('status').textContent.startsWith('reject')")
        _keys(driver, "k")  # and back
        assert driver.execute_script("return state.shown[state.current].id") == reject_id
        _keys(driver, "jj")
        driver.execute_script("move(state.shown.findIndex(r => r.id === arguments[0]))", relabel_id)
        _keys(driver, "l")  # relabel to the next label
        _wait(driver, "document.getElementById('status').textContent.startsWith('relabel')")
        _select(driver, "f-status", "rejected")
        dropped = driver.execute_script("return state.shown.filter(r => r.reason === 'exact_duplicate').map(r => r.id)[0]")
        driver.execute_script("move(state.shown.findIndex(r => r.id === arguments[0]))", dropped)
        _keys(driver, "a")  # accept a row a filter dropped
        _wait(driver, "document.getElementById('status').textContent.startsWith('accept')")
        _select(driver, "f-status", "kept")
        for chosen in unique[2:4]:  # a selection of two, rejected with one key
            driver.execute_script("move(state.shown.findIndex(r => r.id === arguments[0]))", chosen)
            _keys(driver, "x")
        assert driver.execute_script("return document.querySelectorAll('.row.selected').length") == 2
        _keys(driver, "r")
        _wait(driver, "document.getElementById('status').textContent === 'reject: 2 row(s) saved'")
        driver.refresh()
        _wait(driver, f"document.getElementById('count').textContent === '{total} of {total} rows'")
        decided = driver.execute_script("return Object.fromEntries(state.rows.filter(r => r.decision).map(r => "
                                        "[r.id, r.decision.keep ? (r.decision.label || 'accept') : 'reject']))")
        labels = dict(zip(kept["id"], kept["label"]))
        other = {"positive": "negative", "negative": "positive"}
        assert decided == {reject_id: "reject", relabel_id: other[labels[relabel_id]], dropped: "accept",
                           unique[2]: "reject", unique[3]: "reject"}
        marks = driver.execute_script("return document.querySelectorAll('.decided').length")
        assert marks >= 1
    finally:
        driver.quit()
        server.shutdown()
    log = [json.loads(line) for line in (run / "decisions.jsonl").read_text().splitlines()]
    assert [(d["id"], d["action"], d["who"]) for d in log] == [
        (reject_id, "reject", "tester"), (relabel_id, "relabel", "tester"), (dropped, "accept", "tester"),
        (unique[2], "reject", "tester"), (unique[3], "reject", "tester")]

    # The export applies the decisions from the cached replies: nothing is sent.
    capsys.readouterr()
    sent = len(openai_server.log)
    assert main(["export", str(run), "--format", "columns"]) == 0
    assert "applying 5 review decision(s)" in capsys.readouterr().err
    assert len(openai_server.log) == sent
    exported = [json.loads(line) for line in (run / "export" / "columns" / "train.jsonl").read_text().splitlines()]
    texts = {row["text"]: row["label"] for row in exported}
    text_of = {**dict(zip(kept["id"], kept["text"])), **{r["id"]: r["text"] for r in rejected}}
    assert text_of[reject_id] not in texts
    assert texts[text_of[relabel_id]] == other[labels[relabel_id]]
    final_ids = set(pd.read_parquet(run / "dataset" / "data" / "train.parquet")["id"])
    assert dropped in final_ids and not {reject_id, *unique[2:4]} & final_ids  # by id: the restored row repeats a text
    assert json.loads((run / "manifest.json").read_text())["review"]["reviewed"] == 5
    assert data["review"] is None
    # A later build tops up what the rejections left short: new requests only, none sent twice.
    assert main(["build", str(recipe), "--out", str(run), "--no-progress"]) == 0
    assert len({e.fingerprint for e in openai_server.log}) == len(openai_server.log)
    capsys.readouterr()
    assert main(["export", str(run), "--format", "columns"]) == 0
    assert "applying" not in capsys.readouterr().err  # nothing left to apply
