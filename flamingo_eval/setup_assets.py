"""Prepare offline assets once (called by `make install`): the SmolLM2 safetensors conversion."""

from __future__ import annotations

import sys


def main() -> int:
    from flamingo_eval.models.assets import smollm2_dir

    print(f"SmolLM2 (HF format): {smollm2_dir()}")
    try:
        from flamingo_eval.metrics import okvqa_stem

        ensure = getattr(okvqa_stem, "ensure_nltk_data", None)
        if ensure is not None:
            ensure(download=True)
    except Exception as e:  # noqa: BLE001 - optional data; OK-VQA explains how to install it
        print(f"note: nltk data for OK-VQA not prepared ({e})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
