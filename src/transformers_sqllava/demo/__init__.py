"""The offline demo's world: generated scenes of coloured shapes, their question language, and a checker.

- `scenes`: [`Scene`], [`generate_scene`], the [`Question`] language and its meaning ([`is_answerable`], [`answer`]).
- `checker`: reading text back ([`parse_question`], [`parse_caption`]) and judging answers ([`is_correct`]).
- `data`: the train/held-out split ([`split_scenes`]) and samples as LLaVA JSON ([`write_llava_dataset`]) or TRL
  rows ([`build_trl_rows`]), stage 1 (captions) or stage 2 (conversations).
- `tokenizer`: [`build_scene_tokenizer`], a tiny Vicuna-shaped tokenizer trained on the scene language.
- `vision_pretraining`: stage 0 of the demo's training, the stand-in for CLIP's pretraining ([`pretrain_vision`]).
- `tiny`: [`tiny_sqllava_config`], the one builder of the project's tiny SQ-LLaVA configs (the demo model's, the
  examples' and the tests').
- `record`: what a demo checkpoint is: the committed one ([`DEFAULT_CHECKPOINT`]), its training record
  ([`load_training_record`]) and the demo's targets.
- `train`: [`train_demo_model`], the tiny SQ-LLaVA trained on scenes with `SFTTrainer` and the self-questioning
  collator (`python -m transformers_sqllava.demo.train`); `model_card` writes its card.
- `run`: [`run_demo`] and [`format_report`], what `sqllava demo` runs and prints.

`record` and `run` import nothing from `train`: loading and running a checkpoint needs no training code.
"""

from .checker import is_correct, parse_caption, parse_question
from .data import SceneSplit, build_trl_rows, scene_turns, split_scenes, write_llava_dataset
from .record import DEFAULT_CHECKPOINT, TARGET_ANSWER_ACCURACY, TARGET_VALID_QUESTION_SHARE, load_training_record
from .run import DemoReport, format_report, load_demo_model, run_demo
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
from .tiny import tiny_sqllava_config
from .tokenizer import build_scene_tokenizer
from .train import DemoTrainingConfig, train_demo_model

__all__ = [
    "CELLS",
    "COLOURS",
    "DEFAULT_CHECKPOINT",
    "DESCRIBE_QUESTION",
    "SHAPES",
    "SIZES",
    "TARGET_ANSWER_ACCURACY",
    "TARGET_VALID_QUESTION_SHARE",
    "DemoReport",
    "DemoTrainingConfig",
    "Question",
    "QuestionKind",
    "Scene",
    "SceneObject",
    "SceneSplit",
    "answer",
    "build_scene_tokenizer",
    "build_trl_rows",
    "format_report",
    "generate_scene",
    "is_answerable",
    "is_correct",
    "load_demo_model",
    "load_training_record",
    "parse_caption",
    "parse_question",
    "run_demo",
    "sample_question",
    "scene_turns",
    "split_scenes",
    "tiny_sqllava_config",
    "train_demo_model",
    "write_llava_dataset",
]
