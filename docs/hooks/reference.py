"""MkDocs hook: docs/reference.md's field tables, rendered from the recipe schema at build time.

The recipe files' JSON schema (pydantic: a union over task kinds keyed by `task`, with `$defs`) is the
one source of truth for recipe fields, so the reference is generated from it and cannot drift from the
code. `render_reference(schema)` is a plain function (tests/test_docs.py calls it); the hook replaces
the MARKER line of reference.md with its output. Every kind, generator backend and filter type is read
from the schema: adding one to the code adds it to the page.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PAGE = "reference.md"
MARKER = "<!-- generated: recipe field reference -->"
# Nicer titles for the unions a recipe holds lists of; any other union gets a title from its field name.
UNION_TITLES = {"generators": "Generator backends", "filters": "Filter types"}
UNION_ITEM = {"generators": "Backend", "filters": "Filter"}


def load_schema() -> dict[str, Any]:
    """The recipe schema (factory.recipe_file)."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)  # a checkout that is not installed still builds its docs
    from factory.recipe_file import recipe_schema

    return recipe_schema()


def slug(text: str) -> str:
    """The anchor MkDocs' default toc extension gives a plain-text heading."""
    text = re.sub(r"[^\w\s-]", "", text.strip().lower())
    return re.sub(r"[-\s]+", "-", text)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _escape(text: str) -> str:
    """A table cell's text: one line, pipes escaped, and `<...>` outside code spans shown, not read as HTML."""
    parts = str(text).replace("\r", " ").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _code(value: str) -> str:
    return f"`{value}`".replace("|", "\\|")


class Renderer:
    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self.defs: dict[str, Any] = schema.get("$defs", {})
        # (field name, discriminator, mapping) of every discriminated union met, in order of appearance
        self.unions: dict[tuple[str, str], dict[str, str]] = {}

    # -- the schema's shapes ----------------------------------------------------------------------
    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.defs[_ref_name(node["$ref"])]
        return node

    @staticmethod
    def non_null(node: dict[str, Any]) -> list[dict[str, Any]]:
        options = node.get("anyOf") or node.get("oneOf")
        if options and "discriminator" not in node:
            return [o for o in options if o.get("type") != "null"]
        return [node]

    def model(self, node: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(def name, def) when the node is a model (an object with properties), through an optional null."""
        options = self.non_null(node)
        if len(options) == 1 and "$ref" in options[0]:
            target = self.resolve(options[0])
            if target.get("properties"):
                return _ref_name(options[0]["$ref"]), target
        return None

    def union(self, node: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """(discriminator, {value: def name}) of a discriminated union."""
        disc = node.get("discriminator")
        if not disc:
            return None
        mapping = {value: _ref_name(ref) for value, ref in disc.get("mapping", {}).items()}
        if not mapping:  # no mapping: read each option's const
            for option in node.get("oneOf", []):
                target = self.resolve(option)
                const = target.get("properties", {}).get(disc["propertyName"], {}).get("const")
                if const is not None:
                    mapping[str(const)] = _ref_name(option["$ref"])
        # in the order of oneOf (the code's order), not the mapping's alphabetical one
        order = [_ref_name(o["$ref"]) for o in node.get("oneOf", []) if "$ref" in o]
        ranked = sorted(mapping.items(), key=lambda kv: order.index(kv[1]) if kv[1] in order else len(order))
        return disc["propertyName"], dict(ranked)

    def type_of(self, node: dict[str, Any]) -> str:
        if "$ref" in node:
            target = self.resolve(node)
            return "object" if target.get("properties") or target.get("type") == "object" else self.type_of(target)
        if "const" in node:
            return json.dumps(node["const"])
        if "discriminator" in node:
            found = self.union(node)
            return f"one of ({found[0]}: {', '.join(found[1])})" if found else "object"
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            kinds = [self.type_of(o) for o in options]
            return " or ".join(dict.fromkeys(kinds))
        if "enum" in node:
            return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
        kind = node.get("type")
        if isinstance(kind, list):
            return " or ".join(kind)
        if kind == "array":
            items = node.get("items")
            return f"list of {self.type_of(items)}" if items else "list"
        if kind == "object":
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return f"mapping of name to {self.type_of(extra)}"
            return "object"
        text = kind or "any"
        limits = [f"{label} {node[key]}" for key, label in
                  (("minimum", ">="), ("exclusiveMinimum", ">"), ("ge", ">="), ("maximum", "<="), ("exclusiveMaximum", "<"))
                  if key in node]
        return f"{text} ({', '.join(limits)})" if limits else text

    @staticmethod
    def default_of(name: str, node: dict[str, Any], required: set[str]) -> str:
        if "default" in node:
            return _code(json.dumps(node["default"]))
        return "required" if name in required else ""

    # -- rows -------------------------------------------------------------------------------------
    def rows(self, target: dict[str, Any], prefix: str = "", seen: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
        """(dotted path, type, default, description) of every field of a model, nested models recursed."""
        out = []
        required = set(target.get("required", []))
        for name, node in target.get("properties", {}).items():
            path = prefix + name
            found = self.model(node)
            description = node.get("description") or (found[1].get("description", "") if found else "")
            type_text = self.type_of(node)
            items = node.get("items") if node.get("type") == "array" else None
            extra = node.get("additionalProperties") if node.get("type") == "object" else None
            union = self.union(items) if isinstance(items, dict) else None
            if union:
                title = UNION_TITLES.get(name, f"`{name}[]` kinds")
                self.unions.setdefault((name, union[0]), {}).update(union[1])  # a kind may allow other members
                description = f"{description} See [{title}](#{slug(title)})." if description else f"See [{title}](#{slug(title)})."
            out.append((path, type_text, self.default_of(name, node, required), description))
            if union:
                continue
            if found and found[0] not in seen:
                out += self.rows(found[1], f"{path}.", (*seen, found[0]))
            elif isinstance(items, dict) and (inner := self.model(items)) and inner[0] not in seen:
                out += self.rows(inner[1], f"{path}[].", (*seen, inner[0]))
            elif isinstance(extra, dict) and (inner := self.model(extra)) and inner[0] not in seen:
                out += self.rows(inner[1], f"{path}.<name>.", (*seen, inner[0]))
        return out

    def table(self, target: dict[str, Any], seen: tuple[str, ...]) -> list[str]:
        lines = ["| field | type | default | description |", "|---|---|---|---|"]
        for path, type_text, default, description in self.rows(target, "", seen):
            lines.append(f"| {_code(path)} | {_escape(type_text)} | {default} | {_escape(description)} |")
        return lines

    # -- the page ---------------------------------------------------------------------------------
    def kinds(self) -> dict[str, str]:
        """{task value: def name} of every kind in the schema."""
        found = self.union(self.schema)
        if found:
            return found[1]
        if "$ref" in self.schema:  # a schema of one kind
            target = self.resolve(self.schema)
            return {str(target["properties"]["task"].get("const", "recipe")): _ref_name(self.schema["$ref"])}
        raise ValueError("the recipe schema is neither a union over task kinds nor one kind")

    def render(self) -> str:
        kinds = self.kinds()
        lines = ["Kinds: " + ", ".join(f"[`{kind}`](#{slug('Kind: ' + kind)})" for kind in kinds) + ".", ""]
        for kind, def_name in kinds.items():
            target = self.defs[def_name]
            lines += [f"## Kind: {kind}", ""]
            if target.get("description"):
                lines += [_escape(target["description"]), ""]
            lines += [f"`task: {kind}`.", ""]
            lines += self.table(target, (def_name,))
            lines.append("")
        for (field, disc), mapping in self.unions.items():
            title = UNION_TITLES.get(field, f"`{field}[]` kinds")
            item = UNION_ITEM.get(field, field)
            lines += [f"## {title}", "", f"Each entry of `{field}:` names its `{disc}`: "
                      + ", ".join(f"[`{value}`](#{slug(f'{item}: {value}')})" for value in mapping) + ".", ""]
            for value, def_name in mapping.items():
                target = self.defs[def_name]
                lines += [f"### {item}: {value}", ""]
                if target.get("description"):
                    lines += [_escape(target["description"]), ""]
                lines += self.table(target, (def_name,))
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def render_reference(schema: dict[str, Any]) -> str:
    """Markdown: per task kind a table of every field (dotted paths into nested models), then every
    generator backend and filter type with its fields."""
    return Renderer(schema).render()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker line {MARKER!r}: the field reference has nowhere to go")
    return markdown.replace(MARKER, render_reference(load_schema()))
