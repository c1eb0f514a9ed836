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
"""One scoped log filter for the commands' paths that must import bitsandbytes (or peft, TRL, which import it).

On a CPU with AVX512-BF16, importing bitsandbytes (0.49+) tries to fetch a fused CPU 4-bit kernel from the Hub
(`kernels-community/quantization-bitsandbytes`) and, when the `kernels` package is missing, logs "Failed to load CPU
gemm_4bit_forward from kernels-community ...". That kernel only runs on `Linear4bit` layers whose
`support_avx512bf16_for_cpu` is set, and SQ-LLaVA's `from_pretrained` clears it on every 4-bit load (see
`SQLlavaPreTrainedModel.disable_bnb_cpu_weight_repacking`): nothing this package runs would use the kernel, so the
message asks the user to fix something that does not matter to them. The filter drops that one message, from that one
logger, while the block runs; every other bitsandbytes message, and that one outside the block, is untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNEL_NOTICE_PREFIX = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropKernelNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KERNEL_NOTICE_PREFIX)


@contextmanager
def quiet_bitsandbytes_cpu_kernel_notice() -> Iterator[None]:
    """Drop bitsandbytes' "Failed to load CPU gemm_4bit_forward" notice while the block runs (it is logged once, when
    bitsandbytes is first imported); see the module docstring for why it does not apply here."""
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    notice_filter = _DropKernelNotice()
    logger.addFilter(notice_filter)
    try:
        yield
    finally:
        logger.removeFilter(notice_filter)
