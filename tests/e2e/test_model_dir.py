"""Bring your own checkpoint: an OpenFlamingo-format directory runs with ONE flag (``model.path=DIR``).

The directory is built from the committed parity fixtures (tests/fixtures/parity: an OPT LM, a custom tiny
open_clip ViT described by a model-config JSON, a released-layout checkpoint.pt). Resolution tests call
``resolve_model`` directly (no model is built); the acceptance test runs the real command in a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from flamingo_eval.models.architectures import resolve_model
from flamingo_eval.models.model_dir import cross_attn_layers
from tests.fixtures_builders import PARITY, make_openflamingo_dir


def _resolve(model: str, overrides: list[str]):  # type: ignore[no-untyped-def]
    """What ``flamingo-eval run`` does: compose (which resolves with the command line's keys as explicit)."""
    return compose_config("easyvqa", model, overrides).model


def test_one_flag_runs_an_openflamingo_directory(tmp_path: Path) -> None:
    """ACCEPTANCE: `flamingo-eval run <bench> --model openflamingo model.path=DIR`, nothing else about the model."""
    from flamingo_eval.models.build import build_model
    from flamingo_eval.results.leaderboard import build_leaderboard
    from tests.numerics.test_parity import model_cfg

    d = make_openflamingo_dir(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flamingo_eval", "run", "easyvqa", "--model", "openflamingo",
                           f"model.path={d}", "--shots", "2", "--limit", "3", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert proc.returncode == 0, proc.stderr
    logs = proc.stdout + proc.stderr
    assert "Traceback" not in logs and "initialized randomly" not in logs and "no CLIP weights" not in logs
    rec = json.loads((out / "record.json").read_text())
    assert rec["model"]["name"] == rec["model"]["id"] == "my-flamingo"  # the directory's name, not the config's
    m = rec["config"]["model"]
    assert m["checkpoint"] == str(d / "checkpoint.pt") and m["lm"]["path"] == str(d / "lm")
    assert m["vision"]["options"] == {"config": str(d / "vision" / "config.json"), "pretrained": str(
        d / "vision" / "open_clip.safetensors")}
    assert m["flamingo"]["cross_attn_every_n_layers"] == 2  # not in flamingo.json: read from the checkpoint
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3  # --limit 3, one shot setting
    assert rec["model"]["precision"] == "fp32"  # `auto` on CPU
    # The same weights as the seven explicit overrides a user had to write before (parity config, fp32).
    meta = json.loads((PARITY / "opt" / "expected.json").read_text())
    assert build_model(model_cfg("opt", meta, precision="fp32")).fingerprint() == rec["model"]["fingerprint"]
    assert build_leaderboard([rec]).models == ["my-flamingo"]


def test_model_name_override_names_the_record(tmp_path: Path) -> None:
    d = make_openflamingo_dir(tmp_path)
    assert _resolve("openflamingo", [f"model.path={d}", "model.name=med-flamingo-ft3"]).name == "med-flamingo-ft3"
    assert _resolve("openflamingo", [f"model.path={d}"]).name == "my-flamingo"


def test_command_line_beats_directory_beats_config(tmp_path: Path) -> None:
    d = make_openflamingo_dir(tmp_path)
    other_lm = str(PARITY / "opt" / "lm")
    # A released config's own values (hub LM id, ViT-L-14 `openai`, its name) give way to the directory ...
    m = _resolve("openflamingo-3b", [f"model.path={d}"])
    assert (m.name, m.lm.path, m.vision.options["config"]) == ("my-flamingo", str(d / "lm"), str(d / "vision" /
                                                                                                "config.json"))
    assert m.flamingo["cross_attn_every_n_layers"] == 2 and m.flamingo["num_latents"] == 8  # keys; flamingo.json
    # ... and a command-line override beats the directory (heads x dim_head = 32 either way: the keys allow both).
    m = _resolve("openflamingo", [f"model.path={d}", f"model.lm.path={other_lm}", "model.flamingo.perceiver_heads=4",
                                  "model.flamingo.perceiver_dim_head=8",
                                  "model.vision.options.pretrained=/x/tower.safetensors"])
    assert m.lm.path == other_lm and (m.flamingo["perceiver_heads"], m.flamingo["perceiver_dim_head"]) == (4, 8)
    assert m.vision.options["pretrained"] == "/x/tower.safetensors"
    # Without the command line (programmatic use), values already set are kept; resolving twice changes nothing.
    assert resolve_model(m) == m


def test_cross_attention_layout_is_read_from_any_checkpoint_format(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from flamingo_eval.models.checkpoints import read_checkpoint

    state = read_checkpoint(PARITY / "llama" / "checkpoint.pt")  # every 4th of 4 layers: block before layer 3
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    training = tmp_path / "training.pt"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 2}, training)
    safe = tmp_path / "checkpoint.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    for path in (PARITY / "llama" / "checkpoint.pt", legacy, training, safe):
        cfg = compose_config("easyvqa", "openflamingo", [f"model.checkpoint={path}", "model.flamingo.perceiver_heads=2",
                                                         "model.flamingo.xattn_heads=2"]).model
        assert cfg.flamingo["cross_attn_every_n_layers"] == 4, path
        assert cfg.flamingo["perceiver_depth"] == 2, path  # from the names; the shapes too except in legacy files
        assert cfg.flamingo.get("num_latents") == (None if path == legacy else 8), path
    assert cross_attn_layers(["lang_encoder.gated_cross_attn_layers.5.attn.to_q.weight",
                              "module.lang_encoder.transformer.blocks.2.gated_cross_attn_layer.ff_gate"]) == [2, 5]


def test_given_layout_that_the_keys_contradict_is_one_error(tmp_path: Path) -> None:
    d = make_openflamingo_dir(tmp_path)
    with pytest.raises(UserError, match=r"cross_attn_every_n_layers=4, but checkpoint .* before decoder layers "
                                        r"\[1, 3\], i\.e\. every 2; drop the setting"):
        _resolve("openflamingo", [f"model.path={d}", "model.flamingo.cross_attn_every_n_layers=4"])
    (d / "flamingo.json").write_text(json.dumps({"cross_attn_every_n_layers": 1}))
    with pytest.raises(UserError, match="cross_attn_every_n_layers=1, but"):
        _resolve("openflamingo", [f"model.path={d}"])
    with pytest.raises(UserError, match=r"cross_attn_every_n_layers=1, but"):  # a released config's value too
        _resolve("openflamingo-3b", [f"model.checkpoint={PARITY / 'opt' / 'checkpoint.pt'}"])


def test_custom_open_clip_config_with_any_config(tmp_path: Path) -> None:
    """`model.vision.options.config=FILE` on a released config (no `+`): the tower is the file's architecture,
    identical to registering the file with open_clip under a name (what the parity tests do)."""
    import open_clip
    from PIL import Image

    import flamingo_eval.models.vision  # noqa: F401  (registers the encoders)
    from flamingo_eval.registry import VISION

    vit, weights = PARITY / "vision" / "parity-vit-tiny.json", PARITY / "vision" / "open_clip.safetensors"
    cfg = compose_config("easyvqa", "openflamingo-3b", [f"model.vision.options.config={vit}",
                                                        f"model.vision.options.pretrained={weights}"]).model
    ours = VISION.get(cfg.vision.name)(**cfg.vision.options)
    open_clip.add_model_config(vit)
    registered = VISION.get("open_clip")(model_name="parity-vit-tiny", pretrained=str(weights))
    img = Image.open(PARITY / "images" / "img0.png").convert("RGB")
    px = ours.preprocess(img)
    assert torch.equal(px, registered.preprocess(img))  # same PIL/torchvision ops on the same image
    with torch.no_grad():  # same weights, same input shape and threads; tolerance only for kernel choice
        assert torch.allclose(ours(px[None]), registered(px[None]), atol=1e-6, rtol=0)
    assert (ours.num_tokens, ours.width) == (16, 32) and ours.config()["arch"]["embed_dim"] == 16


@pytest.mark.parametrize(("override", "message"), [
    ("model.flamingo.perceiver_depth=6", r"perceiver_depth=6 \(given on the command line\), but checkpoint .* has 2 "
                                         r"perceiver layers; drop the setting .* or set it to 2"),
    ("model.flamingo.num_latents=64", r"num_latents=64 \(given on the command line\), but .* has 8 perceiver latents"),
    ("model.flamingo.xattn_ff_mult=4", r"xattn_ff_mult=4 .* 64-wide cross-attention feed-forward on width 32; .* 2$"),
    ("model.flamingo.perceiver_dim_head=8", r"perceiver_heads=2 \(from flamingo\.json\) x model\.flamingo\."
                                            r"perceiver_dim_head=8 \(given on the command line\) = 16, but .*32-wide "
                                            r"perceiver attention projections .*; change one of them$"),
])
def test_bridge_shapes_are_read_from_the_checkpoint(tmp_path: Path, override: str, message: str) -> None:
    """Every size the keys fix comes from the checkpoint (no flamingo.json needed for them); a given value the
    shapes contradict is one line naming both. Heads x dim_head is one product: the split needs the heads."""
    d = make_openflamingo_dir(tmp_path, bridge_file=False)
    with pytest.raises(UserError, match=r"32-wide perceiver attention projections .* set "
                                        r"model\.flamingo\.perceiver_heads=N"):
        _resolve("openflamingo", [f"model.path={d}"])
    (d / "flamingo.json").write_text(json.dumps({"perceiver_heads": 2, "xattn_heads": 2}))
    m = _resolve("openflamingo", [f"model.path={d}"])
    meta = json.loads((PARITY / "opt" / "expected.json").read_text())
    assert {k: m.flamingo[k] for k in meta["bridge"]} == meta["bridge"]  # depth 2, 8 latents, 2 x 16, ff 2
    with pytest.raises(UserError, match=message):
        _resolve("openflamingo", [f"model.path={d}", override])
