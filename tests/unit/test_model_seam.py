"""The model seam: ``EvalModel`` declares every member its users read (no ``getattr`` probing); every model
class (the engine's, the reference loop's, IDEFICS's, the test and tool stubs) has them all; architectures
register themselves, and neither the runner nor the builder names an architecture or a packaged asset."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from flamingo_eval.config import LMCfg, ModelCfg
from flamingo_eval.errors import UserError
from flamingo_eval.models.architectures import get_architecture, load_architectures, resolve_model
from flamingo_eval.types import EvalModel

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "flamingo_eval"
MODEL_USERS = ("runner.py", "prompting.py", "request_kinds.py", "commands/run_cmd.py")
"""Modules handed an ``EvalModel``: what they read from it must be declared."""
NEUTRAL = ("runner.py", "models/build.py")
"""Modules that must not know any architecture or packaged asset by name."""
NAMES = re.compile(r"\b(idefics|openflamingo|smollm2|mini)\b", re.IGNORECASE)
IDEFICS = ROOT / "tests" / "fixtures" / "idefics"


def protocol_members() -> set[str]:
    return set(EvalModel.__annotations__) | {n for n in vars(EvalModel) if not n.startswith("_")}


def model_reads(source: str) -> tuple[set[str], list[str]]:
    """(attributes read from a parameter annotated ``EvalModel``, ``getattr`` probes of one) in ``source``."""
    reads: set[str] = set()
    probes: list[str] = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = {a.arg for a in fn.args.args + fn.args.kwonlyargs
                  if a.annotation is not None and "EvalModel" in ast.unparse(a.annotation)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in params:
                reads.add(node.attr)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {
                    "getattr", "hasattr"} and node.args and isinstance(node.args[0], ast.Name) \
                    and node.args[0].id in params:
                probes.append(ast.unparse(node))
    return reads, probes


def names_in_code(source: str) -> list[str]:
    """Architecture/asset names in ``source``'s code (string constants, names, attributes, imports), not in
    its docstrings or comments."""
    tree = ast.parse(source)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.ImportFrom | ast.Import):
            text = " ".join([getattr(node, "module", None) or ""] + [a.name for a in node.names])
        else:
            continue
        found += NAMES.findall(text.replace("_", " ").replace(".", " "))
    return found


def test_the_finders_find_what_they_look_for():
    reads, probes = model_reads("def f(m: EvalModel, x):\n    m.timer\n    x.y\n    getattr(m, 'device', None)\n")
    assert reads == {"timer"} and probes == ["getattr(m, 'device', None)"]
    assert sorted(names_in_code('"""idefics here is prose."""\nif cfg.architecture != "openflamingo":\n'
                                '    import flamingo_eval.models.idefics\nx = lm.source == "smollm2"\n')) == [
        "idefics", "openflamingo", "smollm2"]


@pytest.mark.parametrize("rel", MODEL_USERS)
def test_the_protocol_declares_what_its_users_read(rel):
    reads, probes = model_reads((PACKAGE / rel).read_text())
    assert not probes, f"{rel} probes the model with getattr/hasattr; declare the member on EvalModel: {probes}"
    assert reads <= protocol_members(), f"{rel} reads {sorted(reads - protocol_members())}, not on EvalModel"


def test_the_runner_reads_the_record_extras_through_the_protocol():
    reads, _ = model_reads((PACKAGE / "runner.py").read_text())
    assert {"timer", "media_stats", "precision", "placement", "device", "fingerprint", "model_id"} <= reads


@pytest.mark.parametrize("rel", NEUTRAL)
def test_no_architecture_or_asset_name_in_the_runner_or_builder(rel):
    found = names_in_code((PACKAGE / rel).read_text())
    assert not found, f"{rel} names {sorted(set(found))}: register it (models/architectures/) instead"


def _stubs() -> list[object]:
    from tests.unit.test_request_kinds import Model
    from tests.unit.test_runner_blocks import WordModel

    return [Model(), WordModel()]


def _assert_model(obj: object) -> None:
    missing = sorted(m for m in protocol_members() if not hasattr(obj, m))
    assert not missing, f"{type(obj).__name__} lacks {missing}"
    assert isinstance(obj, EvalModel)
    assert isinstance(obj.precision, str) and isinstance(obj.media_stats(), dict)  # type: ignore[attr-defined]


def test_the_stubs_are_eval_models():
    for stub in _stubs():
        _assert_model(stub)
    tool = ast.parse((ROOT / "tools" / "bench_scale.py").read_text())  # its stub loads a tokenizer: members read
    cls = next(n for n in tool.body if isinstance(n, ast.ClassDef) and n.name == "StubModel")
    names = {t.id for n in cls.body if isinstance(n, ast.Assign) for t in ast.walk(n) if isinstance(t, ast.Name)}
    names |= {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert protocol_members() <= names, f"tools/bench_scale.py StubModel lacks {sorted(protocol_members() - names)}"


def test_the_built_models_are_eval_models(tiny_model):
    from flamingo_eval.models.build import build_model
    from flamingo_eval.models.reference import ReferenceEvalModel

    _assert_model(tiny_model)  # the engine's class, as build_model gives it
    _assert_model(ReferenceEvalModel(tiny_model.model, tiny_model.tokenizer, tiny_model.preprocess,
                                     model_id="tiny-reference", fingerprint=tiny_model.fingerprint()))
    variant = next(p for p in sorted(IDEFICS.iterdir()) if (p / "expected.json").is_file())
    idefics = build_model(ModelCfg(name="idefics-fixture", architecture="idefics",
                                   lm=LMCfg(source="hf", path=str(variant)), precision="fp32", device="cpu"))
    _assert_model(idefics)
    assert idefics.precision == "fp32" and idefics.placement is None and idefics.media_stats() == {}


def test_architectures_register_themselves():
    assert {"openflamingo", "idefics"} <= set(load_architectures())
    assert get_architecture("idefics").name == "idefics"
    with pytest.raises(UserError, match="unknown model architecture 'flamingo9'; available: .*idefics.*openflamingo"):
        get_architecture("flamingo9")
    with pytest.raises(UserError, match="unknown model architecture 'flamingo9'"):
        resolve_model(ModelCfg(name="x", architecture="flamingo9"))
