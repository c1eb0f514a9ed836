"""The offline demo's world: generated scenes of coloured shapes, their question language, and a checker.

- `scenes`: [`Scene`], [`generate_scene`], the [`Question`] language and its meaning ([`is_answerable`], [`answer`]).
- `checker`: reading text back ([`parse_question`], [`parse_caption`]) and judging answers ([`is_correct`]).
"""

from .checker import is_correct, parse_caption, parse_question
from .scenes import (
    CELLS,
    COLOURS,
    DESCRIBE_QUESTION,
    SHAPES,
    SIZES,
    Question,
    QuestionKind,
    Scene,
    SceneObject,
    answer,
    generate_scene,
    is_answerable,
    sample_question,
)

__all__ = [
    "CELLS",
    "COLOURS",
    "DESCRIBE_QUESTION",
    "SHAPES",
    "SIZES",
    "Question",
    "QuestionKind",
    "Scene",
    "SceneObject",
    "answer",
    "generate_scene",
    "is_answerable",
    "is_correct",
    "parse_caption",
    "parse_question",
    "sample_question",
]
