"""The preference collator for TRL's `DPOTrainer` and STIC's DPO recipe: each pair's sequences are the SFT collator's
ids for the same conversation, token for token (answers and vuser questions), only the completion trains, padding and
errors, and a tiny DPO run through `DPOTrainer` that lowers the DPO loss, trains only the LoRA against the adapter-free
reference, and resumes from a checkpoint to the weights of an uninterrupted run."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_processor
from datasets import Dataset
from peft import get_peft_model
from sqllava_tiny import single_torch_thread
from transformers import TrainerCallback
from trl import DPOConfig

from transformers_sqllava import SQLlavaForConditionalGeneration, resize_embeddings_for_processor
from transformers_sqllava.training import SQLlavaSelfQuestioningCollator, llm_lora_target_regex, trained_spans
from transformers_sqllava.training.dpo import (
    STIC_NLL_DIVISOR,
    mean_chosen_tokens,
    stic_dpo_config_kwargs,
    stic_dpo_trainer,
    stic_lora_config,
    stic_sft_weight,
)
from transformers_sqllava.training.preference_collator import SQLlavaPreferenceCollator


def image(seed=0, size=(24, 20)) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def blocks(text):
    return [{"type": "text", "text": text}]


def user(text, with_image=False):
    return {"role": "user", "content": ([{"type": "image"}] if with_image else []) + blocks(text)}


def assistant(text):
    return {"role": "assistant", "content": blocks(text)}


def vuser(text):
    return {"role": "vuser", "content": blocks(text)}


def pair(prompt, chosen, rejected, images=None, **extra):
    return {"images": [image()] if images is None else images, "prompt": prompt, "chosen": [chosen],
            "rejected": [rejected], **extra}  # fmt: skip


def answer_pairs() -> list[dict]:
    """Assistant completions: one turn, several turns (the prompt ends with a user turn after a vuser turn), text only,
    a system message."""
    return [
        pair([user("What is in the image?", True)], assistant("A red circle."), assistant("Two blue squares.")),
        pair([user("What is in the image?", True), assistant("A red circle and a blue square."),
              vuser("How many objects are there?"), assistant("Two."), user("Where is the square?")],
             assistant("On the left of the circle."), assistant("There is no square.")),
        pair([user("Answer the question using a single word or phrase. Is there a star?")], assistant("No."),
             assistant("Yes, a yellow star."), images=[]),
        pair([{"role": "system", "content": blocks("A chat.")}, user("Describe the image in detail.", True)],
             assistant("There is a red circle."), assistant("A cat.")),
    ]  # fmt: skip


def question_pairs() -> list[dict]:
    """Vuser completions: a preference between two questions the model asks after an answer."""
    return [
        pair([user("What is in the image?", True), assistant("A red circle.")],
             vuser("How many objects are there?"), vuser("Is there a yellow star?")),
        pair([user("Describe the image in detail.", True), assistant("A red circle and a blue square."),
              user("Where is the square?"), assistant("On the left.")],
             vuser("What colour is the circle?"), vuser("Two.")),
    ]  # fmt: skip


def unpadded(batch, row):
    length = int(batch["attention_mask"][row].sum())
    ids = batch["input_ids"][row, :length]
    return ids.tolist(), ids.masked_fill(batch["completion_mask"][row, :length] == 0, -100).tolist()


def sft_batch(processor, rows, **kwargs):
    return SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0, **kwargs)(rows)


@pytest.fixture(scope="module", params=["VUSER", "[vusr]"], ids=["converted-VUSER", "native-vusr"])
def sq_processor(request):
    return tiny_processor(vuser_token=request.param)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


# ---------------------------------------------------------------------------------------------------------------
# Ids, labels, padding
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("images_first", [True, False])
def test_sequences_are_the_sft_collators_ids_and_only_the_completion_trains(sq_processor, images_first):
    rows = answer_pairs() + question_pairs()
    rows[0]["prompt"][0]["content"].reverse()  # the question before the image: rendered so with images_first=False
    batch = SQLlavaPreferenceCollator(sq_processor, images_first=images_first)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "completion_mask", "pixel_values"}  # no `labels`
    for half, key in enumerate(("chosen", "rejected")):
        for index, row in enumerate(rows):
            conversation = {"images": row["images"], "messages": row["prompt"] + row[key]}
            expected = sft_batch(sq_processor, [conversation], images_first=images_first)
            ids, labels = unpadded(batch, half * len(rows) + index)
            assert ids == expected["input_ids"][0].tolist()  # token for token, one BOS
            # SFT trains every answer and vuser question; DPO only the completion: SFT's last trained span.
            sft_spans = trained_spans(ids, expected["labels"][0].tolist())
            assert trained_spans(ids, labels) == sft_spans[-1:]
            completion = row[key][0]["content"][0]["text"]
            assert sq_processor.tokenizer.decode(sft_spans[-1]) == f"{completion}</s>"
    # Each image processed once and given to its chosen and its rejected row, as the SFT collator processes it.
    conversations = [{"images": row["images"], "messages": row["prompt"] + row["chosen"]} for row in rows]
    expected_images = sft_batch(sq_processor, conversations)["pixel_values"]
    torch.testing.assert_close(batch["pixel_values"], torch.cat([expected_images] * 2), rtol=0, atol=0)


def test_vuser_completion_is_the_sft_collators_vuser_turn(sq_processor):
    # In SFT a vuser question is followed by its answer; the question's ids and trained span are the same.
    row = question_pairs()[0]
    ids, labels = unpadded(SQLlavaPreferenceCollator(sq_processor)([row]), 0)
    answered = row["prompt"] + row["chosen"] + [assistant("Two.")]
    expected = sft_batch(sq_processor, [{"images": row["images"], "messages": answered}])
    sft_ids, sft_labels = expected["input_ids"][0].tolist(), expected["labels"][0].tolist()
    question = trained_spans(ids, labels)
    assert len(question) == 1 and question[0] == trained_spans(sft_ids, sft_labels)[1]
    end = max(i for i, label in enumerate(labels) if label != -100) + 1  # after the question's </s>
    assert ids[:end] == sft_ids[:end]
    assert len(ids) > end and sq_processor.tokenizer.decode(ids[end:]).strip() == ""  # the untrained separator " "
    rendered = sq_processor.apply_chat_template(row["prompt"] + row["chosen"], system_prompt="v1_sq")
    assert rendered.endswith(f"A red circle.</s>{sq_processor.vuser_token}: How many objects are there?</s> ")


def test_masked_tokens_are_the_whole_prompt(sq_processor):
    row = answer_pairs()[1]
    ids, labels = unpadded(SQLlavaPreferenceCollator(sq_processor)([row]), 0)
    first = next(i for i, label in enumerate(labels) if label != -100)
    prompt = sq_processor.tokenizer.decode(ids[:first])
    assert prompt.startswith("<s>") and prompt.count("<image>") == 16 and prompt.endswith("ASSISTANT:")
    # The prompt's own answer and vuser question, trained in SFT, are masked here.
    assert "A red circle and a blue square.</s>" in prompt and "How many objects are there?</s>" in prompt
    assert all(label == -100 for label in labels[:first]) and labels[first:] == ids[first:]


def test_pairs_of_different_lengths_are_right_padded_to_one_length(sq_processor):
    rows = [answer_pairs()[0], answer_pairs()[2], question_pairs()[1]]  # the middle one text-only
    collator = SQLlavaPreferenceCollator(sq_processor, pad_to_multiple_of=8)
    batch = collator(rows)
    pad = sq_processor.tokenizer.pad_token_id
    assert batch["input_ids"].shape[0] == 6 and batch["input_ids"].shape[1] % 8 == 0
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 2  # rows of different lengths
    for row, length in enumerate(lengths):
        assert batch["attention_mask"][row, :length].all() and (batch["input_ids"][row, length:] == pad).all()
        assert not batch["completion_mask"][row, length:].any()
        assert batch["input_ids"][row, 0] == sq_processor.tokenizer.bos_token_id
    # Chosen rows first, then rejected, in the same order; a text-only pair adds no image (2 images, twice).
    assert batch["pixel_values"].shape == (4, 3, 16, 16)
    torch.testing.assert_close(batch["pixel_values"][:2], batch["pixel_values"][2:], rtol=0, atol=0)
    for index, row in enumerate(rows):
        for half, key in enumerate(("chosen", "rejected")):
            (span,) = trained_spans(*unpadded(batch, half * 3 + index))
            assert sq_processor.tokenizer.decode(span) == row[key][0]["content"][0]["text"] + "</s>"
    stats = collator.stats
    assert (stats.num_samples, stats.num_image_samples, stats.num_text_only_samples) == (3, 2, 1)
    assert stats.num_answer_tokens > 0 and stats.num_question_tokens > 0


def test_overflow_skips_the_pair_once_and_truncation_keeps_the_image(sq_processor):
    long = pair([user("What is in the image?", True)], assistant("Two."), assistant("A red circle. " * 30), id="long")
    rows = [answer_pairs()[0], long]
    limit = int(SQLlavaPreferenceCollator(sq_processor)(rows[:1])["attention_mask"].sum(1).max()) + 2
    overflow = r"The rejected sequence \(prompt \+ rejected\): Sample 'long' has \d+ tokens"
    with pytest.raises(ValueError, match=overflow):
        SQLlavaPreferenceCollator(sq_processor, max_length=limit)(rows)
    skipping = SQLlavaPreferenceCollator(sq_processor, max_length=limit, on_overflow="skip")
    assert skipping(rows)["input_ids"].shape[0] == 2
    assert skipping.stats.num_skipped == 1 and skipping.stats.skipped_ids == ["long"]
    with pytest.raises(ValueError, match="All 1 pairs of the batch were skipped"):
        skipping([long])
    truncated = SQLlavaPreferenceCollator(sq_processor, max_length=limit, on_overflow="truncate_text")([long])
    assert truncated["input_ids"].shape[1] == limit and truncated["completion_mask"][1].sum() > 0
    assert (truncated["input_ids"] == sq_processor.image_token_id).sum(1).tolist() == [16, 16]


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------

GOOD = answer_pairs()[0]
BAD_ROWS = {
    "different roles": (
        {**GOOD, "rejected": [vuser("Why?")]}, "'chosen' is a 'assistant' turn and 'rejected' a 'vuser'"
    ),
    "two messages": ({**GOOD, "chosen": [assistant("A."), assistant("B.")]}, "'chosen' has 2 messages"),
    "a bare message": ({**GOOD, "chosen": assistant("A.")}, r"'chosen' is one message .* wrap it"),
    "a string completion": ({**GOOD, "rejected": "A dog."}, "'rejected' must be a list of one message"),
    "a user completion": ({**GOOD, "chosen": [user("Hi")]}, "role 'user'; it must be .* 'assistant'"),
    "prompt ends with an answer": (
        {**GOOD, "prompt": [user("Q", True), assistant("A.")]},
        "the prompt ends with a 'assistant' turn.*make both completions 'vuser'",
    ),
    "vuser after a user turn": (
        {**GOOD, "chosen": [vuser("Why?")], "rejected": [vuser("How?")]},
        "must end with an assistant turn, not a 'user' one",
    ),
    "missing image": ({**GOOD, "images": []}, r"1 image block\(s\) in its messages but 0 image\(s\)"),
    "no image block": ({**GOOD, "prompt": [user("Q")]}, r"0 image block\(s\) in its messages but 1 image"),
    "missing rejected": ({key: value for key, value in GOOD.items() if key != "rejected"}, "has no 'rejected'"),
    "SFT row": ({"images": [], "messages": [user("Q"), assistant("A.")]}, "use SQLlavaSelfQuestioningCollator"),
    "string prompt": ({**GOOD, "prompt": "USER: Q ASSISTANT:"}, "'prompt' must be a non-empty list of chat messages"),
    "unknown role": ({**GOOD, "prompt": [{"role": "human", "content": "Q"}]}, "unknown role 'human'"),
    "image in the completion": (
        {**GOOD, "chosen": [{"role": "assistant", "content": [{"type": "image"}]}]}, "images go in user turns"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_rows_raise_naming_the_pair_and_the_fix(processor, case):
    row, message = BAD_ROWS[case]
    with pytest.raises(ValueError, match=message) as error:
        SQLlavaPreferenceCollator(processor)([GOOD, {**row, "id": "bad-1"}])
    assert "'bad-1'" in str(error.value)


def test_bad_batches_and_arguments_raise(processor):
    collator = SQLlavaPreferenceCollator(processor)
    with pytest.raises(ValueError, match="empty batch"):
        collator([])
    with pytest.raises(ValueError, match="Row 1 of the batch is a str, not a dict"):
        collator([GOOD, "row"])
    with pytest.raises(ValueError, match="`system_prompt` must be one of"):
        SQLlavaPreferenceCollator(processor, system_prompt="llava_v1")
    with pytest.raises(ValueError, match="`on_overflow` must be"):
        SQLlavaPreferenceCollator(processor, on_overflow="cut")
    with pytest.raises(ValueError, match="needs an `SQLlavaProcessor`"):
        SQLlavaPreferenceCollator(processor.tokenizer)
    with pytest.raises(ValueError, match="merge it into the base model first"):
        stic_dpo_trainer(get_peft_model(tiny_model(processor), stic_lora_config()), processor, dataset())


# ---------------------------------------------------------------------------------------------------------------
# STIC's recipe through DPOTrainer
# ---------------------------------------------------------------------------------------------------------------


def tiny_model(processor) -> SQLlavaForConditionalGeneration:
    torch.manual_seed(0)
    model = SQLlavaForConditionalGeneration(tiny_config())
    resize_embeddings_for_processor(model, processor)
    return model


def dataset() -> Dataset:
    rows = [answer_pairs()[0], answer_pairs()[1], *question_pairs()]
    return Dataset.from_list([{**row, "id": f"pair-{index}"} for index, row in enumerate(rows)])


def dpo_args(output_dir, **overrides) -> DPOConfig:
    kwargs = stic_dpo_config_kwargs(
        learning_rate=5e-3, max_steps=6, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        warmup_steps=0, logging_steps=1, save_strategy="no", use_cpu=True, bf16=False,
        activation_checkpointing=False, report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    return DPOConfig(output_dir=str(output_dir), **{**kwargs, **overrides})


def test_stic_config_and_lora_are_stics_recipe(tmp_path):
    kwargs = stic_dpo_config_kwargs(mean_chosen_tokens=256)
    assert (kwargs["beta"], kwargs["learning_rate"], kwargs["num_train_epochs"]) == (0.1, 1e-7, 1)
    args = DPOConfig(str(tmp_path), **{**kwargs, "use_cpu": True, "bf16": False, "report_to": []})
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 256 / 1024]
    assert not args.remove_unused_columns and args.max_length is None  # ids reach the collator, which has the limit
    assert stic_dpo_config_kwargs(mean_chosen_tokens=64, loss_type="sigmoid")["loss_weights"] == [1.0]
    with pytest.raises(ValueError, match="positive number"):
        stic_sft_weight(0)
    lora = stic_lora_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.modules_to_save) == (128, 256, 0.05, None)
    assert lora.target_modules == llm_lora_target_regex()


def dpo_losses(model, batch, beta) -> torch.Tensor:
    """The sigmoid DPO loss of each pair, the reference being the model with its adapter disabled."""
    inputs = {key: value for key, value in batch.items() if key != "completion_mask"}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)

    def logps():
        return model(**inputs, labels=labels, fused_lm_head=True, use_cache=False).log_probs.sum(1)

    with torch.no_grad():
        policy = logps()
        with model.disable_adapter():
            reference = logps()
    chosen, rejected = (policy - reference).chunk(2)
    return policy, reference, -F.logsigmoid(beta * (chosen - rejected))


def test_stic_dpo_lowers_the_dpo_loss_and_trains_only_the_llm_lora(tmp_path):
    processor = tiny_processor(vuser_token="[vusr]")
    model = tiny_model(processor)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    data = dataset()
    args = dpo_args(tmp_path)
    assert args.loss_type == ["sigmoid", "sft"] and args.beta == 0.1 and args.loss_weights is None
    trainer = stic_dpo_trainer(model, processor, data, args)

    # STIC's NLL weight, measured from the data: the chosen completions' mean trained length over 1024.
    collator = trainer.data_collator
    batch = collator(list(data))
    counts = batch["completion_mask"][:4].sum(1).tolist()
    assert mean_chosen_tokens(data, collator) == sum(counts) / 4
    assert args.loss_weights == [1.0, sum(counts) / 4 / STIC_NLL_DIVISOR] == [1.0, stic_sft_weight(sum(counts) / 4)]
    # The reference is the policy with its adapter disabled: no reference model, no copied "ref" adapter.
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]
    policy, reference, initial = dpo_losses(trainer.model, batch, args.beta)
    torch.testing.assert_close(policy, reference)  # LoRA B = 0: the policy starts as the reference
    torch.testing.assert_close(initial, torch.full((4,), math.log(2)))

    trainer.train()
    history = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(history) == 6 and history[-1] < history[0] - 0.02, history
    _, reference_after, final = dpo_losses(trainer.model, batch, args.beta)
    torch.testing.assert_close(reference_after, reference)  # the reference did not move
    assert (final < math.log(2)).all() and final.mean() < math.log(2) - 0.02, final  # answers and questions

    base = trainer.model.get_base_model()
    trained = {name for name, parameter in base.named_parameters() if parameter.requires_grad}
    assert trained and all("lora_" in name and ".language_model." in name for name in trained)
    changed = [name for name in trained if "lora_B" in name and base.get_parameter(name).abs().sum() > 0]
    assert len(changed) == 2 * 7  # every projection of both decoder layers
    frozen = {name.replace(".base_layer", ""): p for name, p in base.named_parameters() if "lora_" not in name}
    assert frozen.keys() == before.keys()
    for name, parameter in frozen.items():
        assert torch.equal(parameter, before[name]), name  # bit-identical


class _Crash(Exception):
    pass


class _CrashAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Crash(f"killed in step {self.step}")


def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    # 4 pairs in batches of 2: checkpoint-3 is in the middle of the second epoch.
    processor = tiny_processor()
    settings = dict(max_steps=5, per_device_train_batch_size=2, save_strategy="steps", save_steps=3)

    def run(folder, crash_at=None, resume=None):
        args = dpo_args(tmp_path / folder, **settings)
        trainer = stic_dpo_trainer(tiny_model(processor), processor, dataset(), args)
        if crash_at:
            trainer.add_callback(_CrashAtStep(crash_at))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    uninterrupted = run("a")
    with pytest.raises(_Crash):
        run("b", crash_at=4)
    checkpoint = tmp_path / "b" / "checkpoint-3"
    assert (checkpoint / "adapter_model.safetensors").exists()
    resumed = run("b", resume=str(checkpoint))

    def losses(trainer):
        return [(log["step"], log["loss"]) for log in trainer.state.log_history if "loss" in log]

    expected = losses(uninterrupted)
    assert [step for step, _ in losses(resumed)] == [step for step, _ in expected] == [1, 2, 3, 4, 5]
    assert [loss for _, loss in losses(resumed)] == pytest.approx([loss for _, loss in expected], rel=1e-5)
    weights = dict(uninterrupted.model.named_parameters())
    lora = [(name, p) for name, p in resumed.model.named_parameters() if "lora_" in name]
    assert lora and any(p.abs().sum() > 0 for name, p in lora if "lora_B" in name)
    for name, parameter in lora:
        torch.testing.assert_close(parameter, weights[name], msg=name)
