"""A model directory as OpenFlamingo's evaluation flags take it: the checkpoint, ``lm/``, and the vision tower
as a weights file plus its open_clip config JSON side by side at the top (not in ``vision/``).

Built from the committed parity fixtures (tests/fixtures/parity). The acceptance test runs the real command in
a process; the others resolve the directory (``compose_config``: no model is built, no torch needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from tests.fixtures_builders import PARITY


def _flags_layout(root: Path, config: bool = True) -> Path:
    """DIR/OF-tiny.pt, DIR/lm/, DIR/vit-tiny.safetensors (+ DIR/parity-vit-tiny.json), DIR/flamingo.json holding
    only what the weights cannot say (the head counts: heads x dim_head is one product in the keys)."""
    d = root / "of-flags"
    d.mkdir()
    shutil.copy(PARITY / "opt" / "checkpoint.pt", d / "OF-tiny.pt")
    shutil.copytree(PARITY / "opt" / "lm", d / "lm")
    shutil.copy(PARITY / "vision" / "open_clip.safetensors", d / "vit-tiny.safetensors")
    if config:
        shutil.copy(PARITY / "vision" / "parity-vit-tiny.json", d / "parity-vit-tiny.json")
    (d / "flamingo.json").write_text(json.dumps({"perceiver_heads": 2, "xattn_heads": 2}))
    return d


def test_openflamingo_eval_flags_layout_runs_with_one_flag(tmp_path: Path) -> None:
    """ACCEPTANCE: only `--model openflamingo model.path=DIR`; fp32 on CPU by default; the record names the
    config file that defines the tower, not ViT-L-14."""
    from flamingo_eval.models.build import build_model
    from tests.numerics.test_parity import model_cfg

    d = _flags_layout(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flamingo_eval", "run", "easyvqa", "--model", "openflamingo",
                           f"model.path={d}", "--shots", "2", "--limit", "2", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((out / "record.json").read_text())
    m = rec["config"]["model"]
    assert rec["model"]["precision"] == "fp32" and m["checkpoint"] == str(d / "OF-tiny.pt")  # auto on CPU
    assert m["vision"]["options"] == {"config": str(d / "parity-vit-tiny.json"),
                                      "pretrained": str(d / "vit-tiny.safetensors")}  # no stale model_name
    meta = json.loads((PARITY / "opt" / "expected.json").read_text())
    assert {k: m["flamingo"][k] for k in meta["bridge"]} == meta["bridge"]  # depth 2, 8 latents: from the keys
    assert build_model(model_cfg("opt", meta)).fingerprint() == rec["model"]["fingerprint"]


def test_tower_weights_without_their_config_name_the_config_to_pass(tmp_path: Path) -> None:
    d = _flags_layout(tmp_path, config=False)
    with pytest.raises(UserError) as err:
        compose_config("easyvqa", "openflamingo", [f"model.path={d}"])
    text = str(err.value)
    assert "\n" not in text and "do not fit open_clip's ViT-L-14 (width 1024, 24 layers" in text
    assert "(width 32, 2 layers, patch 8, 32 px)" in text and "model.vision.options.config=FILE" in text


def _sparse_vit_b32(path: Path) -> None:
    """A safetensors file with ViT-B-32's visual shapes (data left sparse: only the header is ever read)."""
    shapes = {"visual.conv1.weight": [768, 3, 32, 32], "visual.positional_embedding": [50, 768],
              **{f"visual.transformer.resblocks.{i}.ln_1.weight": [768] for i in range(12)}}
    header, offset = {}, 0
    for k, shape in shapes.items():
        n = 4
        for s in shape:
            n *= s
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        f.truncate(8 + len(blob) + offset)


def test_weights_of_a_builtin_tower_name_it(tmp_path: Path) -> None:
    d = _flags_layout(tmp_path, config=False)
    _sparse_vit_b32(d / "vit-tiny.safetensors")
    with pytest.raises(UserError, match=r"\(width 768, 12 layers, patch 32, 224 px\) do not fit open_clip's ViT-L-14 "
                                        r".*they fit open_clip's ViT-B-32.*: pass model\.vision\.options\.model_name="
                                        r"ViT-B-32$"):
        compose_config("easyvqa", "openflamingo", [f"model.path={d}"])
    assert compose_config("easyvqa", "openflamingo", [f"model.path={d}", "model.vision.options.model_name=ViT-B-32"])


def test_hub_layout_in_a_subdirectory_and_a_custom_config_replaces_model_name(tmp_path: Path) -> None:
    d = _flags_layout(tmp_path, config=False)
    hub = d / "open_clip"
    hub.mkdir()
    arch = json.loads((PARITY / "vision" / "parity-vit-tiny.json").read_text())
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": arch, "preprocess_cfg": {}}))
    (d / "vit-tiny.safetensors").rename(hub / "open_clip_model.safetensors")
    m = compose_config("easyvqa", "openflamingo", [f"model.path={d}"]).model
    assert m.vision.options == {"config": str(hub / "open_clip_config.json"),
                                "pretrained": str(hub / "open_clip_model.safetensors")}
    # A config file given on the command line of a released config: its ViT-L-14 name is not kept beside it.
    m = compose_config("easyvqa", "openflamingo-3b", [
        f"model.vision.options.config={PARITY / 'vision' / 'parity-vit-tiny.json'}",
        f"model.vision.options.pretrained={PARITY / 'vision' / 'open_clip.safetensors'}"]).model
    assert "model_name" not in m.vision.options


def test_a_mismatch_the_shapes_check_cannot_see_is_still_one_line(tmp_path: Path) -> None:
    """An MLP ratio is not among the sizes compared before loading: the loader's size mismatches become one line."""
    import flamingo_eval.models.vision  # noqa: F401  (registers the encoders)
    from flamingo_eval.registry import VISION

    arch = json.loads((PARITY / "vision" / "parity-vit-tiny.json").read_text())
    arch["vision_cfg"]["mlp_ratio"] = 4
    (tmp_path / "wide-mlp.json").write_text(json.dumps(arch))
    with pytest.raises(UserError) as err:
        VISION.get("open_clip")(config=str(tmp_path / "wide-mlp.json"),
                                pretrained=str(PARITY / "vision" / "open_clip.safetensors"))
    text = str(err.value)
    assert "\n" not in text and "do not fit this architecture (6 tensors of another shape, e.g. size mismatch" in text


def test_of_several_configs_the_one_the_weights_fit_is_taken(tmp_path: Path) -> None:
    d = _flags_layout(tmp_path)
    other = json.loads((PARITY / "vision" / "parity-vit-tiny.json").read_text())
    other["vision_cfg"]["layers"] = 3
    (d / "a-deeper-vit.json").write_text(json.dumps(other))  # sorts first; its depth does not fit the weights
    m = compose_config("easyvqa", "openflamingo", [f"model.path={d}"]).model
    assert m.vision.options["config"] == str(d / "parity-vit-tiny.json")
    shutil.copy(d / "parity-vit-tiny.json", d / "same-vit.json")  # two that fit: the user must choose
    with pytest.raises(UserError, match=r"holds several open_clip configs \(parity-vit-tiny\.json, same-vit\.json\)"):
        compose_config("easyvqa", "openflamingo", [f"model.path={d}"])
