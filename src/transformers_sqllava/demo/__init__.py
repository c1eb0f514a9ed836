"""The offline demo's world: generated scenes of coloured shapes, their question language, and a checker.

- `scenes`: [`Scene`], [`generate_scene`], the [`Question`] language and its meaning ([`is_answerable`], [`answer`]).
- `checker`: reading text back ([`parse_question`], [`parse_caption`]) and judging answers ([`is_correct`]).
- `data`: the train/held-out split ([`split_scenes`]) and samples as LLaVA JSON ([`write_llava_dataset`]) or TRL
  rows ([`build_trl_rows`]), stage 1 (captions) or stage 2 (conversations).
- `tokenizer`: [`build_scene_tokenizer`], a tiny Vicuna-shaped tokenizer trained on the scene language.
- `vision_pretraining`: stage 0 of the demo's training, the stand-in for CLIP's pretraining ([`pretrain_vision`]).
- `train`: [`train_demo_model`], the tiny SQ-LLaVA trained on scenes with `SFTTrainer` and the self-questioning
  collator (`python -m transformers_sqllava.demo.train`); its committed checkpoint is [`DEFAULT_CHECKPOINT`].
- `run`: [`run_demo`] and [`format_report`], what `sqllava demo` runs and prints.
"""

from .checker import is_correct, parse_caption, parse_question
from .data import SceneSplit, build_trl_rows, scene_turns, split_scenes, write_llava_dataset
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
from .tokenizer import build_scene_tokenizer
from .train import DEFAULT_CHECKPOINT, DemoTrainingConfig, train_demo_model
from .run import DemoReport, format_report, load_demo_model, run_demo

__all__ = [
    "CELLS",
    "DEFAULT_CHECKPOINT",
    "DemoReport",
    "DemoTrainingConfig",
    "format_report",
    "load_demo_model",
    "run_demo",
    "train_demo_model",
    "COLOURS",
    "DESCRIBE_QUESTION",
    "SHAPES",
    "SIZES",
    "Question",
    "QuestionKind",
    "Scene",
    "SceneObject",
    "SceneSplit",
    "answer",
    "build_scene_tokenizer",
    "build_trl_rows",
    "generate_scene",
    "is_answerable",
    "is_correct",
    "parse_caption",
    "parse_question",
    "sample_question",
    "scene_turns",
    "split_scenes",
    "write_llava_dataset",
]
