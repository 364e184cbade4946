"""The documentation site: it builds in strict mode, its field reference covers the recipe schema, and the
README's links into docs/ lead somewhere.

`mkdocs build --strict` turns every warning into an error, and mkdocs.yml's `validation:` makes a broken
link, a missing anchor and a page left out of the nav warnings: so a stale page fails here, not on a
reader. The field reference is rendered from the recipe schema by docs/hooks/reference.py; the checks
below loop over the schema, so a new kind or field is covered without editing this file.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _hook()


@pytest.fixture(scope="module")
def schema() -> dict:
    return hook.load_schema()


@pytest.fixture(scope="module")
def rendered(schema) -> str:
    return hook.render_reference(schema)


def _kind_sections(text: str) -> dict[str, str]:
    """{kind: its section of the rendered page}, split at the '## Kind: ...' headings."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].removeprefix("Kind: ").strip(): p for p in parts if p.startswith("Kind: ")}


def _kinds(schema: dict) -> dict[str, dict]:
    """{task value: its spec's schema}, read from the schema's discriminator (no kind named here)."""
    defs = schema["$defs"]
    mapping = schema["discriminator"]["mapping"]
    assert schema["discriminator"]["propertyName"] == "task"
    return {kind: defs[ref.rsplit("/", 1)[-1]] for kind, ref in mapping.items()}


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}\n{result.stdout}"
    page = (site / "reference" / "index.html").read_text()
    assert hook.MARKER not in page
    assert 'id="kind-' in page and "<table>" in page


def test_reference_lists_every_field_of_every_kind(schema, rendered):
    kinds = _kinds(schema)
    sections = _kind_sections(rendered)
    assert set(sections) == set(kinds), f"kinds in the schema {sorted(kinds)}, on the page {sorted(sections)}"
    described = 0
    for kind, spec in kinds.items():
        section = sections[kind]
        rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| `")}
        for field, node in spec["properties"].items():
            assert f"`{field}`" in rows, f"{kind}: field {field!r} missing from the reference"
            description = node.get("description")
            if description:
                assert hook._escape(description) in rows[f"`{field}`"], f"{kind}.{field}: description missing"
                described += 1
    assert described, "no field of any kind has a description: the schema lost them"


def test_reference_lists_every_generator_backend_and_filter_type(schema, rendered):
    spec = next(iter(_kinds(schema).values()))
    for field, heading in (("generators", "Backend"), ("filters", "Filter")):
        mapping = spec["properties"][field]["items"]["discriminator"]["mapping"]
        for value, ref in mapping.items():
            assert f"### {heading}: {value}\n" in rendered, f"{field}: {value} missing"
            for name in schema["$defs"][ref.rsplit("/", 1)[-1]]["properties"]:
                assert f"| `{name}` |" in rendered


def test_reference_recurses_into_nested_models(rendered):
    # a nested model's fields appear under dotted paths (generate.*, real_data.columns.*, labels.<name>.*)
    assert re.search(r"\| `\w+\.\w+` \|", rendered)
    assert re.search(r"\| `\w+\.<name>\.\w+` \|", rendered) or re.search(r"\| `\w+\[\]\.\w+` \|", rendered)


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+?)\s*$", re.sub(r"```.*?```", "", markdown, flags=re.S), flags=re.M)
    return {hook.slug(re.sub(r"[`*]", "", h)) for h in headings}


def test_readme_links_into_docs_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)\s]+)\)", readme)
    assert links, "the README links to no docs page"
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in _anchors(target.read_text()), f"README links to {link}: no such heading in {path}"
