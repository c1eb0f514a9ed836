"""Shared fixtures: tiny random SQ-LLaVA configs and a Llama-style tokenizer built offline with `tokenizers`.

Nothing here touches the network. The tokenizer reproduces the parts of Vicuna's tokenizer that matter for prompt
fidelity: a normaliser that prepends "▁" and turns spaces into "▁" (applied to every chunk between special tokens,
i.e. the legacy behaviour the reference relies on), byte fallback with `<0xNN>` pieces, and the Llama ids
`<unk>`=0, `<s>`=1, `</s>`=2.
"""


import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from transformers_sqllava import SQLlavaConfig
from transformers_sqllava.demo.tiny import tiny_sqllava_config
from transformers_sqllava.demo.tokenizer import vicuna_style_tokenizer

CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    "Also, the artificial intelligence assistant is a curious virtual user. The virtual user asks complex questions "
    "that are relevant to the content in the image, for example, asking about background knowledge of the objects "
    "in the image, asking to discuss about events happening in the image, etc. Again, do not ask about uncertain "
    "details.",
    "USER: ASSISTANT: VUSER: What is in the image? Describe the image in detail. Can you describe the image in "
    "detail? There is a red circle and a blue square on the left of a green triangle. How many objects are there? "
    "What colour is the circle? Where is the square? Is there a yellow star? Yes. No. Two. Three. One.",
    "The cat sits on the mat next to the dog. A man rides a horse in the park. Answer the question using a single "
    "word or phrase.",
]


def build_llama_style_tokenizer(vocab_size: int = 160) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer shaped like Vicuna/Llama-2's legacy `tokenizer.json`."""
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[])
    trained = Tokenizer(models.BPE())
    trained.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Train within words, as sentencepiece does (split_by_whitespace), so no piece spans a word boundary.
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trained.train_from_iterator(CORPUS, trainer)
    # Llama's layout: <unk>, <s>, </s>, then the 256 byte pieces, then the learned pieces.
    return vicuna_style_tokenizer(trained)


def tiny_config(**overrides) -> SQLlavaConfig:
    """A tiny SQ-LLaVA: 16 px images in 4 px patches (16 image tokens), 6 prototypes, a 2-layer 32-wide LLM.

    The vocabulary holds the 419 pieces of `build_llama_style_tokenizer()` + `<image>` (419) + `<pad>` (420).
    `overrides` are [`tiny_sqllava_config`]'s: `vision_config`/`text_config` entries, or [`SQLlavaConfig`] arguments.
    """
    sizes = {
        "image_size": 16, "patch_size": 4, "vision_hidden_size": 32, "vision_intermediate_size": 64,
        "vision_layers": 3, "text_hidden_size": 32, "text_intermediate_size": 64, "text_layers": 2,
        "text_key_value_heads": 2, "max_position_embeddings": 256, "num_prototypes": 6,
    }  # fmt: skip
    vocabulary = {"vocab_size": 421, "image_token_index": 419, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    return tiny_sqllava_config(**{**sizes, **vocabulary, **overrides})


@pytest.fixture
def config() -> SQLlavaConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def llama_tokenizer() -> PreTrainedTokenizerFast:
    return build_llama_style_tokenizer()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny_processor(vuser_token: str = "VUSER", **kwargs):
    """`SQLlavaProcessor` for `tiny_config()`: the Llama-style tokenizer (+ `<image>` 419, `<pad>` 420) and 16 px images.

    With the default plain-text marker "VUSER" (a converted checkpoint) the vocabulary matches `tiny_config()`'s 421;
    `vuser_token="[vusr]"` adds a 422nd token (see `resize_embeddings_for_processor`).
    """
    from transformers_sqllava import SQLlavaImageProcessor, SQLlavaProcessor, add_sqllava_tokens

    image_processor = SQLlavaImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    tokenizer = build_llama_style_tokenizer()
    add_sqllava_tokens(tokenizer, vuser_token=vuser_token)
    return SQLlavaProcessor(image_processor, tokenizer, image_seq_length=16, vuser_token=vuser_token, **kwargs)


@pytest.fixture(scope="session")
def processor():
    return tiny_processor()
