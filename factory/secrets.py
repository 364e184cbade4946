"""Keys and tokens: recognise them where a name belongs, and scrub them from everything we print.

Recipes and flags name environment variables; a value that looks like the key itself is refused
with a message that never repeats it. `redact()` is the last line of defence for messages, logs
and cards: it replaces the values of the secret-holding variables and anything shaped like a
well-known key or token.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

# Prefixes of keys and tokens people paste: OpenAI / Anthropic (sk-), Hugging Face (hf_, api_org_),
# GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), Slack (xox?-), AWS access key ids (AKIA/ASIA),
# Google API keys (AIza), GitLab (glpat-), Groq (gsk_), Replicate (r8_).
_TOKEN_PREFIX = r"(?:sk-|hf_|api_org_|gh[pousr]_|github_pat_|xox[abpsr]-|AKIA|ASIA|AIza|glpat-|gsk_|r8_)"
_LOOKS_LIKE_SECRET = re.compile(rf"^{_TOKEN_PREFIX}[A-Za-z0-9_\-]{{6,}}$")
_SECRET_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9_]){_TOKEN_PREFIX}[A-Za-z0-9_\-]{{12,}}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables whose values are secrets even when no recipe names them.
DEFAULT_SECRET_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
MASK = "***"
_named: set[str] = set()


def looks_like_secret(value: str) -> bool:
    """True for a value shaped like a key or token rather than like the name of a variable."""
    value = value.strip()
    if _LOOKS_LIKE_SECRET.match(value):
        return True
    # A long run of letters and digits without the underscores that separate a name's words
    # (a 40-character hex or base64 token, say) is a key, whatever its prefix.
    return (len(value) >= 32 and "_" not in value and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value))


def check_env_name(value: str, what: str = "the name of an environment variable") -> str:
    """`value` if it is a usable variable name; else ValueError whose message does not contain it."""
    if looks_like_secret(value):
        raise ValueError(f"this looks like a key or token, not {what}: put the secret in an environment variable "
                         "and give that variable's name here (the value was not echoed)")
    if not ENV_NAME.match(value):
        raise ValueError(f"expected {what}: letters, digits and underscores, not starting with a digit "
                         "(e.g. OPENAI_API_KEY)")
    return value


# The type of every recipe field that names an environment variable.
EnvVarName = Annotated[str, AfterValidator(check_env_name), WithJsonSchema({"type": "string", "pattern": ENV_NAME.pattern})]


def name_secret_variables(names: Iterable[str | None]) -> None:
    """Remember variables that hold secrets, so their values are redacted everywhere from now on."""
    _named.update(n for n in names if n)


def recipe_secret_variables(recipe: dict[str, Any]) -> list[str]:
    """The variables a resolved recipe (plain data, as in a manifest) names as holding secrets."""
    names = [g.get("api_key_env") for g in recipe.get("generators") or []]
    names.append((recipe.get("hub") or {}).get("token_env"))
    return [n for n in names if n]


def secret_values() -> list[str]:
    """The current values of every secret-holding variable, longest first (so none is half-replaced)."""
    names = set(DEFAULT_SECRET_VARIABLES) | _named
    values = {v for n in names if len(v := os.environ.get(n, "").strip()) >= 6}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known secret value and every token-shaped string replaced by ***."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return _SECRET_IN_TEXT.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
