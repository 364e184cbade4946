"""dataset-factory: manufacture fine-tuning datasets with language models, then prove they are worth training on."""

from factory.compare import compare
from factory.errors import FactoryError, GenerationError, RecipeError, RunLockedError
from factory.pipeline import BuildResult, build
from factory.records import Completion, Prompt, Record, Rejected
from factory.spec import load_recipe, parse_recipe
from factory.tasks import ClassificationSpec, InstructionSpec

__all__ = [
    "BuildResult", "ClassificationSpec", "Completion", "FactoryError", "GenerationError", "InstructionSpec",
    "Prompt", "Record", "RecipeError", "Rejected", "RunLockedError", "build", "compare", "load_recipe", "parse_recipe",
]
