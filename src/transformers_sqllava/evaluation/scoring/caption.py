# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image captioning (COCO Karpathy test, Flickr30k, NoCaps, Conceptual Captions), as SQ-LLaVA's
`sqllava/eval/eval_image_caption.py`.

The original cleans every caption with `pre_caption` (lower-case; `.!"()*#:;~` become spaces; runs of spaces
collapse; truncated to `max_words` words: 20 for predictions, 50 for references), tokenises all of them with the
Stanford PTB tokenizer (`-preserveLines -lowerCase`, punctuation tokens dropped) and scores them with `aac-metrics`'
ports of the COCO caption metrics. Here the same cleaning and tokenisation feed `pycocoevalcap`'s BLEU, ROUGE-L and
CIDEr-D, which compute the same numbers (`aac-metrics`' BLEU and CIDEr-D are ports of them: BLEU with the "closest"
reference length, CIDEr-D with sigma 6, clipping, and the factor 10), and METEOR 1.5 and SPICE 1.0, Java programs, run
with the original's arguments.

Java: the PTB tokenizer, METEOR and SPICE need `java` on PATH. Without it BLEU, ROUGE-L and CIDEr-D are still computed,
after [`python_ptb_tokenize`] (the PTB rules that matter once `pre_caption` has run, checked against the Java
tokenizer in the tests), and METEOR and SPICE are reported absent (`None`, with the reason in `absent`), never 0.
SPICE also needs Stanford CoreNLP 3.6.0, which `pycocoevalcap` downloads on first use; offline, it is absent unless
`stanford-corenlp-3.6.0.jar` and `stanford-corenlp-3.6.0-models.jar` are already in `pycocoevalcap/spice/lib/`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

from ._files import PathLike, read_json, read_jsonl


METRICS = ("BLEU", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
PTB_PUNCTUATION = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
}
_REMOVED_BY_PRE_CAPTION = re.compile(r"([.!\"()*#:;~])")
_SPACE_RUN = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 50) -> str:
    """
    SQ-LLaVA's caption cleaning: lower-case, `.!"()*#:;~` to spaces, runs of two or more spaces to one, at most
    `max_words` words.

    ```python
    >>> pre_caption("A man (smiling) rides a horse!")
    'a man smiling rides a horse'
    ```
    """
    caption = _REMOVED_BY_PRE_CAPTION.sub(" ", caption.lower())
    caption = _SPACE_RUN.sub(" ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


# --------------------------------------------------------------------------------------------------- tokenisation
def _pycocoevalcap_dir() -> Path:
    try:
        import pycocoevalcap
    except ImportError:
        raise ImportError(
            "Caption scoring needs pycocoevalcap: `pip install 'transformers-sqllava[eval]'` or `pip install "
            "pycocoevalcap`."
        ) from None
    return Path(list(pycocoevalcap.__path__)[0])


def java_ptb_tokenize(sentences: list[str], java: str) -> list[str]:
    """Tokenise with Stanford's PTB tokenizer (the jar `pycocoevalcap` ships), one line per sentence, as the COCO
    caption tools do: lower-cased, punctuation tokens dropped, tokens joined by spaces."""
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sentences.txt"
        path.write_text("\n".join(sentence.replace("\n", " ") for sentence in sentences), encoding="utf-8")
        command = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
        completed = subprocess.run(command + [str(path)], capture_output=True, check=True)
    lines = completed.stdout.decode("utf-8").split("\n")
    # Trailing empty sentences may leave no line: they tokenise to nothing.
    lines = (lines + [""] * len(sentences))[: len(sentences)]
    return [
        " ".join(token for token in line.rstrip().split(" ") if token and token not in PTB_PUNCTUATION)
        for line in lines
    ]


_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ", "{": " -lcb- ", "}": " -rcb- "}
_BRACKET_TOKENS = {token.strip() for token in _BRACKETS.values()}
_ALWAYS_SPLIT = re.compile(r"(--|\.\.\.|[?!;\"%$&]|,(?!\d)|(?<!\d),)")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def python_ptb_tokenize(sentences: list[str]) -> list[str]:
    r"""
    The Stanford PTB tokenizer's rules that matter for captions already through [`pre_caption`], in Python, for
    machines without Java: lower-case; brackets to `-lsb-` and the like (lower-cased, so kept, as with the Java
    tokenizer's `-lowerCase`); `?`, `!`, `;`, `"`, `%`, `$`, `&`, `--`, `...` and commas outside numbers split off;
    quotes and hyphens split from the ends of words; clitics split (`don't` -> `do n't`, `dog's` -> `dog 's`); then
    the PTB punctuation tokens dropped, as the COCO tools do. Hyphens and slashes inside words stay.
    """
    output = []
    for sentence in sentences:
        text = sentence.lower()
        for bracket, token in _BRACKETS.items():
            text = text.replace(bracket, token)
        tokens = []
        for word in _ALWAYS_SPLIT.sub(r" \1 ", text).split():
            leading, trailing = [], []
            while len(word) > 1 and word[0] in "'`":
                leading.append(word[0])
                word = word[1:]
            while len(word) > 1 and word[-1] in "'`-" and word not in _BRACKET_TOKENS:
                trailing.insert(0, word[-1])
                word = word[:-1]
            match = _CLITIC.match(word)
            tokens += leading + ([match.group(1), match.group(2)] if match else [word]) + trailing
        output.append(" ".join(token for token in tokens if token not in PTB_PUNCTUATION))
    return output


# -------------------------------------------------------------------------------------------------- Java metrics
def _meteor(candidates: list[str], references: list[list[str]], java: str) -> float:
    """METEOR 1.5's corpus score, run as the COCO tools and `aac-metrics` run it."""
    jar = _pycocoevalcap_dir() / "meteor" / "meteor-1.5.jar"
    command = [
        java,
        "-Duser.country=US",
        "-Duser.language=en",
        "-jar",
        "-Xmx2G",
        str(jar),
        "-",
        "-",
        "-stdio",
        "-l",
        "en",
        "-norm",
    ]
    process = subprocess.Popen(
        command, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        statistics = []
        for candidate, refs in zip(candidates, references):
            candidate = candidate.replace("|||", "").replace("  ", " ")
            process.stdin.write((" ||| ".join(["SCORE", " ||| ".join(refs), candidate]) + "\n").encode())
            process.stdin.flush()
            statistics.append(process.stdout.readline().decode().strip())
        process.stdin.write(("EVAL ||| " + " ||| ".join(statistics) + "\n").encode())
        process.stdin.flush()
        for _ in candidates:  # the per-caption scores
            process.stdout.readline()
        return float(process.stdout.readline().strip())
    finally:
        process.stdin.close()
        process.kill()
        process.wait()


def _spice_jars() -> tuple[Path, list[Path]]:
    spice_dir = _pycocoevalcap_dir() / "spice"
    return spice_dir / "spice-1.0.jar", [
        spice_dir / "lib" / name for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
    ]


def _spice(candidates: list[str], references: list[list[str]], java: str) -> float:
    """SPICE 1.0's mean F-score ("All") over the captions."""
    jar, _ = _spice_jars()
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "input.json", Path(folder) / "output.json"
        rows = [{"image_id": index, "test": c, "refs": r} for index, (c, r) in enumerate(zip(candidates, references))]
        source.write_text(json.dumps(rows), encoding="utf-8")
        command = [java, "-jar", "-Xmx8G", str(jar), str(source), "-out", str(target), "-subset", "-silent"]
        subprocess.run(command, cwd=jar.parent, check=True, capture_output=True)
        results = json.loads(target.read_text(encoding="utf-8"))
    scores = [float(item["scores"]["All"]["f"]) for item in results]
    return sum(scores) / len(scores)


# ------------------------------------------------------------------------------------------------------- loading
def caption_references(answers: list[dict], annotation: PathLike | None, qa: PathLike | None) -> list[list[str]]:
    r"""
    Each answer's reference captions, found as the original finds them:

    - `annotation` naming `captions_val2014.json` (COCO format): the captions of the answer's `image_id`
      (`question_id` when the answer has none);
    - another `annotation` (a JSON list such as BLIP's `coco_karpathy_test.json` or `flickr30k_test.json`): the
      `caption` (a string or a list) of the entry at the answer's *position*, so answers must be in the annotation's
      order;
    - `qa` (JSON Lines, Conceptual Captions): the `label` of the entry whose position is the answer's `question_id`.
    """
    if annotation is None and qa is None:
        raise ValueError("Captioning needs --annotation or --QA for the reference captions.")
    references: list[list] = [[] for _ in answers]
    if annotation is not None:
        data = read_json(annotation, "caption annotation file")
        if "captions_val2014.json" in str(annotation):
            by_image = defaultdict(list)
            for record in data["annotations"]:
                by_image[int(record["image_id"])].append(record["caption"])
            for i, answer in enumerate(answers):
                references[i] = by_image[int(answer.get("image_id", answer["question_id"]))]
        else:
            if len(data) < len(answers):
                raise ValueError(
                    f"{annotation} has {len(data)} entries for {len(answers)} answers (matched by position)."
                )
            references = [[data[i]["caption"]] for i in range(len(answers))]
    if qa is not None:
        rows = read_jsonl(qa, "caption QA file")[0]
        references = [[rows[int(answer["question_id"])]["label"]] for answer in answers]
    flattened = []
    for captions in references:
        cleaned = []
        for caption in captions:
            for text in caption if isinstance(caption, list) else [caption]:
                cleaned.append(pre_caption(text))
        if not cleaned:
            raise ValueError("An answer has no reference caption; check that the annotation file matches the answers.")
        flattened.append(cleaned)
    return flattened


def score_caption(
    answers_file: PathLike,
    annotation: PathLike | None = None,
    qa: PathLike | None = None,
    max_words: int = 20,
    model_name: str = "",
    dataset: str = "",
    metrics: tuple[str, ...] | list[str] | None = None,
) -> dict:
    r"""
    Caption metrics, as `python sqllava/eval/eval_image_caption.py --answers-file --annotation | --QA --max_words
    --model_name --dataset`.

    Args:
        answers_file (`str` or `os.PathLike`): The model's captions (`model_cap.py`'s JSON Lines, `text` each).
        annotation (`str` or `os.PathLike`, *optional*), qa (`str` or `os.PathLike`, *optional*): The references,
            see [`caption_references`].
        max_words (`int`, *optional*, defaults to 20): Predictions are truncated to this many words (references to 50).
        model_name, dataset (`str`, *optional*): Labels, copied to the output (the original names its score file
            `./evaluation/<model_name>_<dataset>.json` with them).
        metrics (`list[str]`, *optional*): A subset of `("BLEU", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")`; all by
            default.

    Returns:
        `dict`: `BLEU-1` ... `BLEU-4`, `METEOR`, `ROUGE-L`, `CIDEr-D`, `SPICE` (fractions; CIDEr-D on its 0-10 scale),
        `score` (= `CIDEr-D`), `tokenizer`, `absent` (metric -> why it is `None`), and `original_output`: the dict the
        original prints (`{"BLUE": BLEU-4, "METEOR", "Cider", "SPICE"}`).
    """
    metrics = tuple(metrics or METRICS)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"Unknown caption metric(s) {unknown}: choose from {METRICS}.")
    _pycocoevalcap_dir()  # without pycocoevalcap, fail now with the install command

    answers = read_jsonl(answers_file, "captions file")[0]
    references = caption_references(answers, annotation, qa)
    predictions = [pre_caption(answer["text"], max_words=max_words) for answer in answers]

    java = shutil.which("java")
    flat_references = [caption for captions in references for caption in captions]
    if java:
        tokenize, tokenizer = (lambda texts: java_ptb_tokenize(texts, java)), "Stanford PTB (Java)"
    else:
        tokenize, tokenizer = python_ptb_tokenize, "Python PTB rules (java not found on PATH)"
    predictions = tokenize(predictions)
    tokenized_flat = tokenize(flat_references)
    tokenized_references, position = [], 0
    for captions in references:
        tokenized_references.append(tokenized_flat[position : position + len(captions)])
        position += len(captions)

    scores: dict = {
        name: None for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
    }
    absent: dict = {}
    gts = {index: refs for index, refs in enumerate(tokenized_references)}
    res = {index: [prediction] for index, prediction in enumerate(predictions)}
    if "BLEU" in metrics:
        from pycocoevalcap.bleu.bleu_scorer import BleuScorer

        scorer = BleuScorer(n=4)
        for index in gts:
            scorer += (res[index][0], gts[index])
        bleu, _ = scorer.compute_score(option="closest", verbose=0)
        scores.update({f"BLEU-{n + 1}": float(value) for n, value in enumerate(bleu)})
    if "ROUGE-L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr-D" in metrics:
        from pycocoevalcap.cider.cider import Cider

        scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    for name, runner in (("METEOR", _meteor), ("SPICE", _spice)):
        if name not in metrics:
            absent[name] = "not requested"
        elif not java:
            absent[name] = f"{name} is a Java program and java is not on PATH: install a JRE to compute it."
        elif name == "SPICE" and not all(path.is_file() for path in _spice_jars()[1]):
            absent[name] = (
                "SPICE needs Stanford CoreNLP 3.6.0 (stanford-corenlp-3.6.0.jar and -models.jar in "
                f"{_spice_jars()[0].parent / 'lib'}), which pycocoevalcap downloads on first use; not found."
            )
        else:
            scores[name] = runner(predictions, tokenized_references, java)
    absent.update({name: "not requested" for name in ("BLEU", "ROUGE-L", "CIDEr-D") if name not in metrics})
    return {
        "benchmark": "caption",
        "score": scores["CIDEr-D"],
        **scores,
        "absent": absent,
        "tokenizer": tokenizer,
        "num_captions": len(predictions),
        "model_name": model_name,
        "dataset": dataset,
        "original_output": {
            "BLUE": scores["BLEU-4"],
            "METEOR": scores["METEOR"],
            "Cider": scores["CIDEr-D"],
            "SPICE": scores["SPICE"],
        },
    }
