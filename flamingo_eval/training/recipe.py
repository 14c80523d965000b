"""The recipe of a bridge training run (``tools/train_mini.py`` turns every field into a flag)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """What ``train`` does; the defaults produce the shipped ``mini`` bridge."""

    model: str = "mini"
    """Model config whose bridge is trained (its checkpoint is ignored: the bridge starts fresh)."""
    seed: int = 0
    val_images: int = 400
    """Train-split images held out (with all their questions) for validation."""
    train_images: int | None = 2000
    """Cap on the images training draws from (None: all the others); small in tests."""
    sequences: int = 2000
    """Distinct training text sequences (their lower-layer states are cached)."""
    val_sequences: int = 60
    max_chunks: int = 3
    text_demo_fraction: float = 0.2
    """Share of sequences opened by ``text_demos`` text-only demos (the evaluation's 0-shot prompt)."""
    text_demos: int = 2
    yes_no_keep: float = 0.6
    """Share of the train split's yes/no questions the sequences draw from (every colour and shape question is
    kept). easy-VQA's yes/no answers mostly follow from the question text, so they teach little about the image
    while they are 71% of the chunks. Measured with the full recipe (easy-VQA demo subset, 4 shots, 2 trials):
    0.15 -> 84.75, 0.35 -> 86.0, 0.6 -> 88.0 (colour questions 91.7%, yes/no 84.9%)."""
    balanced_share: float = 0.0
    """Share of the training sequences built with balanced answers (as ``balance_answers``), after the natural
    ones. With ``init_from`` this fine-tunes a bridge that already reads colour and shape to read yes/no
    questions from the image too (docs/training.md, "Fine-tuning the shipped bridge"); from a fresh bridge,
    balanced answers taught nothing."""
    init_from: str | None = None
    """A bridge file (``.safetensors``, e.g. the shipped one) to start from instead of a fresh bridge; its token
    rows come with it (then ``row_steps=0`` keeps them)."""
    balance_answers: bool = False
    """Each image chunk's answer drawn uniformly among its question's answers (``data.build_sequences``): the
    question text then predicts nothing, so the bridge can only lower the loss by reading the image."""
    row_steps: int = 10
    """Phase 1: steps training the two token rows through the whole frozen LM (the bridge is still 0)."""
    row_lr: float = 1e-2
    steps: int = 1200
    """Phase 2: steps training the bridge over the cached lower-layer states."""
    batch_size: int = 16
    lr: float = 3e-3
    gate_lr: float = 3e-3
    warmup: int = 50
    init_gate: float = 1.0
    """Start value of every tanh gate. The blocks' output projections start at zero (``fresh_bridge``), so the
    model still equals the text-only LM at step 0 while the gradient reaches the projections at once."""
    latent_init_scale: float = 0.02
    """The resampler's learned latents start at this scale (``torch.randn`` times it): its output is then
    mostly what it read from the image, not its own latents."""
    freeze_resampler_attention: bool = True
    """Keep the resampler's query/key/value projections at their random start. Trained, they learn within
    ~10 steps to attend to the latents themselves (an image-free answer prior) and the gradient to the image
    features vanishes; frozen, the latents stay a random view of the image that the rest learns to read."""
    train_resampler_ff: bool = False
    """Train the resampler's feed-forward. Off: its output projection starts at zero and stays frozen, so the
    resampler is attention only. Trained, its output grew to ~80x the attention's (norm 5,766 vs 72) and drowned
    the colour the attention carries (a linear probe reads colour 90% from the attention output, 57% from the
    resampler's output), and the bridge answered 15% of colour questions."""
    eval_every: int = 400
    feature_batch: int = 64
    threads: int = 1
    """torch CPU threads while training (fixed, so a rerun does the same float operations). One: flushing
    subnormal floats to zero (``train``) is a per-thread CPU flag that torch's worker threads do not get, and a
    second thread computing with subnormals made steps ~15x slower (measured: 0.4 s -> 6 s per step)."""
    feature_cache: str | None = None
    """Directory keeping the vision features between runs (None: recompute, as a cold run measures)."""
