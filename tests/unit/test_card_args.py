"""Start-up validation of cards: every card x prompt family x model config composes, and a typo in any
nested argument (adapter_args, metric.args), a precision, engine, device or sampler name fails in one
line naming the key, fast and without importing torch."""

from __future__ import annotations

import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flamingo_eval.config import ENGINES, PRECISIONS, Config
from flamingo_eval.config_load import available, cards_root, validate
from flamingo_eval.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@cache
def sections() -> dict[str, dict[str, dict]]:
    """Each benchmark card, prompt family and model config composed once by Hydra (model configs inherit
    through defaults lists); the groups do not interact in composition, only in validation."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore

    from flamingo_eval.config import PACKAGE_DIR

    ConfigStore.instance().store(name="flamingo_eval_schema", node=Config)
    out: dict[str, dict[str, dict]] = {"benchmarks": {}, "prompts": {}, "model": {}}
    with initialize_config_dir(config_dir=str(PACKAGE_DIR / "conf"), version_base=None):
        for group in out:
            for name in available(group):
                raw = compose("config", overrides=[f"hydra.searchpath=[file://{cards_root()}]", f"{group}={name}"])
                out[group][name] = OmegaConf.to_container(raw, resolve=True)[group]  # type: ignore[index]
    return out


def config(bench: str = "okvqa", family: str = "openflamingo", mdl: str = "mini", edits: dict | None = None) -> dict:
    s = sections()
    data = {"benchmarks": s["benchmarks"][bench], "prompts": s["prompts"][family], "model": s["model"][mdl]}
    return OmegaConf.to_container(OmegaConf.merge(data, edits or {}))  # type: ignore[return-value]


def test_every_card_composes_with_every_prompt_family_and_model():
    """Every card x family is validated together (templates, extractors, adapter and metric arguments are
    checked across the two); the model section's checks read the model section only, so each model config
    is validated once, with the default card and family (the full product, 198 validations, takes ~70 s)."""
    s = sections()
    assert len(s["benchmarks"]) >= 11 and len(s["prompts"]) >= 2 and len(s["model"]) >= 9
    for bench in s["benchmarks"]:
        for family in s["prompts"]:
            assert validate(config(bench, family)).benchmarks.id == bench, (bench, family)
    for name in s["model"]:
        assert validate(config(mdl=name)).model.name, name


@pytest.mark.parametrize("edits,needle", [
    ({"benchmarks": {"adapter_args": {"imag_pattern": "x"}}},
     "benchmarks.adapter_args.imag_pattern: unknown argument; adapter 'vqa' takes image_pattern, split_names"),
    ({"benchmarks": {"adapter_args": {"image_pattern": [1]}}}, "benchmarks.adapter_args.image_pattern: "),
    ({"benchmarks": {"metric": {"args": {"varient": "official"}}}},
     "benchmarks.metric.args.varient: unknown argument; metric 'vqa_accuracy' takes variant, stem"),
    ({"benchmarks": {"metric": {"args": {"stem": "maybe"}}}}, "benchmarks.metric.args.stem: "),
    ({"benchmarks": {"adapter": "vqq"}}, "benchmarks.adapter: unknown adapter 'vqq'; available: captions"),
    ({"benchmarks": {"metric": {"name": "vqa_acc"}}}, "benchmarks.metric.name: unknown metric 'vqa_acc'"),
    ({"model": {"precision": "fp8"}}, "model.precision must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    ({"model": {"engine": "fastest"}}, "model.engine must be one of fast, reference, got 'fastest'"),
    ({"model": {"device": "gpu"}}, "model.device must be auto, cpu, mps, cuda or cuda:N, got 'gpu'"),
    ({"run": {"sampler": "rics"}}, "run.sampler must be one of class_balanced, fixed, random, rices, got 'rics'"),
    ({"benchmarks": {"mode": "ranking"}}, "benchmark okvqa: mode must be one of generate, rank, got 'ranking'"),
], ids=["adapter-key", "adapter-type", "metric-key", "metric-type", "adapter", "metric", "precision", "engine",
        "device", "sampler", "mode"])
def test_a_typo_is_one_line_naming_the_key(edits, needle):
    with pytest.raises(UserError) as e:
        validate(config(edits=edits))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("bench,edits,needle", [
    ("imagenet", {"benchmarks": {"adapter_args": {"images_per_class": "ten"}}},
     "benchmarks.adapter_args.images_per_class"),
    ("imagenet", {"benchmarks": {"metric": {"args": {"k": ["a"]}}}}, "benchmarks.metric.args.k[0]"),
    ("coco", {"benchmarks": {"adapter_args": {"id_feld": "x"}}}, "adapter 'captions' takes formats, splits, id_field"),
    ("visdial", {"benchmarks": {"adapter_args": {"history_fmt": "x"}}}, "benchmarks.adapter_args.history_fmt"),
    ("hateful_memes", {"benchmarks": {"adapter_args": {"root": "x"}}}, "adapter 'hateful_memes' takes no arguments"),
    ("hateful_memes", {"benchmarks": {"metric": {"args": {"positiv": 1}}}}, "metric 'roc_auc' takes positive"),
])
def test_typos_in_other_adapters_and_metrics(bench, edits, needle):
    with pytest.raises(UserError) as e:
        validate(config(bench, edits=edits))
    assert needle in str(e.value), str(e.value)


def test_a_typo_fails_from_the_cli_fast_and_without_torch(tmp_path: Path):
    """The acceptance check: < 2 s from the command line, one stderr line, exit 2, torch never imported."""
    code = ("import sys, time; t = time.perf_counter(); from flamingo_eval.cli import main; "
            "rc = main(['run', 'okvqa', '+benchmarks.adapter_args.imag_pattern=x', '--output', sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules, time.perf_counter() - t)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    wall = time.perf_counter() - t0
    rc, torch_loaded, seconds = done.stdout.split()
    assert (rc, torch_loaded) == ("2", "False"), done.stderr
    err = done.stderr.strip()
    assert "\n" not in err and "benchmarks.adapter_args.imag_pattern" in err, err
    assert float(seconds) < 2.0 or wall < 4.0, (seconds, wall)  # loaded CI machines: the process as a whole
    assert not (tmp_path / "out").exists()  # nothing written: it failed before the run directory


def test_name_lists_agree_with_the_model_code():
    from flamingo_eval.models.build import DTYPES

    assert set(DTYPES) | {"auto"} == set(PRECISIONS) and ENGINES == ("fast", "reference")
