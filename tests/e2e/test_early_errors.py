"""Everything checkable without torch is checked before torch is imported, and each problem is one line.

Each case runs the real CLI in a fresh process and reports whether ``torch`` was in ``sys.modules`` when the
error came (robust on a loaded machine: no timing is asserted; docs/performance.md has measured times).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_eval.errors import UserError
from tests.fixtures_builders import make_openflamingo_dir

PROBE = ("import sys\nfrom flamingo_eval.cli import main\nrc = main(sys.argv[1:])\n"
         "print(f'RC={rc} TORCH={\"torch\" in sys.modules}')\n")


def _cli(*args: str) -> tuple[int, bool, str, str]:
    """(exit code, torch imported?, stdout without the probe line, stderr) of one CLI call."""
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CI": "true"})
    tail = p.stdout.strip().splitlines()[-1]
    assert tail.startswith("RC="), p.stdout + p.stderr
    rc, torch = tail.split()
    return int(rc[3:]), torch == "TORCH=True", p.stdout.replace(tail, "").strip(), p.stderr.strip()


def _one_line(err: str, needle: str) -> None:
    assert "\n" not in err and "Traceback" not in err and needle in err, err


def test_config_typo_before_torch() -> None:
    rc, torch, _, err = _cli("run", "easyvqa", "model.batchsize=2")
    assert rc == 2 and not torch
    _one_line(err, "no key model.batchsize; did you mean model.batch_size?")


def test_missing_data_dir_before_torch(tmp_path: Path) -> None:
    rc, torch, _, err = _cli("run", "vqav2", "--data-root", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"))
    assert rc == 2 and not torch
    _one_line(err, "vqav2: missing ")


def test_locked_output_before_torch(tmp_path: Path) -> None:
    from flamingo_eval.results.lock import OutputLock

    out = tmp_path / "busy"
    lock = OutputLock(out)
    lock.acquire()
    try:
        rc, torch, _, err = _cli("run", "easyvqa", "--shots", "0", "--limit", "2", "--output", str(out))
    finally:
        lock.release()
    assert rc == 2 and not torch
    _one_line(err, f"{out} is in use by another flamingo-eval run (pid {os.getpid()}")


def test_output_of_another_config_before_torch(tmp_path: Path) -> None:
    out = tmp_path / "other"
    out.mkdir()
    (out / "record.json").write_text(json.dumps({"config_hash": "0123abcd", "status": "complete"}))
    rc, torch, _, err = _cli("run", "easyvqa", "--shots", "0", "--limit", "2", "--output", str(out))
    assert rc == 2 and not torch
    _one_line(err, "already holds a run record of a different configuration (config hash 0123abcd")


@pytest.mark.parametrize(("remove", "needle"), [
    (("tokenizer.json", "tokenizer_config.json"), "model.path {d}: lm/ has no tokenizer files"),
    (("config.json",), "LM directory {d}/lm has no config.json"),
])
def test_model_dir_layout_before_torch(tmp_path: Path, remove: tuple[str, ...], needle: str) -> None:
    """lm/ without tokenizer files: named as such (not a wrong-shape error on embed_tokens); nothing written."""
    d = make_openflamingo_dir(tmp_path)
    for name in remove:
        (d / "lm" / name).unlink()
    out = tmp_path / "run"
    rc, torch, _, err = _cli("run", "easyvqa", "--model", "openflamingo", f"model.path={d}", "--output", str(out))
    assert rc == 2 and not torch and not (out / "record.json").exists()
    _one_line(err, needle.format(d=d))


def test_data_root_file_and_empty_output(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("x")
    for args in (("run", "easyvqa"), ("data", "check", "vqav2")):
        rc, torch, out, err = _cli(*args, "--data-root", str(f))
        assert rc == 2 and not torch and out == "", out  # data check: the line on stderr, nothing on stdout
        _one_line(err, f"--data-root {f} is a file, not a directory")
    rc, _, _, err = _cli("run", "easyvqa", "--output", "")
    assert rc == 2
    _one_line(err, "--output is empty")


def test_tokenizer_directories_without_a_tokenizer(tmp_path: Path) -> None:
    """A config.json-only tokenizer dir (transformers would build a 1-token tokenizer: empty generations, exit 0)
    and an empty IDEFICS tokenizer dir: one line each, before torch; nothing marked complete."""
    from flamingo_eval.config_load import compose_config

    d = make_openflamingo_dir(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(d / "lm" / "config.json", bare / "config.json")
    with pytest.raises(UserError, match=rf"tokenizer directory {bare} has no tokenizer files .*holds config\.json"):
        compose_config("easyvqa", "openflamingo", [f"model.path={d}", f"model.lm.tokenizer={bare}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    idefics = Path(__file__).resolve().parents[1] / "fixtures" / "idefics" / "resampler-qk-i1"
    with pytest.raises(UserError, match=rf"tokenizer directory {empty} is empty"):
        compose_config("easyvqa", "idefics-9b", [f"model.lm.path={idefics}", f"model.lm.tokenizer={empty}"])
    from flamingo_eval.models.idefics.loading import load_idefics_tokenizer

    with pytest.raises(UserError, match=rf"cannot load the IDEFICS tokenizer: {empty} is empty"):
        load_idefics_tokenizer(empty)


def test_tokenizer_that_cannot_round_trip_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from flamingo_eval.cli import main

    d = make_openflamingo_dir(tmp_path)
    tok = Tokenizer(WordLevel({"<unk>": 0, "the": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(d / "lm" / "tokenizer.json"))
    (d / "lm" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    out = tmp_path / "run"
    assert main(["run", "easyvqa", "--model", "openflamingo", f"model.path={d}", "--shots", "0", "--limit", "2",
                 "--output", str(out)]) == 2
    assert not (out / "record.json").exists() and "cannot round-trip a short text" in capsys.readouterr().err
    from flamingo_eval.models.build import load_tokenizer

    with pytest.raises(UserError, match=r"tokenizer '.*' cannot round-trip a short text \('a red dog' -> 3 ids -> "
                                        r"'<unk> <unk> <unk>'; vocabulary of 2\)"):
        load_tokenizer(str(d / "lm"))


def test_no_samples_left_names_the_skip_reasons() -> None:
    from flamingo_eval.skips import no_samples_left

    line = no_samples_left([{"sample_id": "a", "error": "image /d/a.jpg cannot be read (truncated)"},
                            {"sample_id": "b", "error": "image /d/b.jpg cannot be read (truncated)"},
                            {"sample_id": "c", "error": "prompt of 2100 tokens exceeds model.max_context 2048; x"}])
    assert line.startswith("no samples left to score: all 3 were skipped (2x image … cannot be read; "
                           "1x prompt of N tokens exceeds model.max_context N)")
    assert "the first: image /d/a.jpg cannot be read (truncated) (sample a)" in line and "\n" not in line


def test_all_samples_skipped_names_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flamingo_eval.cli import main

    assert main(["run", "easyvqa", "--shots", "0", "--limit", "2", "model.max_context=8", "--on-bad-sample", "skip",
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no samples left to score: all 2 were skipped (2x easyvqa: sample …: its prompt "
                          "without demos is N tokens, + N reserved for the answer > model.max_context N)"), err
    assert not (tmp_path / "run" / "record.json").exists()
