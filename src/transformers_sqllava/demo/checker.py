"""Reading free text in the scene language, and judging it against a scene.

The demo marks two things with this module: the model's answers ("is `'two'` right for 'How many circles are
there?' on this scene?") and the questions the model asks itself ("is this a question of the scene language, and
is it answerable for this scene?").

The grammar (case, spacing and the final `?`/`.` are free; "color" is read as "colour"; `REF` is
`[small|large] [colour] circle|square|triangle|object`, plural `...circles|...objects`):

```
Describe the image. | Describe the image in detail. | Can you describe the image in detail? | What is in the image?
How many REFs are there?
Is there a REF?                 (REF names at least one attribute)
What colour is the REF?         (REF without a colour)
What shape is the REF?          (REF without a shape)
What size is the REF?           (REF without a size)
Where is the REF?
```

Example:

```python
>>> big_red = SceneObject(cell="top left", shape="circle", colour="red", size="large")
>>> small_blue = SceneObject(cell="centre", shape="circle", colour="blue", size="small")
>>> scene = Scene(objects=(big_red, small_blue))
>>> question = parse_question("what COLOR is the large circle")
>>> is_answerable(question, scene), answer(question, scene)
(True, 'Red.')
>>> is_answerable(parse_question("What colour is the circle?"), scene)  # two circles: ambiguous
False
>>> is_correct(question, "red", scene), is_correct(question, "Blue.", scene)
(True, False)

```
"""

from __future__ import annotations

import re

from .scenes import (
    CELLS,
    COLOURS,
    NUMBER_WORDS,
    SHAPES,
    SIZES,
    Question,
    QuestionKind,
    Scene,
    SceneObject,
    answer,
    is_answerable,
)


def _alternatives(words) -> str:
    # Longest first, so "top left" is tried before "top".
    return "|".join(sorted((re.escape(word) for word in words), key=len, reverse=True))


_SIZE = _alternatives(SIZES)
_COLOUR = _alternatives(COLOURS)
_NOUN = _alternatives((*SHAPES, "object"))
_REF = rf"(?:(?P<size>{_SIZE}) )?(?:(?P<colour>{_COLOUR}) )?(?P<noun>{_NOUN})"
_REF_PLURAL = rf"(?:(?P<size>{_SIZE}) )?(?:(?P<colour>{_COLOUR}) )?(?P<noun>{_NOUN})s"

_QUESTION_TEMPLATES: list[tuple[QuestionKind, re.Pattern]] = [
    (QuestionKind.DESCRIBE, re.compile(r"(?:can you )?describe the image(?: in detail)?|what is in the image")),
    (QuestionKind.COUNT, re.compile(rf"how many {_REF_PLURAL} are there")),
    (QuestionKind.EXISTS, re.compile(rf"is there an? {_REF}")),
    (QuestionKind.COLOUR, re.compile(rf"what colour is the {_REF}")),
    (QuestionKind.SHAPE, re.compile(rf"what shape is the {_REF}")),
    (QuestionKind.SIZE, re.compile(rf"what size is the {_REF}")),
    (QuestionKind.WHERE, re.compile(rf"where is the {_REF}")),
]


def _normalise(text: str) -> str:
    """Lower case, single spaces, American spellings made British, no final punctuation."""
    text = " ".join(text.lower().split())
    text = re.sub(r"\bcolor\b", "colour", text)
    text = re.sub(r"\bcenter\b", "centre", text)
    return re.sub(r"\s*[?.!]+$", "", text).strip()


def parse_question(text: str) -> Question | None:
    """Read a question of the scene language, or return `None` if the text is not one.

    Only the exact templates of the module docstring are accepted, with case, spacing, "color" and the final
    punctuation normalised. Grammatical but meaningless forms are rejected too: "What colour is the red circle?"
    (names what it asks), "Is there an object?" (names nothing).
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_question takes a string, got {type(text).__name__}.")
    normalised = _normalise(text)
    for kind, template in _QUESTION_TEMPLATES:
        match = template.fullmatch(normalised)
        if match is None:
            continue
        slots = match.groupdict()
        noun = slots.get("noun")
        try:
            return Question(
                kind,
                colour=slots.get("colour"),
                shape=None if noun in (None, "object") else noun,
                size=slots.get("size"),
            )
        except ValueError:
            return None
    return None


# --- Captions -------------------------------------------------------------------------------------------------------

_CAPTION = re.compile(rf"there (?:is|are) (?P<count>{_alternatives(NUMBER_WORDS)}|\d) objects?: (?P<items>.+)")
_CAPTION_ITEM = re.compile(
    rf"an? (?P<size>{_SIZE}) (?P<colour>{_COLOUR}) (?P<shape>{_alternatives(SHAPES)}) "
    rf"(?:at|on|in) the (?P<cell>{_alternatives(CELLS)})"
)


def parse_caption(text: str) -> tuple[SceneObject, ...] | None:
    """Read a caption like [`Scene.caption`]'s back into objects (in reading order), or `None` if it is not one.

    The object list may come in any order; the stated count must equal the number of objects listed, and no two
    objects may share a cell.
    """
    match = _CAPTION.fullmatch(_normalise(text))
    if match is None:
        return None
    items = re.split(r", | and ", match["items"])
    objects = []
    for item in items:
        item_match = _CAPTION_ITEM.fullmatch(item)
        if item_match is None:
            return None
        objects.append(SceneObject(**item_match.groupdict()))
    count = match["count"]
    if (int(count) if count.isdigit() else NUMBER_WORDS.index(count)) != len(objects):
        return None
    if len({obj.cell for obj in objects}) != len(objects):
        return None
    return tuple(sorted(objects, key=lambda obj: CELLS.index(obj.cell)))


# --- Judging answers ------------------------------------------------------------------------------------------------


def _answer_words(text: str) -> str:
    """An answer reduced to its content words: "A red one."-style articles and all punctuation dropped."""
    words = re.sub(r"[^\w\s]", " ", _normalise(text)).split()
    while words and words[0] in ("a", "an", "the", "at", "on", "in"):
        words = words[1:]
    return " ".join(words)


def is_correct(question: Question | str, answer_text: str, scene: Scene) -> bool:
    """Whether `answer_text` is the right answer to `question` for `scene`.

    The comparison ignores case, punctuation and a leading article or preposition ("Red." = "red" = "the red";
    "Top left." = "at the top left"); numbers may be words or digits ("Two." = "2"; "Zero." = "0" = "none").
    A description is right when it lists exactly the scene's objects, in any order (see [`parse_caption`]).

    Args:
        question (`Question` or `str`): the question, parsed or as text.
        answer_text (`str`): the answer to judge.
        scene (`Scene`): the scene the question is about.

    Raises `ValueError` if the question is not in the scene language or not answerable for the scene: then no answer
    is right, and the caller should report the question itself as invalid ([`parse_question`], [`is_answerable`]).
    """
    if isinstance(question, str):
        parsed = parse_question(question)
        if parsed is None:
            raise ValueError(
                f"{question!r} is not a question of the scene language: check it with parse_question first."
            )
        question = parsed
    if not is_answerable(question, scene):
        raise ValueError(f"{question.text!r} has no answer for this scene: check it with is_answerable first.")
    if question.kind is QuestionKind.DESCRIBE:
        return parse_caption(answer_text) == scene.objects
    given = _answer_words(answer_text)
    expected = _answer_words(answer(question, scene))
    if question.kind is QuestionKind.COUNT:
        count = NUMBER_WORDS.index(expected)
        accepted = {expected, str(count)} | ({"none", "no"} if count == 0 else set())
        return given in accepted
    return given == expected


__all__ = ["answer", "is_answerable", "is_correct", "parse_caption", "parse_question"]
