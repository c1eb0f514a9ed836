"""The demo's scene world: rendering, the question language and its checker, the datasets, the scene tokenizer."""

import json
import random

import pytest
from PIL import Image

from transformers_sqllava.demo import (
    CELLS,
    COLOURS,
    SHAPES,
    SIZES,
    Question,
    QuestionKind,
    Scene,
    SceneObject,
    answer,
    generate_scene,
    is_answerable,
    is_correct,
    parse_caption,
    parse_question,
)
from transformers_sqllava.demo.data import (
    HELD_OUT_SEED_START,
    build_trl_rows,
    split_scenes,
    to_llava_conversations,
    write_llava_dataset,
)
from transformers_sqllava.demo.scenes import GRID_SIDE, NUMBER_WORDS
from transformers_sqllava.demo.tokenizer import build_scene_tokenizer, scene_language_corpus


def _conversations(num_scenes: int, num_turns: int = 6):
    """(scene, question, answer) over many generated scenes and conversations."""
    for seed in range(num_scenes):
        scene = generate_scene(seed)
        rng = random.Random(seed)
        for question, reply in scene.conversations(rng, num_turns, start_with_description=seed % 3 == 0):
            yield scene, question, reply


def _wrong_answers(question: Question, scene: Scene) -> list[str]:
    """Every other answer of the question's answer domain (for a description: captions of other scenes)."""
    domains = {
        QuestionKind.COLOUR: list(COLOURS),
        QuestionKind.SHAPE: list(SHAPES),
        QuestionKind.SIZE: list(SIZES),
        QuestionKind.WHERE: list(CELLS),
        QuestionKind.COUNT: list(NUMBER_WORDS),
        QuestionKind.EXISTS: ["yes", "no"],
    }
    right = answer(question, scene)
    if question.kind is QuestionKind.DESCRIBE:
        first, *others = scene.objects
        moved = SceneObject(
            cell=next(cell for cell in CELLS if cell not in {obj.cell for obj in scene.objects}),
            shape=first.shape,
            colour=first.colour,
            size=first.size,
        )
        recoloured = SceneObject(
            first.cell, first.shape, next(colour for colour in COLOURS if colour != first.colour), first.size
        )
        return [Scene((moved, *others)).caption(), Scene((recoloured, *others)).caption(), "A red circle."]
    return [value.capitalize() + "." for value in domains[question.kind] if value.capitalize() + "." != right]


# --- Scenes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [64, 96])
def test_rendering_is_deterministic_and_object_centres_have_their_colour(image_size):
    for seed in range(60):
        scene = generate_scene(seed, image_size=image_size)
        image = scene.render()
        assert image.mode == "RGB" and image.size == (image_size, image_size)
        assert image.tobytes() == generate_scene(seed, image_size=image_size).render().tobytes()
        assert 1 <= len(scene.objects) <= 4
        for obj in scene.objects:
            x, y = obj.centre(image_size)
            assert image.getpixel((int(x), int(y))) == COLOURS[obj.colour], (seed, obj)
        assert image.getpixel((0, 0)) == (255, 255, 255)


def test_objects_stay_inside_their_cells_so_they_never_overlap():
    image_size = 64
    cell_side = image_size / GRID_SIDE
    extents = {}
    for cell in CELLS:
        for shape in SHAPES:
            for size in SIZES:
                alone = Scene((SceneObject(cell=cell, shape=shape, colour="blue", size=size),), image_size=image_size)
                mask = Image.frombytes("RGB", (image_size,) * 2, alone.render().tobytes()).convert("L").point(
                    lambda value: 255 if value < 250 else 0
                )
                left, top, right, bottom = mask.getbbox()
                row, column = divmod(CELLS.index(cell), GRID_SIDE)
                # At least one white pixel between an object and its cell's border: neighbours never touch.
                assert column * cell_side + 1 <= left and right <= (column + 1) * cell_side - 1, (cell, shape, size)
                assert row * cell_side + 1 <= top and bottom <= (row + 1) * cell_side - 1, (cell, shape, size)
                extents[shape, size] = right - left
    for shape in SHAPES:
        assert extents[shape, "large"] >= extents[shape, "small"] + 5  # sizes are far apart too


def test_scene_generation_is_deterministic_and_varied():
    assert generate_scene(7) == generate_scene(7)
    rng_a, rng_b = random.Random(1), random.Random(1)
    assert generate_scene(7).conversations(rng_a, 5) == generate_scene(7).conversations(rng_b, 5)
    scenes = [generate_scene(seed) for seed in range(500)]
    assert {len(scene.objects) for scene in scenes} == {1, 2, 3, 4}
    objects = [obj for scene in scenes for obj in scene.objects]
    assert {obj.shape for obj in objects} == set(SHAPES)
    assert {obj.colour for obj in objects} == set(COLOURS)
    assert {obj.size for obj in objects} == set(SIZES)
    assert {obj.cell for obj in objects} == set(CELLS)
    for scene in scenes:
        assert len({obj.cell for obj in scene.objects}) == len(scene.objects)


def test_bad_scenes_raise_errors_that_name_the_fix():
    circle = SceneObject(cell="centre", shape="circle", colour="red", size="small")
    with pytest.raises(ValueError, match="own cell"):
        Scene((circle, circle))
    with pytest.raises(ValueError, match="Unknown shape"):
        SceneObject(cell="centre", shape="hexagon", colour="red", size="small")
    with pytest.raises(ValueError, match="at least 48"):
        Scene((circle,), image_size=16)


def test_caption_lists_every_object_and_parses_back():
    scene = Scene(
        (
            SceneObject(cell="centre", shape="square", colour="blue", size="small"),
            SceneObject(cell="top left", shape="circle", colour="red", size="large"),
        )
    )
    caption = scene.caption()
    assert caption == (
        "There are two objects: a large red circle at the top left and a small blue square in the centre."
    )
    assert parse_caption(caption) == scene.objects
    # Any order, any case; but the count must agree and every object must be there.
    reordered = "there are 2 objects: a small blue square in the centre and a large red circle at the top left"
    assert parse_caption(reordered) == scene.objects
    miscounted = "There are three objects: a large red circle at the top left and a small blue square in the centre."
    assert parse_caption(miscounted) is None
    assert parse_caption("A red circle.") is None
    for seed in range(100):
        scene = generate_scene(seed)
        assert parse_caption(scene.caption()) == scene.objects


# --- The question language and the checker --------------------------------------------------------------------------


def test_generated_questions_parse_are_answerable_and_their_answers_are_right():
    kinds = set()
    for scene, question_text, reply in _conversations(300):
        question = parse_question(question_text)
        assert question is not None, question_text
        assert question.text == question_text  # the canonical form round-trips
        assert is_answerable(question, scene), (question_text, scene)
        assert reply == answer(question, scene)
        assert is_correct(question, reply, scene) and is_correct(question_text, reply, scene)
        for wrong in _wrong_answers(question, scene):
            assert not is_correct(question, wrong, scene), (question_text, wrong, scene)
        kinds.add(question.kind)
    assert kinds == set(QuestionKind)


def test_answers_are_compared_after_normalisation():
    scene = Scene(
        (
            SceneObject(cell="top left", shape="circle", colour="red", size="large"),
            SceneObject(cell="centre", shape="circle", colour="blue", size="small"),
        )
    )
    count = parse_question("How many circles are there?")
    judged = [is_correct(count, text, scene) for text in ("Two.", "two", "2", " TWO ", "Three.", "1")]
    assert judged == [True] * 4 + [False] * 2
    none = parse_question("How many squares are there?")
    assert [is_correct(none, text, scene) for text in ("Zero.", "0", "none", "One.")] == [True] * 3 + [False]
    where = parse_question("Where is the red object?")
    judged = [is_correct(where, text, scene) for text in ("Top left.", "top left", "At the top left.", "top")]
    assert judged == [True] * 3 + [False]
    centre = parse_question("Where is the blue circle?")
    assert is_correct(centre, "In the center.", scene) and not is_correct(centre, "Top left.", scene)
    colour = parse_question("What color is the large circle")
    assert [is_correct(colour, text, scene) for text in ("Red.", "red", "Blue.")] == [True, True, False]
    exists = parse_question("Is there a blue circle?")
    assert [is_correct(exists, text, scene) for text in ("Yes.", "yes", "No.")] == [True, True, False]


def test_questions_outside_the_language_are_rejected():
    for text in [
        "",
        "What is the capital of France?",
        "What colour is the red circle?",  # names what it asks
        "What shape is the circle?",
        "Is there an object?",  # names nothing
        "What colour is the hexagon?",
        "What colour is circle?",
        "How many circle are there?",
        "Where's the circle?",
        "Is there a circle red?",
        "What colour is the circle? What shape is the red object?",
        "Describe the picture.",
    ]:
        assert parse_question(text) is None, text
    assert parse_question("  what COLOR is   the circle ") == Question(QuestionKind.COLOUR, shape="circle")
    count = Question(QuestionKind.COUNT, colour="red", size="large")
    assert parse_question("How many large red objects are there?") == count
    assert parse_question("Is there an red triangle?") == Question(QuestionKind.EXISTS, colour="red", shape="triangle")
    assert parse_question("Can you describe the image in detail?") == Question(QuestionKind.DESCRIBE)
    with pytest.raises(ValueError, match="not a question of the scene language"):
        is_correct("What is the capital of France?", "Paris.", generate_scene(0))


def test_ambiguous_or_false_presupposition_questions_are_not_answerable():
    scene = Scene(
        (
            SceneObject(cell="top left", shape="circle", colour="red", size="large"),
            SceneObject(cell="centre", shape="circle", colour="blue", size="small"),
            SceneObject(cell="bottom", shape="square", colour="red", size="small"),
        )
    )
    ambiguous = ["What colour is the circle?", "What shape is the red object?", "Where is the small object?"]
    for text in ambiguous + ["Where is the triangle?"]:  # two circles, two red and two small objects, no triangle
        question = parse_question(text)
        assert question is not None and not is_answerable(question, scene), text
        with pytest.raises(ValueError, match="is_answerable"):
            answer(question, scene)
        with pytest.raises(ValueError, match="is_answerable"):
            is_correct(question, "Red.", scene)
    answerable = {
        "What colour is the large circle?": "Red.",
        "What shape is the large object?": "Circle.",
        "Where is the small red object?": "Bottom.",
        "How many triangles are there?": "Zero.",
        "Is there a green triangle?": "No.",
    }
    for text, expected in answerable.items():
        assert is_answerable(parse_question(text), scene) and answer(parse_question(text), scene) == expected


def test_yes_no_questions_are_balanced():
    replies = [reply for _, question, reply in _conversations(1500) if question.startswith("Is there")]
    assert len(replies) > 1000
    assert 0.45 <= replies.count("Yes.") / len(replies) <= 0.55


# --- Datasets ---------------------------------------------------------------------------------------------------


def test_train_and_held_out_scenes_are_disjoint():
    split = split_scenes(num_train=3000, num_held_out=300)
    assert len(split.train) == 3000 and len(split.held_out) == 300
    assert not set(split.train) & set(split.held_out)
    assert len(set(split.held_out)) == 300
    assert all(scene.seed < HELD_OUT_SEED_START for scene in split.train)
    assert all(scene.seed >= HELD_OUT_SEED_START for scene in split.held_out)
    # Repeats are the small one-object scenes a large training set already holds; they are counted, not hidden.
    assert split.num_held_out_repeats > 0
    assert split_scenes(num_train=3000, num_held_out=300) == split


def test_llava_json_and_trl_rows_hold_the_same_samples(tmp_path):
    scenes = split_scenes(num_train=0, num_held_out=6).held_out
    path = write_llava_dataset(scenes, tmp_path, json_name="held_out.json", samples_per_scene=2)
    samples = json.loads(path.read_text())
    rows = build_trl_rows(scenes, samples_per_scene=2)
    assert len(samples) == len(rows) == 12
    for sample, row in zip(samples, rows):
        assert sample["id"] == row["id"]
        assert set(sample) == {"id", "image", "conversations"}
        image = Image.open(tmp_path / "images" / sample["image"])
        assert image.tobytes() == row["images"][0].tobytes()
        conversation = sample["conversations"]
        assert [turn["from"] for turn in conversation] == ["human", "gpt"] * (len(conversation) // 2)
        assert conversation[0]["value"].startswith("<image>\n")
        assert 2 <= len(conversation) // 2 <= 5
        messages = row["messages"]
        assert messages[0]["content"][0] == {"type": "image"}
        turns = [
            (question["content"][-1]["text"], reply["content"][0]["text"])
            for question, reply in zip(messages[::2], messages[1::2])
        ]
        assert to_llava_conversations(turns) == conversation
        assert [message["role"] for message in messages] == ["user", "assistant"] * len(turns)
    # Two different conversations about the same scene share its image.
    assert samples[0]["image"] == samples[1]["image"] and samples[0]["conversations"] != samples[1]["conversations"]

    captions = build_trl_rows(scenes, stage=1)
    assert [row["messages"][1]["content"][0]["text"] for row in captions] == [scene.caption() for scene in scenes]
    assert all(row["messages"][0]["content"][1]["text"] == "Describe the image." for row in captions)


def test_llava_json_loads_with_the_package_loader(tmp_path):
    from transformers_sqllava import training

    scenes = split_scenes(num_train=4, num_held_out=0).train
    path = write_llava_dataset(scenes, tmp_path)
    dataset = training.load_llava_dataset(path, tmp_path / "images")
    rows = build_trl_rows(scenes)
    assert [dataset[index]["messages"] for index in range(len(rows))] == [row["messages"] for row in rows]


# --- The scene tokenizer ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene_tokenizer():
    return build_scene_tokenizer()


def test_scene_tokenizer_has_vicunas_layout_and_is_deterministic(scene_tokenizer):
    vocab = scene_tokenizer.get_vocab()
    assert (vocab["<unk>"], vocab["<s>"], vocab["</s>"], vocab["<0x00>"], vocab["<0x0A>"]) == (0, 1, 2, 3, 13)
    assert len(scene_tokenizer) < 700  # 259 fixed pieces + a few hundred learned
    assert scene_tokenizer("Red.").input_ids[0] == 1  # BOS from the post-processor
    # A newline has no piece, as in Llama: byte fallback.
    assert scene_tokenizer.tokenize("\nWhat") == ["▁", "<0x0A>", "What"]
    assert build_scene_tokenizer().backend_tokenizer.to_str() == scene_tokenizer.backend_tokenizer.to_str()


def test_scene_tokenizer_round_trips_and_keeps_scene_words_whole(scene_tokenizer):
    system_prompts = scene_language_corpus()[:2]
    texts = system_prompts + [text for _, question, reply in _conversations(50) for text in (question, reply)]
    for text in texts + ["Zebra: 42 é?"]:
        ids = scene_tokenizer(text).input_ids
        assert scene_tokenizer.decode(ids, skip_special_tokens=True) == text
    for text in texts:
        tokens = scene_tokenizer.tokenize(text)
        assert "<unk>" not in tokens and not any(token.startswith("<0x") for token in tokens), text
        # One piece per word (punctuation is a piece of its own): no word is split.
        assert len([token for token in tokens if token.startswith("▁")]) == len(text.split()), tokens
    question_lengths = [len(scene_tokenizer.tokenize(question)) for _, question, _ in _conversations(200)]
    assert max(question_lengths) <= 12
    assert sum(question_lengths) / len(question_lengths) <= 8


def test_scene_tokenizer_in_the_processor(scene_tokenizer):
    from transformers_sqllava import SQLlavaImageProcessor, SQLlavaProcessor, add_sqllava_tokens

    image_processor = SQLlavaImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    tokenizer = build_scene_tokenizer()
    add_sqllava_tokens(tokenizer)  # <image>, <pad> and [vusr]
    processor = SQLlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4)
    row = build_trl_rows([generate_scene(5)], num_turns=(3, 3))[0]
    row["messages"][2]["role"] = "vuser"
    prompt = processor.apply_chat_template(row["messages"], system_prompt="v1_sq", tokenize=False)
    tokens = processor.tokenizer.convert_ids_to_tokens(processor(text=prompt, images=row["images"])["input_ids"])
    assert "<unk>" not in tokens
    assert [token for token in tokens if token.startswith("<0x")] == ["<0x0A>"]  # only the newline after <image>
    assert tokens.count("<image>") == 4 and tokens.count("[vusr]") == 1
    assert len(tokens) < 180  # system prompt (93) + image + three short turns
