"""Prepare offline assets once (called by `make install`): the SmolLM2 GGUF -> safetensors conversion.

OK-VQA's stemmer needs nltk tagger data that no package registry ships; docs/benchmarks.md says how to
install it where a network is available (the OK-VQA run fails at start-up with that hint otherwise).
"""

from __future__ import annotations

import sys


def main() -> int:
    """Prepare the offline assets (SmolLM2 converted once to HF format), print where; 0."""
    from flamingo_eval.models.assets import smollm2_dir

    print(f"SmolLM2 (HF format): {smollm2_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
