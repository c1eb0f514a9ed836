"""What the benchmark scripts share: the machine record and writing a report (imported as a sibling script module)."""

import datetime
import hashlib
import json
import platform
import re
from pathlib import Path

import torch

from transformers_sqllava import modeling_sqllava


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        # Which extractor was measured: the hash of the modeling file that was imported.
        "modeling_sqllava_sha256": hashlib.sha256(Path(modeling_sqllava.__file__).read_bytes()).hexdigest()[:16],
    }


def write_report(output_dir: Path, stem: str, report: dict, table: str) -> None:
    """`<stem>.json` (every sample, the machine, the checks) and `<stem>.md` (the table) in `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / f"{stem}.md").write_text(table)
    print(f"Wrote {output_dir / stem}.json and .md")
