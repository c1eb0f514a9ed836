"""The lmms-eval plugin (`transformers_sqllava.evaluation.lmms_eval_plugin`) on the shipped demo checkpoint, offline.

Requests are lmms-eval's own `Instance`s and the entry point goes through lmms-eval's own model registry when
lmms-eval is installed (CI installs it with `--no-deps`); otherwise they are stand-ins with the same `args`, and the
plugin runs on its stand-in base class. Either way nothing is skipped.
"""

import configparser
import importlib
import importlib.metadata
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, load_training_record
from transformers_sqllava.demo.run import held_out_scenes
from transformers_sqllava.evaluation import lmms_eval_plugin
from transformers_sqllava.evaluation.lmms_eval_plugin import (
    LMMS_EVAL_AVAILABLE,
    SQLlava,
    as_bool,
    as_positive_int,
    continuation_start,
    cut_at_stop_strings,
)
from transformers_sqllava.self_questioning import generate_from_conversations


REPOSITORY = Path(__file__).resolve().parents[1]
ENTRY_POINT_GROUP = "lmms_eval.models"  # lmms_eval.models.registry_v2.ModelRegistryV2.load_entrypoint_manifests
ENTRY_POINT = "transformers_sqllava.evaluation.lmms_eval_plugin:model_manifest"
TASK, SPLIT = "demo_task", "test"
QUESTIONS = [
    "How many circles are there?",
    "What colour is the triangle?",
    "Is there a red square?",
    "How many squares are there?",
    "What colour is the circle?",
    "Is there a blue triangle?",
]
GREEDY = {"max_new_tokens": 16, "temperature": 0, "top_p": None, "num_beams": 1, "until": ["ASSISTANT:"]}


def request(request_type: str, *arguments):
    """A request as lmms-eval's tasks build it: `Instance(request_type, arguments, idx, metadata)` when installed."""
    if LMMS_EVAL_AVAILABLE:
        from lmms_eval.api.instance import Instance

        metadata = {"task": TASK, "doc_id": arguments[-3], "repeats": 1, "split": SPLIT}
        return Instance(request_type=request_type, arguments=arguments, idx=0, metadata=metadata)
    return SimpleNamespace(request_type=request_type, args=arguments)


def doc_to_visual(doc):
    return doc["images"]


@pytest.fixture(scope="module")
def docs():
    scenes = held_out_scenes(load_training_record(DEFAULT_CHECKPOINT), 4)
    images = [scene.render() for scene in scenes]
    docs = [{"images": [images[index % 4]], "question": question} for index, question in enumerate(QUESTIONS)]
    docs.append({"images": [], "question": "How many circles are there?"})  # text only
    docs.append({"images": images[:2], "question": "What colour is the triangle?"})  # two images
    return docs


def plugin(docs, arg_string: str) -> SQLlava:
    """The model as lmms-eval builds it: `create_from_arg_string(--model_args, {batch_size, device, ...})`."""
    model = SQLlava.create_from_arg_string(
        f"pretrained={DEFAULT_CHECKPOINT},{arg_string}", {"batch_size": None, "max_batch_size": None, "device": "cpu"}
    )
    model.task_dict = {TASK: {SPLIT: docs}}  # what lmms-eval's evaluator sets before sending requests
    return model


@pytest.fixture(scope="module")
def batched(docs):
    return plugin(docs, "batch_size=4")


@pytest.fixture(scope="module")
def one_by_one(docs):
    return plugin(docs, "batch_size=1,max_new_tokens=32,loglikelihood_output=logprob")


def expected_answer(model: SQLlava, doc: dict, **generation_kwargs) -> str:
    content = [{"type": "image", "image": image} for image in doc["images"]]
    conversation = [{"role": "user", "content": [*content, {"type": "text", "text": doc["question"]}]}]
    (text,) = generate_from_conversations(
        model.model, model.processor, [conversation], "assistant", "v1", do_sample=False, **generation_kwargs
    )
    return text


def generate_requests(docs, gen_kwargs=GREEDY, indices=None):
    indices = range(len(docs)) if indices is None else indices
    # lmms-eval prompts may carry `<image>` placeholders; the plugin removes them and places the images itself.
    return [
        request("generate_until", f"<image>\n{docs[i]['question']}", dict(gen_kwargs), doc_to_visual, i, TASK, SPLIT)
        for i in indices
    ]


def test_generate_until_answers_each_request_in_order_batched_as_one_by_one(docs, batched, one_by_one):
    # Two generation settings interleaved: each is batched apart, longest first; answers come back in request order.
    other = {"max_new_tokens": 8, "do_sample": False}
    requests = generate_requests(docs)
    requests[1::2] = generate_requests(docs, other, range(1, len(docs), 2))
    answers = batched.generate_until(requests)
    assert answers == one_by_one.generate_until(requests)
    expected = [
        expected_answer(batched, doc, max_new_tokens=16 if index % 2 == 0 else 8) for index, doc in enumerate(docs)
    ]
    assert answers == expected
    assert len(set(answers)) > 2 and all(isinstance(answer, str) for answer in answers)


def test_generate_until_cuts_at_the_first_stop_string(docs, batched):
    (full,) = batched.generate_until(generate_requests(docs, indices=[0]))
    assert "." in full and full.index(".") > 0
    (cut,) = batched.generate_until(generate_requests(docs, {**GREEDY, "until": [".", "zzz"]}, indices=[0]))
    assert cut == full[: full.index(".")]
    (cut,) = batched.generate_until(generate_requests(docs, {**GREEDY, "until": "."}, indices=[0]))  # a str
    assert cut == full[: full.index(".")]
    assert cut_at_stop_strings("One. Two\n\nThree", ["\n\n", "."]) == "One"
    assert cut_at_stop_strings("One", ["", "x"]) == "One"


def test_generation_kwargs_follow_the_reference_greedy_unless_temperature(batched, caplog):
    until, kwargs = batched._generation_kwargs({"until": "\n", "temperature": 0, "top_p": 0, "num_beams": 1})
    assert until == ["\n"] and kwargs == {"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}
    _, kwargs = batched._generation_kwargs({"temperature": 0.2, "top_p": 0.9, "max_new_tokens": 64})
    assert kwargs == {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "num_beams": 1, "max_new_tokens": 64}
    for do_sample in (False, "False"):  # a `--gen_kwargs` value may stay a string
        _, kwargs = batched._generation_kwargs({"temperature": 0.2, "do_sample": do_sample})
        assert kwargs["do_sample"] is False and "temperature" not in kwargs
    _, kwargs = batched._generation_kwargs({"do_sample": True, "top_k": 5})
    assert kwargs["do_sample"] is True and kwargs["top_k"] == 5 and "temperature" not in kwargs
    with caplog.at_level(logging.WARNING, logger=lmms_eval_plugin.__name__):
        batched._generation_kwargs({"image_aspect_ratio": "pad"})
    assert "image_aspect_ratio" in caplog.text


def greedy_reply_and_log_probabilities(model: SQLlava, doc: dict) -> tuple[str, list[float]]:
    """By hand: greedy decoding token by token (KV cache), summing each chosen token's log-softmax, `</s>` included."""
    content = [{"type": "image", "image": image} for image in doc["images"]]
    conversation = [{"role": "user", "content": [*content, {"type": "text", "text": doc["question"]}]}]
    inputs = model.processor.apply_chat_template(
        conversation, add_generation_prompt=True, system_prompt="v1", tokenize=True, return_dict=True,
        return_tensors="pt",
    )  # fmt: skip
    tokenizer = model.tokenizer
    output = model.model.generate(
        **inputs, do_sample=False, max_new_tokens=32, output_logits=True, return_dict_in_generate=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    tokens = output.sequences[0, inputs["input_ids"].shape[1] :]
    assert tokens[-1] == tokenizer.eos_token_id  # the demo model ends its answers
    steps = zip(output.logits, tokens)
    log_probs = [torch.log_softmax(logits[0].float(), -1)[token].item() for logits, token in steps]
    return tokenizer.decode(tokens, skip_special_tokens=True).strip(), log_probs


def test_loglikelihood_of_the_greedy_answer_is_its_loss_or_log_probability_and_greedy(docs, batched, one_by_one):
    reply, log_probs = greedy_reply_and_log_probabilities(batched, docs[0])
    wrong = "Three." if reply != "Three." else "Two."
    requests = [
        # lmms-eval's multiple-choice continuations start with the target delimiter, a space.
        request("loglikelihood", f"<image>\n{docs[0]['question']}", f" {reply}", doc_to_visual, 0, TASK, SPLIT),
        request("loglikelihood", docs[0]["question"], wrong, doc_to_visual, 0, TASK, SPLIT),
        # doc_to_target may be a function of the document.
        request("loglikelihood", docs[0]["question"], lambda doc: reply, doc_to_visual, 0, TASK, SPLIT),
    ]
    # `logprob`: lmms-eval's documented interface, the reply's summed log-probability (higher is better).
    (greedy_ll, greedy), (wrong_ll, wrong_greedy), (function_ll, _) = one_by_one.loglikelihood(requests)
    assert greedy is True and wrong_greedy is False
    assert greedy_ll == pytest.approx(sum(log_probs), abs=1e-4) and greedy_ll < 0
    assert wrong_ll < greedy_ll and function_ll == greedy_ll
    # `loss` (the default): what lmms-eval's LLaVA models return and its multiple_choice argmin expects.
    (loss, greedy), (wrong_loss, wrong_greedy), (function_loss, _) = batched.loglikelihood(requests)
    assert greedy is True and wrong_greedy is False
    assert loss == pytest.approx(-sum(log_probs) / len(log_probs), abs=1e-5) and loss > 0
    assert wrong_loss > loss and function_loss == loss


def test_loglikelihood_without_images_and_of_a_bare_context_choice_pair(docs, one_by_one):
    text_only = request("loglikelihood", docs[6]["question"], "One.", doc_to_visual, 6, TASK, SPLIT)
    # lmms-eval's `acc_mutual_info` sends (context, choice) only.
    bare = SimpleNamespace(args=("", "One."))
    (ll, _), (bare_ll, _) = one_by_one.loglikelihood([text_only, bare])
    assert ll < 0 and bare_ll < 0


def test_continuation_must_follow_the_prompt_tokens():
    assert continuation_start([1, 5, 7], [1, 5, 7, 9, 2]) == 3
    with pytest.raises(ValueError, match="not a prefix"):
        continuation_start([1, 5, 7], [1, 5, 8, 9, 2])
    with pytest.raises(ValueError, match="not a prefix"):
        continuation_start([1, 5, 7], [1, 5, 7])


def test_visuals_other_than_images_are_refused(docs, batched):
    bad = request("generate_until", "Q", GREEDY, lambda doc: ["clip.mp4"], 0, TASK, SPLIT)
    with pytest.raises(TypeError, match="not videos or audio"):
        batched.generate_until([bad])


def test_generate_until_multi_round_follows_lmms_eval_protocol(docs, batched):
    calls = []

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        # lmms-eval's multi-round tasks: round k >= 1 returns (visuals, context, done, answers so far, info).
        calls.append((round_idx, list(previous_output), previous_round_info))
        if round_idx == 3:
            return None, None, True, previous_output, None
        return docs[round_idx]["images"], docs[round_idx]["question"], False, previous_output, {"round": round_idx}

    arguments = (docs[0]["question"], GREEDY, doc_to_visual, doc_to_text, 0, TASK, SPLIT)
    multi = request("generate_until_multi_round", *arguments)
    (rounds,) = batched.generate_until_multi_round([multi])
    assert rounds == batched.generate_until(generate_requests(docs, indices=[0, 1, 2]))
    # Round k sees the k answers so far and the info the task returned the round before.
    assert calls == [(1, rounds[:1], None), (2, rounds[:2], {"round": 1}), (3, rounds, {"round": 2})]


def test_model_args_strings_are_converted(docs, batched, one_by_one):
    assert batched.batch_size == 4 and one_by_one.batch_size == 1 and one_by_one.max_new_tokens == 32
    assert batched.system_prompt == "v1" and batched.device.type == "cpu"
    assert as_bool("True", "x") is True and as_bool("false", "x") is False and as_bool(True, "x") is True
    assert as_positive_int("8", "x") == 8 and as_positive_int(8, "x") == 8 and as_positive_int(2.0, "x") == 2
    for value in ("auto", "0", "1.5", "eight", True):
        with pytest.raises(ValueError, match="whole number"):
            as_positive_int(value, "batch_size")
    with pytest.raises(ValueError, match="True or False"):
        as_bool("maybe", "load_in_4bit")
    with pytest.raises(TypeError, match="unknown model_args"):
        SQLlava(pretrained=str(DEFAULT_CHECKPOINT), device="cpu", bacth_size=2)
    with pytest.raises(ValueError, match="give one"):
        SQLlava(pretrained=str(DEFAULT_CHECKPOINT), device="cpu", conv_mode="v1", system_prompt="v1_sq")
    with pytest.raises(ValueError, match="'loss' or 'logprob'"):
        SQLlava(pretrained=str(DEFAULT_CHECKPOINT), device="cpu", loglikelihood_output="nll")
    assert batched.loglikelihood_output == "loss" and one_by_one.loglikelihood_output == "logprob"


def test_entry_point_resolves_to_an_lmms_model():
    module_name, attribute = ENTRY_POINT.split(":")
    target = getattr(importlib.import_module(module_name), attribute)
    assert target is lmms_eval_plugin.model_manifest
    assert SQLlava.is_simple is True
    if not LMMS_EVAL_AVAILABLE:  # the stand-in base has lmms-eval's three request methods
        assert {"generate_until", "loglikelihood", "generate_until_multi_round"} <= set(vars(SQLlava))
        return
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    assert issubclass(SQLlava, lmms)
    # lmms-eval's own registry, fed this entry point, as it reads installed distributions' entry points.
    registry = ModelRegistryV2()
    entry_point = importlib.metadata.EntryPoint(name="sqllava", value=ENTRY_POINT, group=ENTRY_POINT_GROUP)
    registry._select_entry_points = lambda group: [entry_point] if group == ENTRY_POINT_GROUP else []
    registry.load_entrypoint_manifests()
    assert registry.get_model_class("sqllava") is SQLlava  # validated there: an `lmms` subclass, `is_simple`
    installed = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "sqllava"]
    if installed:  # the package installed with its setup.cfg entry point: lmms-eval's startup registry finds it
        from lmms_eval.models import get_model

        assert get_model("sqllava") is SQLlava


def test_setup_cfg_declares_the_entry_point():
    setup = configparser.ConfigParser()
    setup.read(REPOSITORY / "setup.cfg")
    entry_points = setup["options.entry_points"]
    assert ENTRY_POINT_GROUP in entry_points, f"setup.cfg [options.entry_points] has no {ENTRY_POINT_GROUP} group"
    lines = [line.strip() for line in entry_points[ENTRY_POINT_GROUP].splitlines() if line.strip()]
    assert f"sqllava = {ENTRY_POINT}" in lines
