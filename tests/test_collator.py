"""The self-questioning collator (stage 2) and the alignment collator (stage 1): label masks decoded back to the
trained spans, ids equal to the processor's, vuser draws (statistics, eligibility, seeds), overflow policies.

Reference: docs/original.md#stage-1-labels (stage 1 "plain") and docs/original.md#stage-2-labels-and-vuser-turns (stage 2 `preprocess_v1_sq2`)."""

import pickle

import PIL.Image
import pytest
import torch
from conftest import tiny_processor

from transformers_sqllava import SYSTEM_PROMPT_V1_SQ
from transformers_sqllava.training import (
    SQLlavaCollatorCallback,
    SQLlavaAlignmentCollator,
    SQLlavaSelfQuestioningCollator,
    conversation_segments,
    encode_conversation,
    encode_segments,
    trained_spans,
)

IMAGE_TOKENS = 16


def image(colour=(200, 30, 30), size=(20, 14)) -> PIL.Image.Image:
    return PIL.Image.new("RGB", size, colour)


def user(text, with_image=False):
    content = [{"type": "text", "text": text}]
    return {"role": "user", "content": ([{"type": "image"}] + content) if with_image else content}


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def conversation(num_rounds: int = 3) -> list[dict]:
    questions = ["What is in the image?", "How many objects are there?", "Where is the square?", "Is there a star?"]
    answers = ["A red circle and a blue square.", "Two.", "On the left of the circle.", "No."]
    messages = []
    for index in range(num_rounds):
        messages += [user(questions[index % 4], with_image=index == 0), assistant(answers[index % 4])]
    return messages


def row(num_rounds=3, with_image=True, **extra):
    messages = conversation(num_rounds)
    if not with_image:
        messages[0] = user("What is in the image?")
    return {"images": [image()] if with_image else [], "messages": messages, **extra}


def decoded_spans(processor, batch, index=0) -> list[str]:
    spans = trained_spans(batch["input_ids"][index].tolist(), batch["labels"][index].tolist())
    return [processor.tokenizer.decode(span) for span in spans]


@pytest.fixture(scope="module", params=["VUSER", "[vusr]"], ids=["converted-VUSER", "native-vusr"])
def sq_processor(request):
    return tiny_processor(vuser_token=request.param)


# ---------------------------------------------------------------------------------------------------------------
# Masks and ids
# ---------------------------------------------------------------------------------------------------------------


def test_labels_decode_to_exactly_the_answers_and_vuser_questions(sq_processor):
    messages = conversation(4)
    messages[2] = {"role": "vuser", "content": messages[2]["content"]}  # a question the model learns to ask
    collator = SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=0.0)
    batch = collator([{"images": [image()], "messages": messages}])

    assert decoded_spans(sq_processor, batch) == [
        "A red circle and a blue square.</s>",
        "How many objects are there?</s>",  # the vuser question and its </s>
        "Two.</s>",
        "On the left of the circle.</s>",
        "No.</s>",
    ]
    # Everything else is -100: BOS, system prompt, USER turns, image tokens, the VUSER: tag and " ASSISTANT:".
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    marker = sq_processor.vuser_token
    rendered = sq_processor.apply_chat_template(messages, system_prompt="v1_sq")
    assert f"A red circle and a blue square.</s>{marker}: How many objects are there?</s> ASSISTANT: Two.</s>" in rendered
    assert (labels[ids == sq_processor.image_token_id] == -100).all()
    assert labels[0] == -100 and ids[0] == sq_processor.tokenizer.bos_token_id
    assert collator.stats.num_given_vuser_turns == 1 and collator.stats.num_question_tokens > 0


def test_masked_spans_are_the_prompt_the_role_markers_and_the_user_turns(sq_processor):
    messages = conversation(2)
    messages[2] = {"role": "vuser", "content": messages[2]["content"]}
    batch = SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=0.0)([{"images": [image()], "messages": messages}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    masked = [[]]
    for token, label in zip(ids, labels):
        if label == -100:
            masked[-1].append(token)
        elif masked[-1]:
            masked.append([])
    decode = sq_processor.tokenizer.decode
    image_run = "<image>" * IMAGE_TOKENS
    marker = sq_processor.vuser_token
    assert [decode(span).replace(" ", "") for span in masked if span] == [
        f"<s>{SYSTEM_PROMPT_V1_SQ}USER:{image_run}\nWhatisintheimage?ASSISTANT:".replace(" ", ""),
        f"{marker}:",
        "ASSISTANT:",
    ]


@pytest.mark.parametrize("num_rounds", [1, 2, 5])
def test_ids_equal_the_processors_ids_for_the_rendered_conversation(sq_processor, num_rounds):
    # The segments' ids concatenate to exactly what the processor gives for the whole rendered string, for every
    # pattern of vuser turns (each draw), with and without an image, and with awkward text.
    awkward = {"role": "assistant", "content": "  two  spaces, ünïcödé ✓ and\nnewline "}
    for seed in range(6):
        for with_image in (True, False):
            sample = row(num_rounds, with_image=with_image)
            if num_rounds > 1:
                sample["messages"][3] = awkward
            collator = SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=0.5, seed=seed)
            messages = collator.draw_vuser_turns(sample["messages"], with_image, collator._next_batch_rng())
            segments = conversation_segments(sq_processor, messages, "v1_sq")
            rendered = sq_processor.apply_chat_template(messages, system_prompt="v1_sq")
            assert "".join(text for text, _, _ in segments) == rendered
            ids, tags = encode_segments(sq_processor, segments)
            expected = sq_processor(text=rendered, images=sample["images"] or None)["input_ids"]
            assert ids == expected
            assert encode_conversation(sq_processor, messages)["input_ids"] == expected
            assert len(tags) == len(ids)


def test_images_first_false_puts_the_image_after_the_question_with_the_same_labels(sq_processor):
    sample = row(2)
    sample["messages"][0]["content"].reverse()  # [text, image]: the question before the image
    batches = {
        images_first: SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=0.0, images_first=images_first)([sample])
        for images_first in (True, False)
    }
    image_token = sq_processor.image_token_id
    question = sq_processor.tokenizer("What is in the image?", add_special_tokens=False)["input_ids"][1:]
    for images_first, batch in batches.items():
        ids = batch["input_ids"][0].tolist()
        first_image = ids.index(image_token)
        question_start = next(i for i in range(len(ids)) if ids[i : i + len(question)] == question)
        assert (first_image < question_start) == images_first
        messages = sample["messages"]
        rendered = sq_processor.apply_chat_template(messages, system_prompt="v1_sq", images_first=images_first)
        assert ids == sq_processor(text=rendered, images=sample["images"])["input_ids"]
        assert decoded_spans(sq_processor, batch) == ["A red circle and a blue square.</s>", "Two.</s>"]


def test_typed_special_tokens_stay_plain_text_like_the_processors_escaping(sq_processor):
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image()}, {"type": "text", "text": "Is </s> or <image> a token?"}]},
        assistant("No: </s> is text here."),
    ]
    ids = encode_conversation(sq_processor, messages)["input_ids"]
    expected = sq_processor.apply_chat_template(messages, system_prompt="v1_sq", tokenize=True, return_dict=True)
    assert ids == list(expected["input_ids"])
    assert ids.count(sq_processor.tokenizer.eos_token_id) == 1  # only the template's </s>
    assert ids.count(sq_processor.image_token_id) == IMAGE_TOKENS


def test_text_only_samples_use_the_v1_sq_prompt_and_keep_their_user_turns(sq_processor):
    collator = SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=1.0, seed=0)
    batch = collator([row(3, with_image=False)])
    assert "pixel_values" not in batch
    assert decoded_spans(sq_processor, batch) == ["A red circle and a blue square.</s>", "Two.</s>", "On the left of the circle.</s>"]
    rendered = sq_processor.tokenizer.decode(batch["input_ids"][0])
    assert "questions.Also" in rendered  # the v1_sq prompt, for text-only samples too (docs/original.md#which-system-prompt-where)


def test_batch_is_right_padded_with_the_pad_token(sq_processor):
    collator = SQLlavaSelfQuestioningCollator(sq_processor, sq_ratio=0.5, seed=0, pad_to_multiple_of=8)
    batch = collator([row(3), row(1), row(2, with_image=False)])
    pad = sq_processor.tokenizer.pad_token_id
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["pixel_values"].shape == (2, 3, 16, 16)
    for index in range(3):
        length = int(batch["attention_mask"][index].sum())
        assert batch["attention_mask"][index, :length].all() and not batch["attention_mask"][index, length:].any()
        assert (batch["input_ids"][index, length:] == pad).all() and (batch["labels"][index, length:] == -100).all()
    assert batch["input_ids"].dtype == torch.long and set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values"}


def test_stage1_alignment_masks(sq_processor):
    collator = SQLlavaAlignmentCollator(sq_processor)
    messages = [user("Describe the image briefly.", with_image=True), assistant("a red circle on grey")]
    batch = collator([{"images": [image()], "messages": messages}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    # <s> <image>x16 "a red circle on grey\n": no system prompt, no instruction, no EOS
    # (docs/original.md#stage-1-labels).
    assert ids[: 1 + IMAGE_TOKENS] == [1] + [sq_processor.image_token_id] * IMAGE_TOKENS
    assert labels[: 1 + IMAGE_TOKENS] == [-100] * (1 + IMAGE_TOKENS)
    assert sq_processor.tokenizer.eos_token_id not in ids
    assert decoded_spans(sq_processor, batch) == ["a red circle on grey\n"]
    assert ids == sq_processor(text="<image>a red circle on grey\n", images=[image()])["input_ids"]
    with pytest.raises(ValueError, match="one user turn and one assistant turn"):
        collator([row(2)])


# ---------------------------------------------------------------------------------------------------------------
# Which turns become vuser turns
# ---------------------------------------------------------------------------------------------------------------


def vuser_pattern(batch, processor) -> list[int]:
    """Number of trained spans per row: 1 per answer + 1 per vuser question."""
    return [len(trained_spans(batch["input_ids"][i].tolist(), batch["labels"][i].tolist())) for i in range(len(batch["input_ids"]))]


def test_sq_ratio_statistics_first_turn_and_text_only():
    processor = tiny_processor()
    collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.5, seed=1234)
    rows = [row(5), row(5, with_image=False)]
    first_turn_flips = per_position = 0
    flips_by_turn = [0] * 5
    draws = 400
    for _ in range(draws):
        for index, sample in enumerate(rows):
            drawn = collator.draw_vuser_turns(sample["messages"], bool(sample["images"]), collator._next_batch_rng())
            roles = [m["role"] for m in drawn]
            if index == 1:
                assert "vuser" not in roles  # never in text-only samples
                continue
            first_turn_flips += roles[0] == "vuser"
            for turn in range(5):
                flips_by_turn[turn] += roles[2 * turn] == "vuser"
            per_position += 1
    assert first_turn_flips == 0 and flips_by_turn[0] == 0  # never the first turn
    eligible = 4 * draws
    fraction = sum(flips_by_turn) / eligible
    assert abs(fraction - 0.5) < 0.04  # 1600 Bernoulli(0.5) draws: std 0.0125
    assert all(abs(count / draws - 0.5) < 0.1 for count in flips_by_turn[1:])  # each later turn independently
    assert collator.stats.num_eligible_turns == eligible and collator.stats.num_vuser_turns == sum(flips_by_turn)

    at_reference_default = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.3, seed=0)
    flips = sum(
        m["role"] == "vuser"
        for _ in range(400)
        for m in at_reference_default.draw_vuser_turns(rows[0]["messages"], True, at_reference_default._next_batch_rng())
    )
    assert abs(flips / 1600 - 0.3) < 0.04
    assert SQLlavaSelfQuestioningCollator(processor).sq_ratio == 0.5  # the released recipe's default


def test_draws_are_redrawn_per_call_and_reproducible_from_a_seed():
    processor = tiny_processor()
    batch_rows = [row(5) for _ in range(4)]

    def patterns(collator, calls=6):
        return [vuser_pattern(collator(batch_rows), processor) for _ in range(calls)]

    first = patterns(SQLlavaSelfQuestioningCollator(processor, seed=7))
    assert first == patterns(SQLlavaSelfQuestioningCollator(processor, seed=7))  # same seed, same draws
    assert first != patterns(SQLlavaSelfQuestioningCollator(processor, seed=8))
    assert len({tuple(p) for p in first}) > 1  # a sample seen again gets a new draw

    # seed=None: the global torch RNG, which Trainer seeds (and restores on resume).
    torch.manual_seed(3)
    global_first = patterns(SQLlavaSelfQuestioningCollator(processor))
    torch.manual_seed(3)
    assert patterns(SQLlavaSelfQuestioningCollator(processor)) == global_first

    # A pickled copy (a dataloader worker started with spawn) continues the same stream.
    collator = SQLlavaSelfQuestioningCollator(processor, seed=7)
    copy = pickle.loads(pickle.dumps(collator))
    assert patterns(copy, 2) == first[:2]


def test_draws_differ_between_ranks_and_workers(monkeypatch):
    processor = tiny_processor()
    batch_rows = [row(5) for _ in range(4)]
    by_rank = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        collator = SQLlavaSelfQuestioningCollator(processor, seed=7)
        by_rank[rank] = [vuser_pattern(collator(batch_rows), processor) for _ in range(4)]
    assert by_rank["0"] != by_rank["1"]

    monkeypatch.delenv("RANK")
    dataloader = torch.utils.data.DataLoader(
        [row(5) for _ in range(8)], batch_size=4, num_workers=2,
        collate_fn=SQLlavaSelfQuestioningCollator(processor, seed=7), multiprocessing_context="fork",
    )
    batches = [vuser_pattern(batch, processor) for batch in dataloader]  # worker 0 and worker 1, same stream position
    assert len(batches) == 2 and batches[0] != batches[1]


# ---------------------------------------------------------------------------------------------------------------
# max_length
# ---------------------------------------------------------------------------------------------------------------


def test_overflow_raises_by_default():
    processor = tiny_processor()
    collator = SQLlavaSelfQuestioningCollator(processor, max_length=60, seed=0)
    with pytest.raises(ValueError, match=r"Sample 'long'.*max_length=60.*on_overflow='skip'"):
        collator([row(5, id="long")])


def test_overflow_skip_counts_and_names_the_samples():
    processor = tiny_processor()
    collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0, max_length=300, on_overflow="skip")
    short, long = row(1, id="short"), row(5, id="long")
    batch = collator([short, long, short])
    assert batch["input_ids"].shape[0] == 2 and batch["pixel_values"].shape[0] == 2  # its image is dropped too
    assert collator.stats.num_skipped == 1 and collator.stats.skipped_ids == ["long"]
    assert collator.stats.num_samples == 2
    with pytest.raises(ValueError, match="All 1 samples"):
        collator([long])
    assert collator.stats.num_skipped == 2


def test_truncate_text_never_cuts_the_image_tokens():
    processor = tiny_processor()
    full = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0)([row(5)])
    collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0, max_length=300, on_overflow="truncate_text")
    batch = collator([row(5)])
    assert batch["input_ids"].shape[1] == 300 and collator.stats.num_truncated == 1
    assert torch.equal(batch["input_ids"][0], full["input_ids"][0, :300])
    assert torch.equal(batch["labels"][0], full["labels"][0, :300])
    too_short = SQLlavaSelfQuestioningCollator(processor, max_length=10, on_overflow="truncate_text")
    with pytest.raises(ValueError, match="cut through its image tokens"):
        too_short([row(1)])


def test_bad_arguments_name_the_fix():
    processor = tiny_processor()
    with pytest.raises(ValueError, match="sq_ratio"):
        SQLlavaSelfQuestioningCollator(processor, sq_ratio=1.5)
    with pytest.raises(ValueError, match="on_overflow"):
        SQLlavaSelfQuestioningCollator(processor, on_overflow="cut")
    with pytest.raises(ValueError, match="SQLlavaProcessor"):
        SQLlavaSelfQuestioningCollator(processor.tokenizer)
    with pytest.raises(ValueError, match="one image per sample"):
        SQLlavaSelfQuestioningCollator(processor)([{"images": [image(), image()], "messages": conversation(1)}])
    with pytest.raises(ValueError, match="no 'messages'"):
        SQLlavaSelfQuestioningCollator(processor)([{"images": [], "text": "hi"}])


def test_stats_callback_adds_question_and_answer_token_counts():
    processor = tiny_processor()
    collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=1.0, seed=0)
    collator([row(3)])
    callback = SQLlavaCollatorCallback(collator)

    class State:
        global_step = 1
        log_history = [{"loss": 1.0, "step": 1}]

    logs = {"loss": 1.0}
    callback.on_log(None, State, None, logs=logs)
    assert logs["collator/num_question_tokens"] == collator.stats.num_question_tokens > 0
    assert logs["collator/num_answer_tokens"] == collator.stats.num_answer_tokens > 0
    assert logs["collator/num_vuser_turns"] == 2 and State.log_history[-1]["collator/num_vuser_turns"] == 2


def test_with_the_callback_draws_are_keyed_by_seed_epoch_and_sample():
    processor = tiny_processor()
    samples = [row(5, id=f"s{i}") for i in range(6)]

    def draws(collator, batches):
        result = {}
        for batch_rows in batches:
            batch = collator(batch_rows)
            for sample, count in zip(batch_rows, vuser_pattern(batch, processor)):
                result[sample["id"]] = count
        return result

    collator = SQLlavaSelfQuestioningCollator(processor)
    callback = SQLlavaCollatorCallback(collator)

    class Args:
        seed = 42

    class State:
        epoch = 0.0

    callback.on_epoch_begin(Args, State, None)
    epoch0 = draws(collator, [samples[:3], samples[3:]])
    # Other batches, another order, another collator (a resumed run, another worker or rank): the same draws.
    other = SQLlavaSelfQuestioningCollator(processor)
    State.epoch = 0.5  # resumed from a mid-epoch checkpoint
    SQLlavaCollatorCallback(other).on_epoch_begin(Args, State, None)
    torch.manual_seed(123)  # the global RNG plays no part
    assert draws(other, [samples[4:], samples[:4][::-1]]) == epoch0
    State.epoch = 1.0  # a new epoch redraws
    callback.on_epoch_begin(Args, State, None)
    epoch1 = draws(collator, [samples])
    assert epoch1 != epoch0
    Args.seed = 43
    callback.on_epoch_begin(Args, State, None)
    assert draws(collator, [samples]) != epoch1
