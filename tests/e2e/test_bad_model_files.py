"""Bad model files: each is ONE line that names the file, says what it is and how to fix it (exit code 2).

Checkpoints, LM directories, open_clip config JSON files, vision weights and the model directory itself, given
through the one-flag command (``--model openflamingo model.path=DIR``, see test_model_dir.py). File problems
are found from the files' first bytes before any model loads; the rest when that part is built.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from flamingo_eval.cli import main
from flamingo_eval.errors import UserError
from flamingo_eval.models.weight_files import read_state_file
from tests.fixtures_builders import PARITY, make_openflamingo_dir

LFS = ("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5"
       "e2ca24d17e2393\nsize 5327296016\n")
HTML = "<!DOCTYPE html>\n<html><head><title>Sign in - Hugging Face</title></head><body>...</body></html>\n"


def run(capsys: pytest.CaptureFixture[str], d: Path, *overrides: str) -> str:
    """Run the one-flag command on ``d``; it must exit 2 with exactly one line on stderr (returned)."""
    capsys.readouterr()
    rc = main(["run", "easyvqa", "--model", "openflamingo", f"model.path={d}", "--shots", "0", "--limit", "2",
               "--output", str(d.parent / "out"), *overrides])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def d(tmp_path: Path) -> Path:
    return make_openflamingo_dir(tmp_path)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


def _broken(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "gone.pt")


def _as_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()
    torch.save({}, path / "checkpoint.pt")


# (name, how the checkpoint file is spoiled, what the one line must say)
CHECKPOINT_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("lfs_pointer", lambda p: p.write_text(LFS), "is a git-lfs pointer, not the weights: run `git lfs pull`"),
    ("html_page", lambda p: p.write_text(HTML), "is an HTML or XML page, not weights: the download saved a web page"),
    ("text_file", lambda p: p.write_text("see https://example.org/weights\n"), "is a text file ('see https://"),
    ("empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("truncated_zip", _truncate, "is a damaged or truncated torch.save file"),
    ("directory", _as_dir, "is a directory, not a file; pass the file inside it (model.checkpoint="),
    ("symlink_loop", _loop, "is a symlink loop"),
    ("broken_symlink", _broken, "is a broken symlink (to "),
    ("plain_pickle_data", lambda p: p.write_bytes(pickle.dumps({"epoch": 3, "lr": [0.1]}, protocol=4)),
     "is a plain Python pickle of data without tensors (pickle.dump, not torch.save)"),
    ("plain_pickle_tensors", lambda p: p.write_bytes(pickle.dumps({"w": torch.zeros(2)}, protocol=4)),
     "is a plain Python pickle (pickle.dump, not torch.save) that imports torch."),
]


@pytest.mark.parametrize("name,spoil,needle", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_bad_checkpoint_file(d: Path, capsys: pytest.CaptureFixture[str], name: str, spoil: Callable[[Path], object],
                             needle: str) -> None:
    spoil(d / "checkpoint.pt")
    err = run(capsys, d)
    assert needle in err and str(d / "checkpoint.pt") in err, err


@pytest.mark.parametrize("damage,needle", [
    ("garbage", "is not a valid safetensors file (header length"),
    ("truncated", "is not a valid safetensors file (its tensors need"),
    ("bad_header", "is not a valid safetensors file (its header is not valid JSON)"),
])
def test_corrupt_safetensors_checkpoint(d: Path, capsys: pytest.CaptureFixture[str], damage: str, needle: str) -> None:
    from safetensors.torch import save_file

    from flamingo_eval.models.checkpoints import read_checkpoint

    path = d / "checkpoint.safetensors"
    save_file({k: v.contiguous() for k, v in read_checkpoint(d / "checkpoint.pt").items()}, str(path))
    (d / "checkpoint.pt").unlink()
    data = path.read_bytes()
    path.write_bytes({"garbage": os.urandom(64) + b"\xff" * 8, "truncated": data[:-100],
                      "bad_header": data[:8] + b"{not json" + data[17:]}[damage])
    err = run(capsys, d)
    assert needle in err and str(path) in err and "download or save it again" in err, err


def test_plain_pickle_leaks_no_warnings(tmp_path: Path) -> None:
    """A pickle-protocol-4 file made torch print two UserWarning lines before the error; none now (any warning
    raised while reading is recorded here, whatever pytest's own warning capture does)."""
    plain, legacy, legacy4 = tmp_path / "plain.pkl", tmp_path / "legacy.pt", tmp_path / "legacy4.pt"
    plain.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    torch.save({"a": torch.ones(2)}, legacy4, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="plain Python pickle"):
            read_state_file(plain)
        with pytest.raises(UserError, match="saved with a pickle protocol torch's weights-only reader does not"):
            read_state_file(legacy4)
        assert torch.equal(read_state_file(legacy)["a"], torch.ones(2))  # type: ignore[index]
    assert not caught, [str(w.message) for w in caught]


def _lm_config(d: Path, edit: Callable[[dict], object]) -> None:
    cfg = json.loads((d / "lm" / "config.json").read_text())
    edit(cfg)
    (d / "lm" / "config.json").write_text(json.dumps(cfg))


LM_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("no_lm_dir", lambda d: shutil.rmtree(d / "lm"), "has no lm/ directory (the language model as a Hugging Face"),
    ("no_config", lambda d: (d / "lm" / "config.json").unlink(), "lm has no config.json (expected a Hugging Face"),
    ("malformed_config", lambda d: (d / "lm" / "config.json").write_text('{"model_type": "opt",'),
     "config.json is not valid JSON"),
    ("lfs_config", lambda d: (d / "lm" / "config.json").write_text(LFS), "config.json is a git-lfs pointer"),
    ("no_model_type", lambda d: _lm_config(d, lambda c: c.pop("model_type")), "config.json: no model_type field"),
    ("missing_field", lambda d: _lm_config(d, lambda c: c.pop("hidden_size")),
     "config.json does not describe a opt LM (missing field(s) ['hidden_size'])"),
    ("corrupt_weights", lambda d: _truncate(d / "lm" / "model.safetensors"),
     "lm/model.safetensors is not a valid safetensors file"),
    ("wrong_keys", lambda d: shutil.copy(PARITY / "llama" / "lm" / "model.safetensors", d / "lm"),
     "weights do not match the opt decoder; missing:"),
]


@pytest.mark.parametrize("name,spoil,needle", LM_CASES, ids=[c[0] for c in LM_CASES])
def test_bad_lm_directory(d: Path, capsys: pytest.CaptureFixture[str], name: str, spoil: Callable[[Path], object],
                          needle: str) -> None:
    spoil(d)
    err = run(capsys, d)
    assert needle in err and str(d) in err, err


def test_missing_lm_path(d: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(capsys, d, f"model.lm.path={d / 'nope'}")
    assert f"LM directory {d / 'nope'} does not exist; pass model.lm.path=DIR" in err


def _vision_config(d: Path, edit: Callable[[dict], object]) -> None:
    cfg = json.loads((d / "vision" / "config.json").read_text())
    edit(cfg)
    (d / "vision" / "config.json").write_text(json.dumps(cfg))


VISION_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("malformed", lambda d: (d / "vision" / "config.json").write_text("{embed_dim: 16}"),
     "config.json is not valid JSON"),
    ("not_an_object", lambda d: (d / "vision" / "config.json").write_text("[16]"), "holds a JSON list"),
    ("no_vision_cfg", lambda d: _vision_config(d, lambda c: c.pop("vision_cfg")), "config.json has no vision_cfg"),
    ("unknown_field", lambda d: _vision_config(d, lambda c: c["vision_cfg"].update(patchsize=8)),
     "unknown vision_cfg field(s) ['patchsize']; known:"),
    ("bad_value", lambda d: _vision_config(d, lambda c: c["vision_cfg"].update(width="wide")),
     "open_clip cannot build the model of"),
    ("other_architecture", lambda d: _vision_config(d, lambda c: c["vision_cfg"].update(layers=3)),
     "(width 32, 2 layers, patch 8, 32 px) do not fit the open_clip config"),
    ("no_weights", lambda d: (d / "vision" / "open_clip.safetensors").unlink(),
     "vision has config.json but no weights file"),
    ("corrupt_weights", lambda d: (d / "vision" / "open_clip.safetensors").write_text(HTML),
     "open_clip.safetensors is an HTML or XML page"),
]


@pytest.mark.parametrize("name,spoil,needle", VISION_CASES, ids=[c[0] for c in VISION_CASES])
def test_bad_open_clip_config_or_weights(d: Path, capsys: pytest.CaptureFixture[str], name: str,
                                         spoil: Callable[[Path], object], needle: str) -> None:
    spoil(d)
    err = run(capsys, d)
    assert needle in err and str(d / "vision") in err, err


def test_missing_open_clip_config(d: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run(capsys, d, f"model.vision.options.config={d / 'nope.json'}")
    assert f"open_clip config {d / 'nope.json'} does not exist; pass model.vision.options.config=FILE" in err


DIR_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("no_checkpoint", lambda d: (d / "checkpoint.pt").unlink(), "has no checkpoint file (checkpoint.pt or "),
    ("two_candidates", lambda d: [(d / "checkpoint.pt").rename(d / "a.pt"), shutil.copy(d / "a.pt", d / "b.pt")],
     "holds several checkpoint candidates (a.pt, b.pt); name it checkpoint.pt or pass model.checkpoint=FILE"),
    ("bridge_not_json", lambda d: (d / "flamingo.json").write_text("depth: 2"), "flamingo.json is not valid JSON"),
    ("bridge_unknown_key",  # with the head counts the tiny fixture's shapes need (heads x dim_head = 32)
     lambda d: (d / "flamingo.json").write_text('{"perceiver_deep": 2, "perceiver_heads": 2, "xattn_heads": 2}'),
     "unknown flamingo options ['perceiver_deep'] (model.flamingo.* or the model directory's flamingo.json)"),
    ("no_xattn_keys", lambda d: torch.save({"perceiver.latents": torch.zeros(8, 32)}, d / "checkpoint.pt"),
     "has no gated cross-attention tensors"),
]


@pytest.mark.parametrize("name,spoil,needle", DIR_CASES, ids=[c[0] for c in DIR_CASES])
def test_bad_model_directory(d: Path, capsys: pytest.CaptureFixture[str], name: str, spoil: Callable[[Path], object],
                             needle: str) -> None:
    spoil(d)
    assert needle in run(capsys, d)


def test_model_path_missing_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"model.path {tmp_path / 'nope'} does not exist" in run(capsys, tmp_path / "nope")
    (tmp_path / "ckpt.pt").write_bytes(b"x")
    assert "is a file, not a directory: pass the directory holding checkpoint.pt" in run(capsys, tmp_path / "ckpt.pt")
