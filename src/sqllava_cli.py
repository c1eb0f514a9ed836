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
"""The `sqllava` console script's entry point.

`import transformers_sqllava` imports torch and transformers (it registers SQ-LLaVA with the Auto classes), which
takes seconds. A console script named `transformers_sqllava.cli:main` would pay that before `--help` or `--version`
could answer, so the script starts here instead and runs `transformers_sqllava/cli.py` as a module of its own: the
package is imported only when a subcommand runs (or prints its own help).
"""

import importlib.util
import os
import sys


def main() -> int:
    package = importlib.util.find_spec("transformers_sqllava")  # locates the package without running its __init__
    path = os.path.join(package.submodule_search_locations[0], "cli.py")
    spec = importlib.util.spec_from_file_location("transformers_sqllava.cli", path)
    cli = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cli
    spec.loader.exec_module(cli)
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
