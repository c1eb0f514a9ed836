"""A tiny tokenizer for the demo, trained with `tokenizers` on the scene language and the chat template's fixed text.

It is shaped like Vicuna's (Llama-2's legacy) tokenizer, so [`SQLlavaProcessor`] treats it exactly like the real one:

- normaliser `Prepend("▁")` + `Replace(" ", "▁")` (sentencepiece's dummy prefix, applied to each chunk between
  special tokens: the legacy behaviour the reference relies on, docs/original.md#tokenizer and
  docs/original.md#tokenisation-chunk-by-chunk);
- a BPE model with byte fallback: `<unk>`=0, `<s>`=1, `</s>`=2, then the 256 pieces `<0x00>`...`<0xFF>`, then the
  learned pieces; a newline is `<0x0A>`, as in Llama;
- BOS added by a `TemplateProcessing` post-processor; no pre-tokenizer (merges run over the whole chunk).

The learned pieces are whole words: BPE is trained until no pair is left, on the words of every text the processor
will encode (questions, answers, captions, both system prompts, the role markers), so each scene word is one piece
and a question like "What colour is the circle?" is 6 tokens. Training runs in well under a second and is
deterministic, so the demo can rebuild the tokenizer instead of shipping it (it also saves with `save_pretrained`).

`<image>`, `<pad>` and the native vuser marker `[vusr]` are not part of it: the processor adds them, as it does for
Vicuna's tokenizer (then `resize_embeddings_for_processor` sizes the model).

Example:

```python
>>> tokenizer = build_scene_tokenizer()
>>> tokenizer.tokenize("What colour is the circle?")
['▁What', '▁colour', '▁is', '▁the', '▁circle', '?']

```
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..processing_sqllava import NATIVE_VUSER_TOKEN, ORIGINAL_VUSER_MARKER, SYSTEM_PROMPT_V1, SYSTEM_PROMPT_V1_SQ
from .scenes import CELLS, COLOURS, NUMBER_WORDS, SHAPES, SIZES, Question, QuestionKind, generate_scene

# Llama's fixed pieces: ids 0, 1, 2, then the byte pieces 3..258 (`<0x0A>` = 13 for a newline).
SPECIAL_PIECES = ("<unk>", "<s>", "</s>")
BYTE_PIECES = tuple(f"<0x{byte:02X}>" for byte in range(256))
# Text the processor never encodes as text: it splits prompts on these before tokenising each chunk.
_STRUCTURE_TOKENS = ("<s>", "</s>", "<image>", NATIVE_VUSER_TOKEN)
# The demo's corpus draws its conversations from these seeds (any fixed set covering the language would do).
_CORPUS_SEEDS = range(400)


def _enumerate_questions() -> list[str]:
    """Every question of the scene language, in canonical form, plus the other wordings the checker accepts."""
    references = list(itertools.product((None, *SIZES), (None, *COLOURS), (None, *SHAPES)))
    questions = []
    for kind in QuestionKind:
        for size, colour, shape in [(None, None, None)] if kind is QuestionKind.DESCRIBE else references:
            try:
                questions.append(Question(kind, colour=colour, shape=shape, size=size).text)
            except ValueError:  # e.g. "What colour is the red circle?": not in the language
                continue
    # The other descriptions the checker accepts.
    questions += ["Describe the image in detail.", "Can you describe the image in detail?", "What is in the image?"]
    return questions


def _enumerate_answers() -> list[str]:
    words = [*COLOURS, *SHAPES, *SIZES, *CELLS, *NUMBER_WORDS[:5], "yes", "no"]
    return [word[0].upper() + word[1:] + "." for word in words]


def _vicuna_prompt(system: str, turns: list[tuple[str, str]], vuser_marker: str, vuser_turns: set[int]) -> str:
    """A training prompt in the reference's format (docs/original.md#prompt-format-and-the-two-system-prompts): `SYS USER: <image>\\nQ0 ASSISTANT: A0</s>VUSER: Q1</s>`.

    Written out here (not with the processor's chat template) because only the words matter for training pieces.
    """
    text = system + " "
    for index, (question, answer) in enumerate(turns):
        if index in vuser_turns:
            text += f"{vuser_marker}: {question}</s> "
        else:
            text += "USER: " + ("<image>\n" if index == 0 else "") + question + " "
        text += f"ASSISTANT: {answer}</s>"
    return text


def scene_language_corpus() -> list[str]:
    """The texts the tokenizer is trained on, as the processor will see them (whole prompts with structure tokens).

    Both system prompts, both vuser markers (plain `VUSER` of converted checkpoints, `[vusr]` of native models),
    every question of the language with and without the image placeholder before it, every short answer, and
    conversations (with captions) about a fixed set of scenes.
    """
    corpus = [SYSTEM_PROMPT_V1, SYSTEM_PROMPT_V1_SQ]
    questions = _enumerate_questions()
    corpus += [f"USER: <image>\n{question} ASSISTANT:" for question in questions]
    answers = itertools.cycle(_enumerate_answers())
    corpus += [f"{ORIGINAL_VUSER_MARKER}: {question}</s> ASSISTANT: {next(answers)}</s>" for question in questions]
    rng = random.Random(0)
    for seed in _CORPUS_SEEDS:
        scene = generate_scene(seed)
        turns = scene.conversations(rng, rng.randint(2, 5), start_with_description=seed % 2 == 0)
        vuser_turns = {index for index in range(1, len(turns)) if rng.random() < 0.5}
        system = SYSTEM_PROMPT_V1_SQ if seed % 2 else SYSTEM_PROMPT_V1
        marker = NATIVE_VUSER_TOKEN if seed % 4 < 2 else ORIGINAL_VUSER_MARKER
        corpus.append(_vicuna_prompt(system, turns, marker, vuser_turns))
        corpus.append(f"{system} USER: <image>\nDescribe the image. ASSISTANT: {scene.caption()}</s>{marker}:")
    return corpus


def _training_words(texts: Iterable[str]) -> Counter:
    """Split texts into the units BPE may merge within, exactly where the processor's encoding puts boundaries.

    The processor encodes each chunk between structure tokens as `"▁" + chunk.replace(" ", "▁")`. A word starts at
    each `"▁"`; punctuation is a word of its own (so "circle?" is `▁circle` + `?` and no merge ever involves
    punctuation); a newline ends a word and is left out, so it falls back to `<0x0A>` like Llama's. With these
    boundaries no learned merge can join two words, so tokenising a whole chunk equals tokenising word by word.
    """
    structure = re.compile("|".join(re.escape(token) for token in _STRUCTURE_TOKENS))
    words = Counter()
    for text in texts:
        for chunk in structure.split(text):
            if not chunk:
                continue
            normalised = "▁" + chunk.replace(" ", "▁")
            for line in normalised.split("\n"):
                words.update(piece for piece in re.findall(r"▁?[^\W_]+|▁|[^\w▁]|_", line) if piece)
    return words


def build_scene_tokenizer() -> PreTrainedTokenizerFast:
    """Train the demo's tokenizer (deterministic, well under a second); see the module docstring for its layout."""
    words = _training_words(scene_language_corpus())
    # A vocabulary larger than the corpus can fill: training stops when every word is a single piece.
    trainer = trainers.BpeTrainer(vocab_size=100_000, min_frequency=1, show_progress=False, special_tokens=[])
    learner = Tokenizer(models.BPE())
    # Each training item is one word; sorted so the order (and thus tie-breaking) never depends on hashing.
    learner.train_from_iterator(
        (word for word, count in sorted(words.items()) for _ in range(count)), trainer, length=sum(words.values())
    )
    return vicuna_style_tokenizer(learner)


def vicuna_style_tokenizer(trained_bpe: Tokenizer) -> PreTrainedTokenizerFast:
    """Lay a trained BPE model out like Vicuna's (Llama-2's legacy) `tokenizer.json`: `<unk>`=0, `<s>`=1, `</s>`=2,
    the byte pieces, then the learned pieces; `Prepend("▁")` + `Replace(" ", "▁")` normaliser, byte fallback, BOS
    added by the post-processor. Also used by the test suite's small tokenizer."""
    learned = json.loads(trained_bpe.to_str())["model"]
    pieces = [*SPECIAL_PIECES, *BYTE_PIECES]
    pieces += [piece for piece in sorted(learned["vocab"], key=learned["vocab"].get) if piece not in pieces]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in learned["merges"]]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(list(SPECIAL_PIECES))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


__all__ = ["build_scene_tokenizer", "scene_language_corpus", "vicuna_style_tokenizer"]
