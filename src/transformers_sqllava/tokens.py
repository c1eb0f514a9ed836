# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Setting up a vocabulary for SQ-LLaVA: the tokens its prompts need, and embedding rows for them.

This is set-up code, as transformers' LLaVA conversion script is (it adds `<image>` and `<pad>` and resizes the
embeddings): [`SQLlavaProcessor`] itself never changes a tokenizer, so the Hub files stay inference-only. The order is:

```python
>>> add_sqllava_tokens(tokenizer)                      # `<image>`, `<pad>`, `[vusr]` as added special tokens
>>> processor = SQLlavaProcessor(image_processor, tokenizer)
>>> resize_embeddings_for_processor(model, processor)  # rows for them, the mean of the trained rows
```
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from transformers import AddedToken

from .processing_sqllava import NATIVE_VUSER_TOKEN, ORIGINAL_VUSER_MARKER, SQLlavaProcessor


logger = logging.getLogger(__name__)


def add_sqllava_tokens(tokenizer, image_token: str = "<image>", vuser_token: str = NATIVE_VUSER_TOKEN) -> list[str]:
    r"""
    Add the tokens SQ-LLaVA's prompts need to `tokenizer`, in place, as added special tokens: `image_token`, `<pad>`
    (when the tokenizer has no pad token) and a native vuser marker. For Vicuna this gives `<image>` id 32000 and
    `<pad>` 32001, the layout of [`SQLlavaConfig`] and of transformers' LLaVA-1.5 conversion. The plain-text marker
    `"VUSER"` of checkpoints converted from the original release is not added: they learned it as text.

    Args:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The Vicuna (Llama) tokenizer; changed in place.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            The image placeholder.
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual user's role marker.

    Returns:
        `list[str]`: the tokens added (empty if the tokenizer had them all). If any were, the model needs
        [`resize_embeddings_for_processor`].
    """
    added = []
    if _add_special_token(tokenizer, image_token):
        added.append(image_token)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
        added.append("<pad>")
    if vuser_token != ORIGINAL_VUSER_MARKER and _add_special_token(tokenizer, vuser_token):
        added.append(vuser_token)
    return added


def _add_special_token(tokenizer, token: str) -> bool:
    # `normalized=False`: the Llama normaliser would otherwise prepend "▁" inside the token's own match.
    if token in tokenizer.get_vocab():
        return False
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)], special_tokens=True)
    return True


def initialize_token_embeddings(model, vocab_size: int, token_ids: Iterable[int] = ()) -> int:
    r"""
    Grow `model`'s input embeddings and LM head to at least `vocab_size` rows and set every new row, plus the rows of
    `token_ids`, to the mean of the rows before the first of them (the tokens the model was trained on), as
    transformers' LLaVA conversion script initialises added tokens (it adds noise of 1e-5 times the covariance; the
    plain mean keeps the call deterministic). `token_ids` covers tokens that land in existing rows, e.g. LLaVA-1.5
    checkpoints whose vocabulary is padded to a multiple of 64.

    Returns:
        `int`: the embedding size after the call (never shrunk).
    """
    old_size = model.get_input_embeddings().weight.shape[0]
    new_rows = sorted(set(token_ids) | set(range(old_size, vocab_size)))
    if not new_rows:
        return old_size
    trained_rows = min(new_rows)
    means = [
        None if embeddings is None else embeddings.weight.detach()[:trained_rows].mean(dim=0)
        for embeddings in (model.get_input_embeddings(), model.get_output_embeddings())
    ]
    if vocab_size > old_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        for embeddings, mean in zip((model.get_input_embeddings(), model.get_output_embeddings()), means):
            if mean is not None:
                embeddings.weight[new_rows] = mean
    return model.get_input_embeddings().weight.shape[0]


def resize_embeddings_for_processor(model, processor: SQLlavaProcessor, new_tokens: Iterable[str] = ()) -> int:
    r"""
    Give `model` embedding rows for every token of `processor.tokenizer`, after [`add_sqllava_tokens`] added
    `<image>`, `<pad>` or a native vuser token: the one call to make after setting up a processor for an existing
    model. New rows of the input embeddings and of the LM head are the mean of the existing rows (see
    [`initialize_token_embeddings`]). Also checks that the model's `image_token_id` and `image_seq_length` match the
    processor's.

    Args:
        model ([`SQLlavaForConditionalGeneration`] or any model with `resize_token_embeddings`):
            The model; resized in place.
        processor ([`SQLlavaProcessor`]):
            The processor whose tokenizer the model must cover.
        new_tokens (`Iterable[str]`, *optional*):
            Tokens the model has not been trained with whose ids fall inside its existing rows (a padded
            vocabulary): their rows are re-initialised to the mean as well. Rows past the old size always are.

    Returns:
        `int`: the embedding size after the call (unchanged if it already covered the tokenizer; never shrunk).
    """
    config = model.config
    if getattr(config, "image_seq_length", processor.image_seq_length) != processor.image_seq_length:
        raise ValueError(
            f"The processor expands each image into {processor.image_seq_length} tokens but the model expects "
            f"{config.image_seq_length}: build the processor with `image_seq_length={config.image_seq_length}`."
        )
    image_token_id = getattr(config, "image_token_id", None)
    if image_token_id is not None and image_token_id != processor.image_token_id:
        raise ValueError(
            f"The processor's {processor.image_token} has id {processor.image_token_id} but the model's "
            f"`image_token_id` is {image_token_id}: set `model.config.image_token_id = {processor.image_token_id}` "
            "(and `image_token_index`) or use the tokenizer the model was set up with."
        )
    token_ids = [processor.tokenizer.convert_tokens_to_ids(token) for token in new_tokens]
    return initialize_token_embeddings(model, len(processor.tokenizer), token_ids)


def add_vuser_token(model, tokenizer, vuser_token: str = NATIVE_VUSER_TOKEN) -> int:
    r"""
    Give a model that was not trained with the virtual user a native vuser marker: `vuser_token` is added to
    `tokenizer` (see [`add_sqllava_tokens`]) and its input-embedding and LM-head rows are set to the mean of the rows
    before it. The embeddings grow when the token's id is past them and never shrink: LLaVA-1.5 checkpoints pad the
    vocabulary to a multiple of 64, and the token may land in a padding row, which is then initialised too.

    The row is (re)initialised even when the tokenizer already had the token: call this only for a model that has not
    been trained with it.

    Returns:
        `int`: the token's id.
    """
    if vuser_token == ORIGINAL_VUSER_MARKER:
        raise ValueError(
            f"{ORIGINAL_VUSER_MARKER!r} is the plain-text marker of converted checkpoints, not a token to add: pass "
            f"a special marker such as {NATIVE_VUSER_TOKEN!r}."
        )
    _add_special_token(tokenizer, vuser_token)
    token_id = tokenizer.convert_tokens_to_ids(vuser_token)
    initialize_token_embeddings(model, len(tokenizer), [token_id])
    return token_id


__all__ = ["add_sqllava_tokens", "add_vuser_token", "initialize_token_embeddings", "resize_embeddings_for_processor"]
