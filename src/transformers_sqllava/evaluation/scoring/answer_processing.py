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
"""Answer normalisation of the VQA family: the EvalAI processor and the VQA soft accuracy.

`normalize_answer` is the processor of LLaVA's `llava/eval/m4c_evaluator.py` (`EvalAIAnswerProcessor`, from MMF),
which `convert_vqav2_for_submission.py` and `convert_vizwiz_for_submission.py` apply to every answer before upload and
TextVQA's evaluator applies to predictions and ground truths. `process_punctuation` and `process_digits_and_articles`
are its two last steps, which are also exactly the official VQA evaluation's (`vqaEval.py`, `processPunctuation` and
`processDigitArticle`). Their quirks are kept, since they decide scores:

- the period pattern `(?!<=\\d)(\\.)(?!\\d)` is a look-ahead, not a look-behind: every period not followed by a digit
  goes ("Two." -> "two", "3.5" stays);
- the period substitution passes `re.UNICODE` (32) as its *count*, so at most 32 periods are removed;
- a punctuation mark is deleted when it touches a space (or the text has a digit-comma-digit), else it becomes a space;
- number words up to ten become digits, "a", "an" and "the" are dropped, and apostrophe-less contractions get their
  apostrophe ("dont" -> "don't").
"""

from __future__ import annotations

import re
from collections.abc import Sequence


# The processor's contraction table, `without -> with` apostrophes (including its oddities, e.g. "somebody'd" ->
# "somebodyd"), one `key=value` pair per whitespace-separated item.
_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've
didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't
havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've
I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am
mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at
shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've
someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd
somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've
they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've
we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll
whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll youre=you're
youve=you've
"""
CONTRACTIONS = dict(pair.split("=", 1) for pair in _CONTRACTION_PAIRS.split())
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ("a", "an", "the")
PUNCTUATION = tuple(';/[]"{}()=+\\_-><@`,?!')
# The official patterns, quirks included (see the module docstring).
_PERIOD_NOT_IN_NUMBER = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d)(\,)+(?=\d)")
_OFFICIAL_PERIOD_COUNT = re.UNICODE  # `sub(repl, text, re.UNICODE)` in the original: a count of 32


def process_punctuation(text: str) -> str:
    """The VQA evaluation's punctuation step: marks touching a space are deleted, others become spaces; periods that
    do not precede a digit are deleted (at most 32 of them, as in the original)."""
    output = text
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATION:
        if strip_all or mark + " " in text or " " + mark in text:
            output = output.replace(mark, "")
        else:
            output = output.replace(mark, " ")
    return _PERIOD_NOT_IN_NUMBER.sub("", output, count=_OFFICIAL_PERIOD_COUNT)


def process_digits_and_articles(text: str) -> str:
    """The VQA evaluation's word step: lower-case, number words to digits, articles dropped, contractions fixed."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(answer: str) -> str:
    """
    EvalAI's answer processor (LLaVA's `EvalAIAnswerProcessor`): lower-case, drop `,` and `?`, split `'s`, then
    [`process_punctuation`] and [`process_digits_and_articles`].

    ```python
    >>> normalize_answer("Two.")
    '2'
    >>> normalize_answer("The dog's bone, 3.5 km")
    "dog 's bone 3.5 km"
    ```
    """
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_and_articles(process_punctuation(text))


def soft_accuracy(prediction: str, answers: Sequence[str]) -> float:
    r"""
    The VQA accuracy of one prediction against its human answers: the mean, over each answer left out in turn, of
    `min(1, matches among the others / 3)`. It is both TextVQA's (`_compute_answer_scores`) and the official VQA
    evaluation's per-question score (the latter leaves out one answer record at a time; records differ by
    `answer_id`, so this is the same).

    Args:
        prediction (`str`): The normalised prediction.
        answers (`Sequence[str]`): The normalised human answers (10 for VQAv2, TextVQA and VizWiz).

    Returns:
        `float`: in [0, 1]; 0 when `answers` is empty.
    """
    if not answers:
        return 0.0
    matches = sum(answer == prediction for answer in answers)
    total = 0.0
    for answer in answers:
        others = matches - (answer == prediction)
        total += min(1.0, others / 3)
    return total / len(answers)
