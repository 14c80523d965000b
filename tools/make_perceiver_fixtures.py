"""Build the multi-frame perceiver parity fixture (tests/fixtures/perceiver/) with OpenFlamingo's resampler.

Needs open-flamingo 2.0.1 with einops / einops-exts in a throwaway directory (never a dependency of the
package or of the tests):

    .venv/bin/pip install --no-deps --target .cache/openflamingo-ref open-flamingo==2.0.1 einops einops-exts
    PYTHONPATH=.cache/openflamingo-ref .venv/bin/python -m tools.make_perceiver_fixtures

One seeded ``open_flamingo.src.helpers.PerceiverResampler(max_num_frames=8)`` (small: dim 32, depth 2) is
saved as ``weights.safetensors``; its ``frame_embs`` are removed for the variant without per-frame embeddings
(the released OpenFlamingo layout). For F in {1, 4, 8} and both variants, a seeded input (b=2, T=2, F, v=4, D)
goes through the reference ``forward`` (which adds ``frame_embs[:F]`` and flattens F*v tokens);
``expected.safetensors`` holds the inputs ``x_F<F>`` and outputs ``y_F<F>_<with|without>`` (b, T, N, D).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "perceiver"
CONFIG = {"dim": 32, "depth": 2, "dim_head": 16, "heads": 2, "num_latents": 8, "ff_mult": 2, "max_num_frames": 8}
FRAMES = (1, 4, 8)
SHAPE = {"b": 2, "T": 2, "v": 4}


def main() -> None:
    from open_flamingo.src.helpers import PerceiverResampler
    from safetensors.torch import save_file

    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ref = PerceiverResampler(**CONFIG).eval()
    with torch.no_grad():  # non-trivial norms so every parameter matters in the comparison
        for p in ref.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    weights = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(weights, str(OUT / "weights.safetensors"))
    without = PerceiverResampler(**{**CONFIG, "max_num_frames": None}).eval()
    without.load_state_dict({k: v for k, v in weights.items() if k != "frame_embs"}, strict=True)
    tensors: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(1)
    for frames in FRAMES:
        x = torch.randn(SHAPE["b"], SHAPE["T"], frames, SHAPE["v"], CONFIG["dim"], generator=g)
        tensors[f"x_F{frames}"] = x
        with torch.no_grad():
            tensors[f"y_F{frames}_with"] = ref(x)
            tensors[f"y_F{frames}_without"] = without(x)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / "expected.safetensors"))
    meta = {"config": CONFIG, "frames": list(FRAMES), "shape": SHAPE, "reference": "open-flamingo 2.0.1",
            "max_abs_output": max(float(v.abs().max()) for k, v in tensors.items() if k.startswith("y_"))}
    (OUT / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    gap = (tensors["y_F8_with"] - tensors["y_F8_without"]).abs().max().item()
    print(f"wrote {OUT}: F in {FRAMES}; frame_embs change the F=8 output by up to {gap:.3f}")


if __name__ == "__main__":
    main()
