"""The scene world of the offline demo: small images of coloured shapes, and what is true about them.

A [`Scene`] holds 1 to 4 objects (a shape, a colour and a size each) placed in distinct cells of a 3x3 grid, so that
"where is the ..." has a crisp answer and objects never overlap. It renders itself with plain PIL drawing, writes its
caption, and samples question/answer conversations in a small fixed language. The language itself is the
[`Question`] dataclass: its canonical English text (`Question.text`), and its meaning on a scene ([`is_answerable`],
[`answer`]). Reading free text back into a `Question` and judging answers is `checker.py`'s job.

Everything is deterministic from a seed: `generate_scene(seed)` draws from `random.Random(seed)` only.

Example:

```python
>>> scene = generate_scene(3)
>>> scene.caption()
'There are two objects: a small purple triangle at the top right and a large purple square at the bottom right.'
>>> scene.conversations(random.Random(0), num_turns=2)
[('How many squares are there?', 'One.'), ('Where is the large object?', 'Bottom right.')]

```
"""

from __future__ import annotations

import enum
import functools
import itertools
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw


# --- The vocabulary -------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
# Far apart in RGB, and none close to the white background, so that a tiny vision tower (and a test reading the
# pixel at an object's centre) can tell them apart without ambiguity.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
    "purple": (150, 50, 190),
}
# Half-extent of a shape, as a fraction of a grid cell's side. Both stay below 0.5 with a margin, so a shape never
# leaves its cell: objects in different cells cannot overlap or touch.
SIZES: dict[str, float] = {"small": 0.24, "large": 0.42}

GRID_SIDE = 3
# Cells in reading order; the index of a name is row * 3 + column. These are also the canonical answers to "where".
CELLS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
# How a caption places an object in each cell ("a red circle at the top left", "... on the left", "... in the centre").
CELL_PHRASES = {
    cell: ("in the" if cell == "centre" else "on the" if cell in ("left", "right") else "at the") + " " + cell
    for cell in CELLS
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

DEFAULT_IMAGE_SIZE = 64
# Below this a small shape is a handful of pixels and triangles stop looking like triangles.
MIN_IMAGE_SIZE = 48
BACKGROUND = (255, 255, 255)

DESCRIBE_QUESTION = "Describe the image."


# --- Scenes ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene.

    Args:
        cell (`str`): where it is, one of [`CELLS`] ("top left", ..., "bottom right").
        shape (`str`): one of [`SHAPES`].
        colour (`str`): one of [`COLOURS`].
        size (`str`): `"small"` or `"large"`.
    """

    cell: str
    shape: str
    colour: str
    size: str

    def __post_init__(self):
        for slot, value, allowed in (
            ("cell", self.cell, CELLS),
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, tuple(COLOURS)),
            ("size", self.size, tuple(SIZES)),
        ):
            if value not in allowed:
                raise ValueError(f"Unknown {slot} {value!r} for a scene object: use one of {list(allowed)}.")

    @property
    def description(self) -> str:
        """The noun phrase a caption uses: `"a large red circle at the top left"`."""
        return f"a {self.size} {self.colour} {self.shape} {CELL_PHRASES[self.cell]}"

    def centre(self, image_size: int) -> tuple[float, float]:
        """The (x, y) pixel centre of this object's cell in an `image_size` image."""
        row, column = divmod(CELLS.index(self.cell), GRID_SIDE)
        cell_side = image_size / GRID_SIDE
        return (column + 0.5) * cell_side, (row + 0.5) * cell_side

    def matches(self, colour: str | None = None, shape: str | None = None, size: str | None = None) -> bool:
        """Whether the object fits a description in which `None` means "any"."""
        return (
            (colour is None or colour == self.colour)
            and (shape is None or shape == self.shape)
            and (size is None or size == self.size)
        )


@dataclass(frozen=True)
class Scene:
    """A small image of 1 to 9 (generated: 1 to 4) non-overlapping coloured shapes on a 3x3 grid.

    Scenes compare and hash by content (objects and image size), not by the seed that made them, so a held-out set can
    be checked for scenes that also occur in training.

    Args:
        objects (`Sequence[SceneObject]`): the objects, in distinct cells. Stored sorted in reading order.
        image_size (`int`, *optional*, defaults to 64): side of the rendered square image, in pixels (at least 48).
        seed (`int`, *optional*): the seed [`generate_scene`] used, for the record; not part of equality.
    """

    objects: tuple[SceneObject, ...]
    image_size: int = DEFAULT_IMAGE_SIZE
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self):
        objects = tuple(sorted(self.objects, key=lambda obj: CELLS.index(obj.cell)))  # reading order
        if not 1 <= len(objects) <= len(CELLS):
            raise ValueError(f"A scene holds 1 to {len(CELLS)} objects, got {len(objects)}.")
        cells = [obj.cell for obj in objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"Two objects share a cell in {cells}: give each object its own cell so none overlap.")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size={self.image_size} is too small to draw shapes: use at least {MIN_IMAGE_SIZE}."
            )
        object.__setattr__(self, "objects", objects)

    def find(self, colour: str | None = None, shape: str | None = None, size: str | None = None) -> list[SceneObject]:
        """The objects that fit a description (`None` means "any")."""
        return [obj for obj in self.objects if obj.matches(colour=colour, shape=shape, size=size)]

    def render(self, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
        """Draw the scene: an RGB image of side `image_size`, not anti-aliased (object pixels are exactly colour)."""
        image = Image.new("RGB", (self.image_size, self.image_size), background)
        draw = ImageDraw.Draw(image)
        cell_side = self.image_size / GRID_SIDE
        for obj in self.objects:
            x, y = obj.centre(self.image_size)
            radius = SIZES[obj.size] * cell_side
            fill = COLOURS[obj.colour]
            if obj.shape == "circle":
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
            elif obj.shape == "square":
                # Same area as the circle of that size, so size is judged by extent, not by shape.
                half_side = radius * 0.886
                draw.rectangle([x - half_side, y - half_side, x + half_side, y + half_side], fill=fill)
            else:  # triangle, apex up; the cell centre lies well inside it
                corners = [(x, y - radius), (x + radius, y + 0.8 * radius), (x - radius, y + 0.8 * radius)]
                draw.polygon(corners, fill=fill)
        return image

    def caption(self) -> str:
        """One sentence naming every object with its size, colour, shape and place, in reading order.

        `"There are two objects: a small red circle at the top left and a large blue square in the centre."`
        """
        count = len(self.objects)
        phrases = [obj.description for obj in self.objects]
        listed = phrases[0] if count == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        if count == 1:
            return f"There is one object: {listed}."
        return f"There are {NUMBER_WORDS[count]} objects: {listed}."

    def conversations(
        self, rng: random.Random, num_turns: int, start_with_description: bool = False
    ) -> list[tuple[str, str]]:
        """Sample a conversation about the scene: `num_turns` distinct (question, canonical answer) pairs.

        Every question is in the scene language and answerable for this scene; "is there a ...?" questions are "Yes."
        and "No." with equal probability. "Describe the image." is asked only as the first turn, when
        `start_with_description` is set.

        Args:
            rng (`random.Random`): the source of randomness (the scene itself is fixed).
            num_turns (`int`): number of question/answer pairs, at least 1.
            start_with_description (`bool`, *optional*, defaults to `False`): make the first turn
                `("Describe the image.", caption)`.
        """
        if num_turns < 1:
            raise ValueError(f"num_turns must be at least 1, got {num_turns}.")
        turns: list[tuple[str, str]] = []
        if start_with_description:
            turns.append((DESCRIBE_QUESTION, self.caption()))
        asked = {question for question, _ in turns}
        while len(turns) < num_turns:
            question = sample_question(rng, self, exclude=asked)
            asked.add(question.text)
            turns.append((question.text, answer(question, self)))
        return turns


def generate_scene(
    seed: int, image_size: int = DEFAULT_IMAGE_SIZE, num_objects: tuple[int, int] = (1, 4)
) -> Scene:
    """Draw a scene from `random.Random(seed)`: a uniform object count, distinct cells, independent uniform attributes.

    Args:
        seed (`int`): the seed; the same seed always gives the same scene.
        image_size (`int`, *optional*, defaults to 64): side of the rendered image (the demo uses 64 to 96).
        num_objects (`tuple[int, int]`, *optional*, defaults to `(1, 4)`): inclusive range of the object count.
    """
    low, high = num_objects
    if not 1 <= low <= high <= len(CELLS):
        raise ValueError(
            f"num_objects must be a range (low, high) with 1 <= low <= high <= {len(CELLS)}, got {num_objects}."
        )
    rng = random.Random(seed)
    count = rng.randint(low, high)
    cells = rng.sample(CELLS, count)
    objects = [
        SceneObject(
            cell=cell, shape=rng.choice(SHAPES), colour=rng.choice(tuple(COLOURS)), size=rng.choice(tuple(SIZES))
        )
        for cell in cells
    ]
    return Scene(objects=tuple(objects), image_size=image_size, seed=seed)


# --- The question language ------------------------------------------------------------------------------------------


class QuestionKind(str, enum.Enum):
    """What a question asks. The kinds and their templates (`REF` = `[size] [colour] shape|object`):

    - `DESCRIBE`: "Describe the image."
    - `COUNT`: "How many REFs are there?" ("How many objects are there?", "How many red circles are there?")
    - `EXISTS`: "Is there a REF?" (REF names at least one attribute)
    - `COLOUR`: "What colour is the REF?" (REF without a colour)
    - `SHAPE`: "What shape is the REF?" (REF without a shape: "the red object")
    - `SIZE`: "What size is the REF?" (REF without a size)
    - `WHERE`: "Where is the REF?"

    The last four ("the REF") are answerable only when exactly one object fits REF.
    """

    DESCRIBE = "describe"
    COUNT = "count"
    EXISTS = "exists"
    COLOUR = "colour"
    SHAPE = "shape"
    SIZE = "size"
    WHERE = "where"

    @property
    def is_definite(self) -> bool:
        """Whether the question refers to *the* object fitting a description (answerable only if it is unique)."""
        return self in (QuestionKind.COLOUR, QuestionKind.SHAPE, QuestionKind.SIZE, QuestionKind.WHERE)


@dataclass(frozen=True)
class Question:
    """A question in the scene language: a kind plus the description (colour, shape, size) of what it refers to.

    Args:
        kind (`QuestionKind`): what is asked.
        colour (`str`, *optional*): a colour the referred objects have, or `None` for any.
        shape (`str`, *optional*): a shape, or `None` ("object").
        size (`str`, *optional*): a size, or `None` for any.

    Example: `Question(QuestionKind.COLOUR, shape="circle").text == "What colour is the circle?"`.
    """

    kind: QuestionKind
    colour: str | None = None
    shape: str | None = None
    size: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "kind", QuestionKind(self.kind))
        for slot, value, allowed in (
            ("colour", self.colour, tuple(COLOURS)),
            ("shape", self.shape, SHAPES),
            ("size", self.size, tuple(SIZES)),
        ):
            if value is not None and value not in allowed:
                raise ValueError(f"Unknown {slot} {value!r} in a question: use one of {list(allowed)} or None.")
        slots = {"colour": self.colour, "shape": self.shape, "size": self.size}
        if self.kind is QuestionKind.DESCRIBE and any(slots.values()):
            raise ValueError("A DESCRIBE question takes no colour, shape or size.")
        if self.kind is QuestionKind.EXISTS and not any(slots.values()):
            raise ValueError("An EXISTS question needs a colour, shape or size: 'Is there an object?' says nothing.")
        asked_slot = {QuestionKind.COLOUR: "colour", QuestionKind.SHAPE: "shape", QuestionKind.SIZE: "size"}
        if self.kind in asked_slot and slots[asked_slot[self.kind]] is not None:
            slot = asked_slot[self.kind]
            raise ValueError(f"A {self.kind.name} question cannot name the {slot} it asks about: set {slot}=None.")

    def referent(self, plural: bool = False) -> str:
        """The noun phrase: `"large red circle"`, `"red object"`, `"object"`; plural `"circles"`, `"objects"`."""
        noun = (self.shape or "object") + ("s" if plural else "")
        return " ".join(word for word in (self.size, self.colour, noun) if word)

    @functools.cached_property  # sampling compares many question texts; a frozen dataclass still has a __dict__
    def text(self) -> str:
        """The canonical English question."""
        if self.kind is QuestionKind.DESCRIBE:
            return DESCRIBE_QUESTION
        if self.kind is QuestionKind.COUNT:
            return f"How many {self.referent(plural=True)} are there?"
        if self.kind is QuestionKind.EXISTS:
            return f"Is there a {self.referent()}?"  # every REF with an attribute starts with a consonant
        if self.kind is QuestionKind.WHERE:
            return f"Where is the {self.referent()}?"
        return f"What {self.kind.value} is the {self.referent()}?"


def is_answerable(question: Question, scene: Scene) -> bool:
    """Whether the question has exactly one right answer for the scene.

    Counting, "is there" and describing are always answerable; "the REF" questions need exactly one object fitting REF
    ("What colour is the circle?" with two circles is ambiguous, with none it presupposes something false).
    """
    if not question.kind.is_definite:
        return True
    return len(scene.find(colour=question.colour, shape=question.shape, size=question.size)) == 1


def answer(question: Question, scene: Scene) -> str:
    """The canonical answer: `"Red."`, `"Circle."`, `"Large."`, `"Top left."`, `"Two."`, `"Yes."`, or the caption.

    Raises `ValueError` for a question that is not answerable for the scene (check [`is_answerable`] first).
    """
    if question.kind is QuestionKind.DESCRIBE:
        return scene.caption()
    matches = scene.find(colour=question.colour, shape=question.shape, size=question.size)
    if question.kind is QuestionKind.COUNT:
        word = NUMBER_WORDS[len(matches)]
    elif question.kind is QuestionKind.EXISTS:
        word = "yes" if matches else "no"
    elif len(matches) != 1:
        raise ValueError(
            f"{question.text!r} is not answerable for this scene: {len(matches)} objects fit, it needs exactly one. "
            "Check `is_answerable(question, scene)` first."
        )
    else:
        word = getattr(matches[0], "cell" if question.kind is QuestionKind.WHERE else question.kind.value)
    return word[0].upper() + word[1:] + "."


# --- Sampling questions ---------------------------------------------------------------------------------------------

# Relative frequency of each kind in a generated conversation. Size is the least interesting attribute.
QUESTION_KIND_WEIGHTS = {
    QuestionKind.COLOUR: 2,
    QuestionKind.SHAPE: 2,
    QuestionKind.WHERE: 2,
    QuestionKind.EXISTS: 2,
    QuestionKind.COUNT: 2,
    QuestionKind.SIZE: 1,
}
_SLOTS = ("colour", "shape", "size")


def _shortest_unique_description(
    rng: random.Random, scene: Scene, target: SceneObject, asked: str | None
) -> dict[str, str] | None:
    """The fewest attributes of `target` (never the `asked` one) that single it out in the scene; ties at random.

    Returns `{}` ("the object") in a one-object scene, and `None` when no description is unique (e.g. two red
    circles that differ only in size, when size is the question).
    """
    usable = [slot for slot in _SLOTS if slot != asked]
    for length in range(len(usable) + 1):
        candidates = [
            {slot: getattr(target, slot) for slot in subset}
            for subset in itertools.combinations(usable, length)
            if len(scene.find(**{slot: getattr(target, slot) for slot in subset})) == 1
        ]
        if candidates:
            return rng.choice(candidates)
    return None


# "Is there a [size] COLOUR SHAPE?": the questions EXISTS draws from.
_EXISTS_QUESTIONS = tuple(
    Question(QuestionKind.EXISTS, colour=colour, shape=shape, size=size)
    for colour, shape, size in itertools.product(COLOURS, SHAPES, (None, *SIZES))
)


def sample_question(
    rng: random.Random,
    scene: Scene,
    kinds: Sequence[QuestionKind] | None = None,
    exclude: Collection[str] = (),
) -> Question:
    """Sample one answerable question about the scene (never DESCRIBE; that is `Scene.conversations`' first turn).

    - "the REF" questions pick an object at random and the shortest description that singles it out;
    - EXISTS names a colour and a shape, and sometimes a size; the answer is "Yes." or "No." with probability 1/2
      each (EXISTS is skipped once either side has no question left that is not excluded);
    - COUNT asks about all objects, a shape or a colour (a third each; the answer can be "Zero.").

    Args:
        rng (`random.Random`): the source of randomness.
        scene (`Scene`): the scene asked about.
        kinds (`Sequence[QuestionKind]`, *optional*): restrict to these kinds (default: [`QUESTION_KIND_WEIGHTS`]).
        exclude (`Collection[str]`, *optional*): question texts not to return (those already asked). EXISTS picks
            yes or no first and then a question not yet asked on that side, so excluding repeats keeps the balance.
    """
    kinds = list(kinds or QUESTION_KIND_WEIGHTS)
    if QuestionKind.DESCRIBE in kinds:
        raise ValueError(
            "sample_question does not sample DESCRIBE: use Scene.conversations(start_with_description=True)."
        )
    exists_questions = {True: [], False: []}  # not yet asked, by answer
    num_exists_questions = {True: 0, False: 0}
    num_exists_asked = 0
    descriptions_present = {(obj.colour, obj.shape, size) for obj in scene.objects for size in (None, obj.size)}
    for question in _EXISTS_QUESTIONS:
        present = (question.colour, question.shape, question.size) in descriptions_present
        num_exists_questions[present] += 1
        if question.text in exclude:
            num_exists_asked += 1
        else:
            exists_questions[present].append(question)
    if num_exists_asked >= min(num_exists_questions.values()):
        # Ask at most as many EXISTS questions as the scene has "yes" ones (2 for one object). Stopping when the "yes"
        # questions run out would instead depend on the answers drawn so far and skew the balance towards "No.".
        kinds = [kind for kind in kinds if kind is not QuestionKind.EXISTS]
    weights = [QUESTION_KIND_WEIGHTS.get(kind, 1) for kind in kinds]
    for _ in range(100 if kinds else 0):
        kind = rng.choices(kinds, weights=weights)[0]
        if kind is QuestionKind.EXISTS:
            return rng.choice(exists_questions[rng.random() < 0.5])
        if kind is QuestionKind.COUNT:
            about = rng.choice(("all", "shape", "colour"))
            # Half the time an attribute some object has, so that "Zero." does not dominate the colour counts.
            example = rng.choice(scene.objects) if rng.random() < 0.5 else None
            if about == "shape":
                question = Question(kind, shape=example.shape if example else rng.choice(SHAPES))
            elif about == "colour":
                question = Question(kind, colour=example.colour if example else rng.choice(tuple(COLOURS)))
            else:
                question = Question(kind)
        else:
            target = rng.choice(scene.objects)
            asked = None if kind is QuestionKind.WHERE else kind.value
            description = _shortest_unique_description(rng, scene, target, asked)
            if description is None:
                continue
            question = Question(kind, **description)
        if question.text not in exclude:
            return question
    # Rejection sampling can miss the last few new questions of a scene with few answerable ones (two identical
    # objects make every "the REF" question ambiguous): pick among all of them instead.
    remaining = [question for question in _sampleable_questions(scene, kinds) if question.text not in exclude]
    if remaining:
        return rng.choice(remaining)
    raise ValueError(
        f"No new question of kinds {[kind.name for kind in kinds]} is left for {scene}: {len(exclude)} are excluded. "
        "Ask for fewer turns or allow more kinds."
    )


def _sampleable_questions(scene: Scene, kinds: Sequence[QuestionKind]) -> list[Question]:
    """Every non-EXISTS question `sample_question` can produce for the scene (in a fixed order)."""
    questions = []
    if QuestionKind.COUNT in kinds:
        questions.append(Question(QuestionKind.COUNT))
        questions += [Question(QuestionKind.COUNT, shape=shape) for shape in SHAPES]
        questions += [Question(QuestionKind.COUNT, colour=colour) for colour in COLOURS]
    for kind in kinds:
        if not kind.is_definite:
            continue
        asked = None if kind is QuestionKind.WHERE else kind.value
        usable = [slot for slot in _SLOTS if slot != asked]
        for target in scene.objects:
            for length in range(len(usable) + 1):
                unique = [
                    Question(kind, **{slot: getattr(target, slot) for slot in subset})
                    for subset in itertools.combinations(usable, length)
                    if len(scene.find(**{slot: getattr(target, slot) for slot in subset})) == 1
                ]
                if unique:  # only the shortest descriptions, as in sampling
                    questions += unique
                    break
    return questions
