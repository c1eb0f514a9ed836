"""End-to-end training with TRL's `SFTTrainer` on a tiny random SQ-LLaVA and tiny generated LLaVA data, through the
example scripts (`examples/train_stage2.py`, `train_stage1.py`, `train_qlora.py`): the loss falls, a run killed after
a checkpoint resumes with the same losses as an uninterrupted run, QLoRA steps on CPU, and a two-process torchrun."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback
from trl import SFTConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import tiny_setup  # noqa: E402
import train_stage1  # noqa: E402
import train_stage2  # noqa: E402
from train_qlora import load_quantized  # noqa: E402

from transformers_sqllava.training import sft_config_kwargs  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The tiny model is ~100x slower with 2 threads on a loaded 2-core machine (oversubscription).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return {stage: tiny_setup.make_tiny_demo_data(folder / f"stage{stage}", stage=stage, num_samples=8) for stage in (1, 2)}


def training_args(output_dir, stage=2, **overrides) -> SFTConfig:
    kwargs = sft_config_kwargs(
        stage,
        max_steps=4,
        per_device_train_batch_size=2,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to=[],
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return SFTConfig(output_dir=str(output_dir), **kwargs)


def script_args(data, **overrides) -> train_stage2.ScriptArguments:
    json_path, image_folder = data
    return train_stage2.ScriptArguments(dataset_path=str(json_path), image_folder=str(image_folder), **overrides)


def losses(trainer) -> list[tuple[int, float]]:
    return [(log["step"], log["loss"]) for log in trainer.state.log_history if "loss" in log]


def test_stage2_loss_falls_when_overfitting_four_samples(tmp_path, demo_data):
    json_path, image_folder = demo_data[2]
    data = json_path.parent / "four.json"
    data.write_text(json.dumps(json.loads(json_path.read_text())[:4]))
    args = training_args(tmp_path, max_steps=30, per_device_train_batch_size=4, learning_rate=3e-3, warmup_steps=0)
    trainer = train_stage2.main(
        script_args((data, image_folder), projector_learning_rate=3e-3, vision_learning_rate=3e-3), args
    )
    history = [loss for _, loss in losses(trainer)]
    assert len(history) == 30
    # A random tiny model with a frozen LM head (std 0.02) starts at ln(vocab) and can only move so far through LoRA.
    assert sum(history[-5:]) / 5 < history[0] - 0.75, history
    assert sum(history[-5:]) < sum(history[:5]) and min(history[-5:]) < min(history[:5])
    stats = trainer.data_collator.stats
    assert stats.num_vuser_turns > 0 and stats.num_question_tokens > 0 and stats.num_answer_tokens > 0
    last_log = [log for log in trainer.state.log_history if "loss" in log][-1]
    assert last_log["collator/num_question_tokens"] > 0  # the callback logs the question/answer token counts
    assert (tmp_path / "adapter_model.safetensors").exists() and (tmp_path / "processor_config.json").exists()


def test_stage2_groups_batches_by_length_from_the_loaders_length_column(tmp_path, demo_data):
    # The reference's `group_by_modality_length=True`. Trainer's sampler reads the dataset's `length` column; without
    # it, it would look for `input_ids` in the conversational rows and fail.
    from transformers.trainer_pt_utils import LengthGroupedSampler

    args = training_args(tmp_path, max_steps=2, train_sampling_strategy="group_by_length")
    trainer = train_stage2.main(script_args(demo_data[2]), args)
    assert len(losses(trainer)) == 2
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == trainer.train_dataset["length"] and min(sampler.lengths) > 128


class _Crash(Exception):
    pass


class _CrashAtStep(TrainerCallback):
    """'Kills' the run at the end of a step, before it is logged or checkpointed."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Crash(f"killed in step {self.step}")


def test_kill_and_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, demo_data, monkeypatch):
    # sq_ratio 0.5, dropout on: with SQLlavaCollatorCallback the vuser draws are keyed by (args.seed, epoch, sample
    # id), so the resumed run draws the same vuser turns as the uninterrupted one, across the epoch boundary at step 4.
    args = dict(max_steps=5, save_strategy="steps", save_steps=2)
    uninterrupted = train_stage2.main(script_args(demo_data[2]), training_args(tmp_path / "a", **args))

    # The same run, killed in step 3 (after checkpoint-2 was written).
    original_init = train_stage2.SFTTrainer.__init__

    def init_with_crash(self, *a, **kw):
        original_init(self, *a, **kw)
        self.add_callback(_CrashAtStep(3))

    monkeypatch.setattr(train_stage2.SFTTrainer, "__init__", init_with_crash)
    with pytest.raises(_Crash):
        train_stage2.main(script_args(demo_data[2]), training_args(tmp_path / "b", **args))
    monkeypatch.undo()
    checkpoint = tmp_path / "b" / "checkpoint-2"
    assert checkpoint.exists() and not (tmp_path / "b" / "checkpoint-4").exists()

    resumed = train_stage2.main(
        script_args(demo_data[2]), training_args(tmp_path / "b", resume_from_checkpoint=str(checkpoint), **args)
    )
    expected = losses(uninterrupted)
    assert len(expected) == 5
    # Steps 1-2 come from the checkpoint, 3-5 are recomputed. Steps and losses compared apart: pytest >= 9.2 rejects
    # `approx` of nested tuples.
    resumed_losses = losses(resumed)
    assert [step for step, _ in resumed_losses] == [step for step, _ in expected]
    assert [loss for _, loss in resumed_losses] == pytest.approx([loss for _, loss in expected], rel=1e-5)
    for name, parameter in resumed.model.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, dict(uninterrupted.model.named_parameters())[name], msg=name)


def test_stage1_trains_only_the_projector_on_captions(tmp_path, demo_data):
    trainer = train_stage1.main(script_args(demo_data[1]), training_args(tmp_path, stage=1, max_steps=2))
    assert len(losses(trainer)) == 2 and all(loss == loss for _, loss in losses(trainer))
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".multi_modal_projector." in name for name in trainable)
    stats = trainer.data_collator.stats
    assert stats.num_answer_tokens > 0 and stats.num_question_tokens == 0


def test_qlora_steps_on_cpu_through_sft_trainer(tmp_path, demo_data):
    args = training_args(tmp_path, max_steps=2, bf16=True)
    arguments = script_args(demo_data[2], model_name_or_path="tiny")
    model, processor = load_quantized(arguments, args)
    quantized = [name for name, module in model.named_modules() if type(module).__name__ == "Linear4bit"]
    assert quantized and all(".language_model." in name for name in quantized)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora" in n}  # none yet
    assert not lora_before
    trainer = train_stage2.main(arguments, args, model=model, processor=processor)
    assert len(losses(trainer)) == 2 and all(torch.isfinite(torch.tensor(loss)) for _, loss in losses(trainer))
    changed = [
        name for name, p in trainer.model.named_parameters() if "lora_B" in name and p.detach().float().abs().sum() > 0
    ]
    assert any(".language_model." in n for n in changed) and any(".vision_tower." in n for n in changed)


def test_two_process_torchrun(tmp_path, demo_data):
    json_path, image_folder = demo_data[2]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        str(EXAMPLES / "train_stage2.py"), "--model_name_or_path", "tiny",
        "--dataset_path", str(json_path), "--image_folder", str(image_folder), "--output_dir", str(tmp_path),
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--use_cpu", "--bf16", "false",
        "--activation_checkpointing", "false", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    ranks = dict(re.findall(r"\[rank (\d)/2\] steps=2 samples=(\d+)", output))
    assert set(ranks) == {"0", "1"}, output[-3000:]  # both ranks of a world of 2 trained ...
    assert all(int(samples) >= 4 for samples in ranks.values())  # ... on their own share of the batches
    assert (tmp_path / "adapter_model.safetensors").exists()
