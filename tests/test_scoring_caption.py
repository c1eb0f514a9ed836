"""Captioning against SQ-LLaVA's eval_image_caption.py (aac-metrics' BLEU-4, METEOR, CIDEr-D after `pre_caption` and
the PTB tokenizer). Run on tests/fixtures/scoring/caption/ (checked there, with the aac-metrics jars taken from
pycocoevalcap and SPICE left out), it prints:

- `--annotation coco_karpathy_test.json` and `--annotation captions_val2014.json`:
  `{'BLUE': 0.2837251589262938, 'METEOR': 0.2926126749143098, 'Cider': 1.0696478217219463}`;
- `--QA conceptual_question.jsonl`: `{'BLUE': 5.653934256546871e-09, 'METEOR': 0.32083429217797743,
  'Cider': 1.7966414629471785}`.

METEOR needs Java and loads a paraphrase table for about 13 s; its check runs wherever Java is installed.
"""

import shutil
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring import caption
from transformers_sqllava.evaluation.scoring.caption import pre_caption, python_ptb_tokenize, score_caption


pytest.importorskip("pycocoevalcap")
CAPTION = Path(__file__).parent / "fixtures" / "scoring" / "caption"
FAST = ("BLEU", "ROUGE-L", "CIDEr-D")
HAS_JAVA = shutil.which("java") is not None
KARPATHY_BLEU_4, KARPATHY_CIDER = 0.2837251589262938, 1.0696478217219463


def test_pre_caption():
    assert pre_caption("A man (smiling) rides a horse!") == "a man smiling rides a horse"
    assert pre_caption("one two three", max_words=2) == "one two"
    assert pre_caption("  Hi;;   there.  ") == "hi there"
    assert pre_caption("") == ""


@pytest.mark.skipif(not HAS_JAVA, reason="the Stanford PTB tokenizer is a Java program")
@pytest.mark.parametrize("annotation", ["coco_karpathy_test.json", "captions_val2014.json"])
def test_equals_eval_image_caption(annotation):
    answers = "answers.jsonl" if annotation.startswith("coco_karpathy") else "answers_coco.jsonl"
    result = score_caption(CAPTION / answers, annotation=CAPTION / annotation, metrics=FAST)
    assert result["original_output"]["BLUE"] == pytest.approx(KARPATHY_BLEU_4, rel=1e-12)
    assert result["CIDEr-D"] == pytest.approx(KARPATHY_CIDER, rel=1e-12) and result["score"] == result["CIDEr-D"]
    assert result["BLEU-1"] > result["BLEU-2"] > result["BLEU-3"] > result["BLEU-4"]
    assert 0 < result["ROUGE-L"] < 1 and result["tokenizer"] == "Stanford PTB (Java)"
    assert result["METEOR"] is None and result["absent"]["METEOR"] == "not requested"


@pytest.mark.skipif(not HAS_JAVA, reason="the Stanford PTB tokenizer is a Java program")
def test_conceptual_captions_qa_file():
    result = score_caption(
        CAPTION / "answers_conceptual.jsonl", qa=CAPTION / "conceptual_question.jsonl", metrics=FAST
    )
    assert result["BLEU-4"] == pytest.approx(5.653934256546871e-09, rel=1e-9)
    assert result["CIDEr-D"] == pytest.approx(1.7966414629471785, rel=1e-12)


def test_without_java_bleu_and_cider_remain_and_java_metrics_are_absent(monkeypatch):
    monkeypatch.setattr(caption.shutil, "which", lambda name: None)
    result = score_caption(CAPTION / "answers.jsonl", annotation=CAPTION / "coco_karpathy_test.json")
    # The Python PTB rules tokenise this fixture as the Java tokenizer does: the same numbers.
    assert result["BLEU-4"] == pytest.approx(KARPATHY_BLEU_4, rel=1e-12)
    assert result["CIDEr-D"] == pytest.approx(KARPATHY_CIDER, rel=1e-12)
    assert result["METEOR"] is None and result["SPICE"] is None
    assert "java is not on PATH" in result["absent"]["METEOR"] and "java is not on PATH" in result["absent"]["SPICE"]
    assert result["tokenizer"].startswith("Python PTB rules")


PTB_CASES = [
    "a man , riding a horse",
    "the dog's bone isn't here ? well-known 3,000 $5 a/b & co 50% off",
    "two dogs' toys and 'quoted words' here",
    "i can't won't don't they're we've you'll he'd i'm",
    "a [red] {blue} <green> man + woman = love @home #tag `tick` a--b -- - ...",
    "a b-",
    "",
    "the boy's wearing headphones and he doesn't look away from the computer monitor",
]


@pytest.mark.skipif(not HAS_JAVA, reason="compares with the Java tokenizer")
def test_python_ptb_rules_match_the_java_tokenizer():
    assert python_ptb_tokenize(PTB_CASES) == caption.java_ptb_tokenize(PTB_CASES, shutil.which("java"))


def test_python_ptb_rules():
    assert python_ptb_tokenize(["The dog's bone isn't here, ok?"]) == ["the dog 's bone is n't here ok"]


@pytest.mark.skipif(not HAS_JAVA, reason="SPICE's absence note names its missing CoreNLP jars")
def test_spice_without_corenlp_is_absent_with_a_note(monkeypatch):
    monkeypatch.setattr(caption, "_spice_jars", lambda: (Path("/nowhere/spice-1.0.jar"), [Path("/nowhere/lib/x.jar")]))
    result = score_caption(
        CAPTION / "answers.jsonl", annotation=CAPTION / "coco_karpathy_test.json", metrics=("CIDEr-D", "SPICE")
    )
    assert result["SPICE"] is None and "Stanford CoreNLP 3.6.0" in result["absent"]["SPICE"]
    assert result["absent"]["BLEU"] == "not requested" and result["BLEU-4"] is None


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR 1.5 is a Java program")  # ~13 s: it loads its paraphrase table
def test_meteor_equals_eval_image_caption():
    result = score_caption(
        CAPTION / "answers.jsonl", annotation=CAPTION / "coco_karpathy_test.json", metrics=("METEOR",)
    )
    assert result["METEOR"] == pytest.approx(0.2926126749143098, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown caption metric"):
        score_caption(CAPTION / "answers.jsonl", annotation=CAPTION / "coco_karpathy_test.json", metrics=("BLEU-9",))
    with pytest.raises(ValueError, match="--annotation or --QA"):
        score_caption(CAPTION / "answers.jsonl")
