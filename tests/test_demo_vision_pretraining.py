"""Stage 0 of the demo's training: the image path learns to write each grid cell's code."""

import pytest
import torch
from sqllava_tiny import single_torch_thread

from transformers_sqllava.demo import generate_scene
from transformers_sqllava.demo.data import to_trl_messages
from transformers_sqllava.demo.scenes import CELLS, COLOURS, SHAPES, SIZES, Scene, SceneObject
from transformers_sqllava.demo.train import DemoTrainingConfig, build_demo_model, build_demo_processor
from transformers_sqllava.demo.vision_pretraining import (
    CellCodebook,
    cell_contents,
    freeze_image_path,
    image_features,
    pretrain_vision,
)

TINY = dict(
    image_size=48, patch_size=16, vision_hidden_size=32, vision_layers=2, text_hidden_size=32,
    text_intermediate_size=64, text_layers=1, num_prototypes=4,
)  # fmt: skip


def test_cell_contents_name_every_cell_in_reading_order():
    scene = Scene(
        (SceneObject("centre", "square", "blue", "large"), SceneObject("top left", "circle", "red", "small"))
    )
    contents = cell_contents(scene)
    assert contents.shape == (len(CELLS), 4)
    assert contents[:, 3].tolist() == list(range(len(CELLS)))
    assert contents[0, :3].tolist() == [list(COLOURS).index("red"), SHAPES.index("circle"), list(SIZES).index("small")]
    assert contents[4, :3].tolist() == [
        list(COLOURS).index("blue"),
        SHAPES.index("square"),
        list(SIZES).index("large"),
    ]
    empty = [len(COLOURS), len(SHAPES), len(SIZES)]
    assert all(contents[index, :3].tolist() == empty for index in (1, 2, 3, 5, 6, 7, 8))


def test_codebook_is_seeded_and_decodes_its_own_codes():
    contents = torch.stack([cell_contents(generate_scene(seed)) for seed in range(20)])
    codebook = CellCodebook(64, seed=3)
    assert torch.equal(codebook(contents), CellCodebook(64, seed=3)(contents))
    assert not torch.equal(codebook(contents), CellCodebook(64, seed=4)(contents))
    assert codebook.decode(codebook(contents), contents).tolist() == [1.0, 1.0, 1.0, 1.0]
    # Noise well above the codes' size scrambles them.
    noisy = codebook(contents) + 10 * torch.randn(20, len(CELLS), 64, generator=torch.Generator().manual_seed(0))
    assert codebook.decode(noisy, contents).mean() < 0.7


def test_pretraining_teaches_the_image_path_and_leaves_the_language_model_alone():
    config = DemoTrainingConfig(**TINY)
    processor = build_demo_processor(config.image_size, config.patch_size)
    with single_torch_thread():
        model = build_demo_model(config, processor)
        language_model = {name: weight.clone() for name, weight in model.model.language_model.state_dict().items()}
        untrained = pretrain_vision(build_demo_model(config, processor), processor, steps=1, learning_rate=1e-9)
        result = pretrain_vision(model, processor, steps=150, batch_size=32, learning_rate=5e-3)
    # At random the features decode to the right code for ~10% of cells; after 150 steps (the demo runs 400 at 3x the
    # width, to 100%) colour, shape, size and cell decode for most cells of unseen scenes.
    slots = ("colour", "shape", "size", "cell")
    assert max(untrained[slot] for slot in slots) < 0.3, untrained
    assert min(result[slot] for slot in slots) > 0.75, result
    assert result["loss"] < untrained["loss"] / 4
    for name, weight in model.model.language_model.state_dict().items():
        assert torch.equal(weight, language_model[name]), name
    freeze_image_path(model)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith(("model.language_model", "lm_head")) for name in trainable)
    pixels = processor.image_processor([generate_scene(0, image_size=48).render()], return_tensors="pt").pixel_values
    assert image_features(model, pixels).shape == (1, len(CELLS), config.text_hidden_size)


def test_pretraining_needs_one_image_token_per_cell():
    config = DemoTrainingConfig(**{**TINY, "patch_size": 12})  # 16 tokens
    processor = build_demo_processor(config.image_size, config.patch_size)
    with pytest.raises(ValueError, match="one code per grid cell"):
        pretrain_vision(build_demo_model(config, processor), processor, steps=1)


def test_question_before_image_moves_the_image_after_the_first_question_only():
    turns = [("What colour is the circle?", "Red."), ("Where is the circle?", "Top left.")]
    messages = to_trl_messages(turns, question_before_image=True)
    assert [block["type"] for block in messages[0]["content"]] == ["text", "image"]
    assert messages[2]["content"] == [{"type": "text", "text": "Where is the circle?"}]
    assert [block["type"] for block in to_trl_messages(turns)[0]["content"]] == ["image", "text"]
    # "Describe the image." keeps the image first: the self-questioning demo asks it that way.
    described = to_trl_messages([("Describe the image.", "There is one object: ...")], question_before_image=True)
    assert [block["type"] for block in described[0]["content"]] == ["image", "text"]
