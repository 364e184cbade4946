"""Recipe validation: every bad recipe names the file, the field and what was expected, before any model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from factory.cli import main
from factory.errors import RecipeError
from factory.recipe_file import load_recipe
from factory.tasks import TASKS

GOOD = """\
name: ok
task: classification
labels:
  a: {description: "first", examples: ["x"]}
  b: {description: "second"}
axes:
  tone: [calm, angry]
  topic: {food: 2, travel: 1}
"""


def bad(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    return err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ntask: classification\nlabels:\n  a: [\n", ["line 5", "YAML syntax error"]),
        (GOOD + "colour: blue\n", ["colour", "unknown key"]),
        (GOOD.replace('description: "second"', 'description: "second", exmples: []'), ["labels.b.exmples", "unknown key"]),
        (GOOD + "seed: seven\n", ["seed", "valid integer", "'seven'"]),
        (GOOD + "generate: {per_label: -3}\n", ["generate.per_label", "greater than or equal to 1"]),
        ("name: x\ntask: classification\nlabels: {}\n", ["labels", "at least two labels", "line 3"]),
        ("name: x\ntask: classification\n", ["labels", "required field is missing"]),
        (GOOD.replace('{description: "second"}', "{examples: [y]}"), ["labels.b.description", "required field is missing"]),
        (GOOD.replace('{description: "second"}', '{description: ""}'), ["labels.b.description", "at least 1 character"]),
        (GOOD.replace("food: 2", "food: -2"), ["axes", "negative weight"]),
        (GOOD.replace("food: 2, travel: 1", "food: 0, travel: 0"), ["axes", "only zero weights"]),
        (GOOD.replace("  b: {", "  a: {"), ["duplicate key 'a'", "line 5"]),
        (GOOD + "generators:\n  - {backend: skynet, model: m}\n", ["generators[0]", "'skynet'", "'openai'", "'llamacpp'"]),
        (GOOD + "generators:\n  - {backend: openai, model: m, api_key_env: sk-123abc}\n",
         ["generators[0].api_key_env", "looks like a key or token"]),
        (GOOD + "generators:\n  - {backend: openai, model: m, weight: 0}\n", ["weights are all zero"]),
        (GOOD + "generators:\n  - {backend: openai, model: m, weight: -1}\n", ["generators[0].weight", "greater than or equal to 0"]),
        (GOOD.replace("labels:", "labels: !!python/object/apply:os.system ['echo pwned']\nx:"), ["python/object/apply", "safe loader"]),
        ("name: x\ntask: summarise\n", ["task", "'classification'", "'instruction'"]),
        ("- just\n- a list\n", ["YAML mapping"]),
        (GOOD.replace("  tone:", "  length: [short, long]\n  tone:") + "generate: {match_real_length: true}\n",
         ["line 10: generate.match_real_length sets", "remove the `length` axis"]),
        # A check across fields points at the line of the field it blames, not at the top of the file.
        (GOOD + "sources: [{path: notes.txt}]\ngrounding: {mode: summarize}\n",
         ["line 10: grounding.mode: 'summarize' is not a mode", "known: topic, rewrite"]),
    ],
)
def test_bad_recipes_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]) -> None:
    err = bad(tmp_path, text, capsys)
    for fragment in expected:
        assert fragment in err


def test_python_tag_is_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    bad(tmp_path, GOOD + f"x: !!python/object/apply:os.system ['touch {marker}']\n", capsys)
    assert not marker.exists()


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_validate_prints_resolved_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["generate"]["per_label"] == 50
    assert resolved["generators"][0]["backend"] == "llamacpp"
    assert resolved["generators"][0]["model"] == "qwen2.5-coder-1.5b-instruct"
    assert resolved["filters"] == [{"auto": False, "type": "exact_dedup", "per_label": False, "include_response": False, "field": None,
                                    "unique_columns": None}]


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "classification" in json.dumps(schema) and "instruction" in json.dumps(schema)


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("recipes/*.yaml")))
def test_shipped_recipes_validate(path: Path) -> None:
    spec = load_recipe(path)
    assert isinstance(spec, tuple(kind.Spec for kind in TASKS.values()))
    assert spec.hash() == load_recipe(path).hash()


def test_recipe_error_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(GOOD + "seed: x\ncolour: red\n", encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize("argv", [["--help"], ["validate", "recipes/movie-reviews.yaml"], ["validate", "--schema"]])
def test_help_and_validate_import_no_numpy_torch_or_filter(argv: list[str]) -> None:
    """Start-up stays light: the recipe is validated without any filter implementation or model library."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    probe = (f"import sys\nfrom factory.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'sklearn', 'pandas', "
             "'datasets', 'transformers') or (m.startswith('factory.filters.') and m != 'factory.filters.params'))\n"
             "print('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")))
def test_each_kind_takes_its_own_size_flag(path: Path) -> None:
    """`factory build --per-label/--count` set the size the kind declares; the other flag is refused, naming this one."""
    spec = load_recipe(path)
    if spec.size_flag is None:
        pytest.skip("the kind takes no size flag")
    before = sum(spec.buckets().values())
    try:
        spec.resize(spec.size_flag, 3)
    except ValueError as exc:  # a recipe whose parts each set their own size says so
        assert spec.size_flag in str(exc)
        return
    assert sum(spec.buckets().values()) == 3 * len(spec.buckets()) != before
    other = "--count" if spec.size_flag == "--per-label" else "--per-label"
    with pytest.raises(ValueError, match=f"{other} does not size a '{spec.task}' recipe; it takes {spec.size_flag}"):
        spec.resize(other, 3)
