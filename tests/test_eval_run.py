"""`sqllava eval run`: the question files read as the original scripts read them, batched answers equal to one at a
time, resuming, the answering modes, and the command line, on the shipped demo checkpoint."""

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from transformers_sqllava.cli import main
from transformers_sqllava.commands.generate import checkpoint_prompt_format, load_model_and_processor
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, load_training_record
from transformers_sqllava.demo.run import held_out_scenes, sample_questions
from transformers_sqllava.evaluation import answering as answering_module
from transformers_sqllava.evaluation import runner as runner_module
from transformers_sqllava.evaluation.answering import AnsweringConfig, answer_questions
from transformers_sqllava.evaluation.question_files import (
    SINGLE_PRED_PROMPT,
    BenchmarkQuestion,
    get_chunk,
    read_questions,
)
from transformers_sqllava.evaluation.runner import answer_question_file, model_name_from_path, read_answered_keys

TRAINED = checkpoint_prompt_format(str(DEFAULT_CHECKPOINT))


@pytest.fixture(scope="module")
def demo():
    return load_model_and_processor(str(DEFAULT_CHECKPOINT), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def question_file(tmp_path_factory):
    """24 held-out scene questions in LLaVA's JSONL, with their PNGs."""
    folder = tmp_path_factory.mktemp("questions")
    scenes = held_out_scenes(load_training_record(DEFAULT_CHECKPOINT), 12)
    with open(folder / "questions.jsonl", "w") as file:
        for number, (index, text) in enumerate(sample_questions(scenes, 2, seed=0)):
            scenes[index].render().save(folder / f"scene{index}.png")
            file.write(json.dumps({"question_id": f"q{number}", "image": f"scene{index}.png", "text": text}) + "\n")
    return folder / "questions.jsonl"


def demo_config(**overrides) -> AnsweringConfig:
    kwargs = {
        "system_prompt": TRAINED["system_prompt"],
        "question_first": TRAINED["question_first"],
        "generation_kwargs": {"do_sample": False, "max_new_tokens": 8},
    }
    return AnsweringConfig(**{**kwargs, **overrides})


def texts(path) -> dict:
    return {row["question_id"]: row["text"] for row in map(json.loads, Path(path).read_text().splitlines())}


# --- Question files ---------------------------------------------------------------------------------------------------


def test_llava_jsonl_keeps_the_text_as_prompt_and_joins_the_image_folder(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 7, "image": "a.jpg", "text": "<image>\nWhat is it?", "category": "x"}))
    (question,) = read_questions(path, image_folder=tmp_path)
    assert (question.question_id, question.text, question.prompt) == (7, "What is it?", "<image>\nWhat is it?")
    assert question.image == str(tmp_path / "a.jpg")


def test_scienceqa_prompt_as_model_vqa_science(tmp_path):
    problems = [
        {"id": "1", "image": "1/image.png", "conversations": [{"from": "human", "value": "<image>\nQ?\nA. x\nB. y"}]},
        {"id": "2", "conversations": [{"from": "human", "value": "Text only?\nA. x"}]},
    ]
    path = tmp_path / "llava_test_CQM-A.json"
    path.write_text(json.dumps(problems))
    with_image, text_only = read_questions(path, image_folder="images", single_pred_prompt=True)
    assert with_image.text == f"Q?\nA. x\nB. y\n{SINGLE_PRED_PROMPT}"
    assert with_image.prompt == f"<image>\nQ?\nA. x\nB. y\n{SINGLE_PRED_PROMPT}"  # model_vqa_science.py's cur_prompt
    assert with_image.image == "images/1/image.png"
    assert (text_only.image, text_only.prompt) == (None, f"Text only?\nA. x\n{SINGLE_PRED_PROMPT}")


def mmbench_tsv(path, rows):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"]
    lines = ["\t".join(header)] + ["\t".join([*row, image]) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mmbench_hint_options_rounds_and_suffix(tmp_path):
    path = mmbench_tsv(
        tmp_path / "dev.tsv", [["5", "Which?", "Look.", "cat", "dog", "bird", "", "A", "c", "l", "dev"]]
    )
    rounds = read_questions(path, single_pred_prompt=True, all_rounds=True)
    assert [question.fields["round_id"] for question in rounds] == [0, 1, 2]  # three options: three rotations
    first, second, _ = rounds
    assert first.prompt == "Look.\nWhich?\nA. cat\nB. dog\nC. bird"
    assert first.text == first.prompt + "\n" + SINGLE_PRED_PROMPT
    assert second.prompt == "Look.\nWhich?\nA. dog\nB. bird\nC. cat"
    assert second.fields == {"round_id": 1, "options": ["dog", "bird", "cat"], "option_char": ["B", "C", "A"]}
    assert first.question_id == 5 and first.image.load().size == (8, 8)
    (cn,) = read_questions(path, single_pred_prompt=True, lang="cn")
    assert cn.text.endswith("\n请直接回答选项字母。")


def test_mmbench_row_without_a_question_names_it(tmp_path):
    path = mmbench_tsv(tmp_path / "dev.tsv", [["5", "", "", "cat", "dog", "", "", "A", "c", "l", "dev"]])
    with pytest.raises(ValueError, match="row 2: no 'question'"):
        read_questions(path)


def test_chunks_as_the_original_get_chunk():
    questions = list(range(10))
    assert [get_chunk(questions, 4, k) for k in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert get_chunk(list(range(9)), 4, 3) == []  # the original raises IndexError here; an empty chunk is a no-op
    with pytest.raises(ValueError, match="chunk-idx"):
        get_chunk(questions, 2, 2)


def test_model_id_as_get_model_name_from_path():
    assert model_name_from_path("checkpoints/sqllava-7b/") == "sqllava-7b"
    assert model_name_from_path("runs/sqllava/checkpoint-800") == "sqllava_checkpoint-800"


# --- Answering --------------------------------------------------------------------------------------------------------


def test_batch_of_eight_gives_the_answers_of_batch_one(demo, question_file, tmp_path):
    model, processor = demo
    one = answer_question_file(model, processor, question_file, tmp_path / "1.jsonl", question_file.parent,
                               answering=demo_config(), batch_size=1)  # fmt: skip
    eight = answer_question_file(model, processor, question_file, tmp_path / "8.jsonl", question_file.parent,
                                 answering=demo_config(), batch_size=8)  # fmt: skip
    assert one.num_answered == eight.num_answered == 24
    assert texts(tmp_path / "1.jsonl") == texts(tmp_path / "8.jsonl")
    first = json.loads((tmp_path / "8.jsonl").read_text().splitlines()[0])
    assert list(first) == ["question_id", "prompt", "text", "answer_id", "model_id", "metadata"]
    assert first["metadata"] == {} and len(first["answer_id"]) == 22


def test_resume_skips_what_is_written_and_redoes_a_half_written_line(demo, question_file, tmp_path):
    model, processor = demo
    full = tmp_path / "full.jsonl"
    answer_question_file(model, processor, question_file, full, question_file.parent, answering=demo_config(),
                         batch_size=8)  # fmt: skip
    lines = full.read_text().splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(lines[:10]) + lines[10][:25])  # killed while writing answer 11
    assert len(read_answered_keys(killed)) == 10
    summary = answer_question_file(model, processor, question_file, killed, question_file.parent,
                                   answering=demo_config(), batch_size=8)  # fmt: skip
    assert (summary.num_already_answered, summary.num_answered) == (10, 14)
    rows = [json.loads(line) for line in killed.read_text().splitlines()]
    assert len(rows) == 24 and texts(killed) == texts(full)
    again = answer_question_file(model, processor, question_file, killed, question_file.parent,
                                 answering=demo_config())  # fmt: skip
    assert again.num_answered == 0


def test_a_malformed_line_in_the_answers_file_stops_the_run(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"question_id": 1, "text": "x"}\nnot json\n{"question_id": 2, "text": "y"}\n')
    with pytest.raises(ValueError, match="line 2 is not an answer"):
        read_answered_keys(path)


def test_each_format_preprocesses_images_as_its_original_script(demo, question_file, tmp_path, monkeypatch):
    model, processor = demo
    seen = []

    def record_padding(model, processor, questions, images, config):
        seen.append(processor.image_processor.do_pad)
        return [answering_module.Answer("x") for _ in questions]

    monkeypatch.setattr(runner_module, "answer_questions", record_padding)
    before = processor.image_processor.do_pad
    for question_format in ("llava", "caption"):
        answer_question_file(model, processor, question_file, tmp_path / f"{question_format}.jsonl",
                             question_file.parent, question_format=question_format, batch_size=24)  # fmt: skip
    assert seen == [True, False]  # model_vqa_loader.py pads (process_images), model_cap.py only crops
    assert processor.image_processor.do_pad == before


def test_self_question_mode_asks_n_questions_then_answers(demo, question_file):
    model, processor = demo
    questions = read_questions(question_file, question_file.parent)[:3]
    images = [processor.image_processor.fetch_images(question.image) for question in questions]
    config = demo_config(mode="self-question", num_questions=2, description_prompt=TRAINED["description_prompt"],
                         generation_kwargs={"do_sample": False, "max_new_tokens": 64})  # fmt: skip
    answers = answer_questions(model, processor, questions, images, config)
    for answer in answers:
        assert answer.metadata["mode"] == "self-question" and len(answer.metadata["dialogue"]) == 2
        assert answer.metadata["description"].startswith("There ")  # the demo model's caption
        assert len(answer.generated_texts) == 1 + 2 * 2 + 1  # description, 2 x (question, answer), the answer


def test_describe_mode_and_text_only_questions(demo, question_file):
    model, processor = demo
    (question,) = read_questions(question_file, question_file.parent)[:1]
    image = processor.image_processor.fetch_images(question.image)
    text_only = BenchmarkQuestion("t", "How many objects are there?", "How many objects are there?")
    config = demo_config(mode="describe", description_prompt=TRAINED["description_prompt"])
    described, direct = answer_questions(model, processor, [question, text_only], [image, None], config)
    assert described.metadata["mode"] == "describe" and len(described.generated_texts) == 2
    assert direct.metadata == {} and len(direct.generated_texts) == 1  # no image: nothing to describe


# --- Command line -----------------------------------------------------------------------------------------------------


def test_command_line_writes_the_library_answers(demo, question_file, tmp_path, capsys):
    model, processor = demo
    answer_question_file(model, processor, question_file, tmp_path / "library.jsonl", question_file.parent,
                         answering=demo_config(), batch_size=8)  # fmt: skip
    answers = tmp_path / "cli.jsonl"
    status = main(["eval", "run", "--model-path", "demo", "--question-file", str(question_file), "--image-folder",
                   str(question_file.parent), "--answers-file", str(answers), "--temperature", "0",
                   "--max_new_tokens", "8", "--batch-size", "4", "--no-progress"])  # fmt: skip
    assert status == 0
    assert texts(answers) == texts(tmp_path / "library.jsonl")
    assert {json.loads(line)["model_id"] for line in answers.read_text().splitlines()} == {"demo"}
    assert "24 answers written" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model-base", "vicuna"], "convert it once with `sqllava convert`"),
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--chunk-idx", "2", "--num-chunks", "2"], "need 0 <= idx < chunks"),
    ],
)
def test_command_line_errors_name_the_fix(question_file, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "run", "--model-path", "demo", "--question-file", str(question_file), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_questions_sharing_an_id_are_told_apart_by_their_prompt(demo, question_file, tmp_path):
    # LLaVA's llava_mme.jsonl: both questions about an image have the image's path as question_id.
    model, processor = demo
    rows = [json.loads(line) for line in question_file.read_text().splitlines()[:4]]
    mme = tmp_path / "llava_mme.jsonl"
    mme.write_text("".join(json.dumps({**row, "question_id": "existence/scene.png"}) + "\n" for row in rows[:2]))
    first = answer_question_file(model, processor, mme, tmp_path / "a.jsonl", question_file.parent,
                                 answering=demo_config())  # fmt: skip
    again = answer_question_file(model, processor, mme, tmp_path / "a.jsonl", question_file.parent,
                                 answering=demo_config())  # fmt: skip
    assert (first.num_answered, again.num_answered, again.num_already_answered) == (2, 0, 2)
    duplicated = tmp_path / "duplicated.jsonl"
    duplicated.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="occurs twice with the same prompt"):
        answer_question_file(model, processor, duplicated, tmp_path / "b.jsonl", question_file.parent)
