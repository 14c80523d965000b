"""Prepare offline assets once (called by `make install`): the SmolLM2 GGUF -> safetensors conversion and
the generated easyvideo benchmark (about half a minute with PyAV; ``flamingo_eval/video/easyvideo.py``).

OK-VQA's stemmer needs nltk tagger data that no package registry ships; docs/benchmarks.md says how to
install it where a network is available (the OK-VQA run fails at start-up with that hint otherwise).
"""

from __future__ import annotations

import sys


def main() -> int:
    """Prepare the offline assets (SmolLM2 converted once to HF format), print where; 0."""
    from flamingo_eval.models.assets import smollm2_dir
    from flamingo_eval.video.easyvideo import easyvideo_root

    print(f"SmolLM2 (HF format): {smollm2_dir()}")
    print(f"easyvideo (generated clips): {easyvideo_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
