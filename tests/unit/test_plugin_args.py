"""Every registered adapter and metric declares its argument type, refuses an unknown key in one line at
start-up, reads the checked instance, and every shipped card's arguments fit the type its plugins declare."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from omegaconf import OmegaConf

from flamingo_eval.card_args import metric_args, registries
from flamingo_eval.cli import main
from flamingo_eval.errors import UserError
from flamingo_eval.plugin_args import NoArgs, factory_schema, parse
from flamingo_eval.registry import ADAPTERS, METRICS

ROOT = Path(__file__).resolve().parents[2]
registries()


def _cards() -> dict[str, Any]:
    """The shipped cards as written (``benchmarks/*.yaml``), with the keys a card may leave out filled in."""
    out = {}
    for path in sorted((ROOT / "benchmarks").glob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        metric = SimpleNamespace(name=raw["metric"]["name"], args=raw["metric"].get("args") or {})
        out[path.stem] = SimpleNamespace(id=raw["id"], adapter=raw["adapter"],
                                         adapter_args=raw.get("adapter_args") or {}, metric=metric)
    return out


CARDS = _cards()


def _card_using(kind: str, name: str) -> str | None:
    return next((c for c, card in CARDS.items() if (card.adapter if kind == "adapter" else card.metric.name) == name),
                None)


def test_every_shipped_card_names_registered_plugins_and_its_args_validate():
    assert len(CARDS) >= 20
    for name, card in CARDS.items():
        adapter = ADAPTERS.get(card.adapter)
        args = adapter.parse_args(card)
        assert isinstance(args, adapter.Args), name
        for key, value in card.adapter_args.items():  # the card's values reach the adapter (a mapping: merged in)
            got = getattr(args, key)
            assert (value.items() <= got.items() if isinstance(value, dict) else got == value), (name, key)
        factory, given = metric_args(card)
        assert METRICS.get(card.metric.name) is factory and given == card.metric.args, name


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_adapter_declares_a_dataclass_of_args_and_refuses_an_unknown_key(name: str):
    adapter = ADAPTERS.get(name)
    assert dataclasses.is_dataclass(adapter.Args), f"adapter '{name}': Args must be a dataclass (NoArgs: none)"
    card = SimpleNamespace(id="some_card", adapter=name, adapter_args={"zzz_unknown": 1})
    with pytest.raises(UserError) as e:
        adapter.parse_args(card)
    msg = str(e.value)
    fields = [f.name for f in dataclasses.fields(adapter.Args)]
    takes = ", ".join(fields) or "no arguments"
    assert msg.startswith("benchmarks.adapter_args.zzz_unknown: unknown argument; ") and "\n" not in msg, msg
    assert f"adapter '{name}' takes {takes}" in msg and "(card some_card)" in msg, msg


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_declares_typed_args_and_refuses_an_unknown_key(name: str):
    schema = factory_schema(METRICS.get(name), name)  # raises TypeError for an undeclared parameter
    card = SimpleNamespace(id="some_card", metric=SimpleNamespace(name=name, args={"zzz_unknown": 1}))
    with pytest.raises(UserError) as e:
        metric_args(card)
    takes = ", ".join(f.name for f in dataclasses.fields(schema)) or "no arguments"
    assert f"benchmarks.metric.args.zzz_unknown: unknown argument; metric '{name}' takes {takes}" in str(e.value)


PLUGINS = [("adapter", n) for n in ADAPTERS.names()] + [("metric", n) for n in METRICS.names()]


@pytest.mark.parametrize("kind,name", PLUGINS, ids=[f"{k}-{n}" for k, n in PLUGINS])
def test_an_unknown_key_fails_the_run_at_start_up_in_one_line(kind: str, name: str, tmp_path: Path, capsys):
    """Through the command line, for a shipped card of each plugin: exit 2, one line, nothing written."""
    card = _card_using(kind, name)
    if card is None:
        pytest.skip(f"no shipped card uses {kind} '{name}' (the direct checks above cover it)")
    where = "benchmarks.adapter_args" if kind == "adapter" else "benchmarks.metric.args"
    rc = main(["run", card, f"+{where}.zzz_unknown=1", "--model", "tiny", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert f"{where}.zzz_unknown: unknown argument; {kind} '{name}' takes" in err and f"(card {card})" in err, err
    assert not (tmp_path / "out").exists()


def test_a_near_miss_names_the_key_it_probably_meant():
    @dataclasses.dataclass
    class Args:
        per_class: int | None = None
        layout: str = "rows"

    with pytest.raises(UserError, match=r"x\.per_clas: unknown argument; adapter 'a' takes per_class, layout; "
                                        r"did you mean 'per_class'\? \(card c\)$"):
        parse(Args, {"per_clas": 3}, "x", "adapter 'a'", "c")
    with pytest.raises(UserError, match=r"x\.root: unknown argument; adapter 'a' takes no arguments \(card c\)$"):
        parse(NoArgs, {"root": "x"}, "x", "adapter 'a'", "c")
    with pytest.raises(UserError, match=r"^x\.per_class: .*\(adapter 'a', card c\)$"):
        parse(Args, {"per_class": "ten"}, "x", "adapter 'a'", "c")
    assert parse(Args, {"per_class": 3}, "x", "adapter 'a'", "c") == Args(per_class=3, layout="rows")


def test_a_metric_factory_without_a_declared_type_is_refused():
    def untyped(scale=1.0):  # type: ignore[no-untyped-def]
        return scale

    def anything(**kwargs: Any) -> Any:
        return kwargs

    for factory in (untyped, anything):
        with pytest.raises(TypeError, match="must be a named, annotated keyword parameter"):
            factory_schema(factory, "m")


def test_adapters_read_the_checked_instance_with_the_defaults_of_their_type():
    """An adapter's ``args`` are its ``Args`` instance: the card's values typed, the rest the type's defaults."""
    from flamingo_eval.benchmarks.video_args import QA_FIELDS, VideoClassArgs, VideoQAArgs

    kinetics = ADAPTERS.get("video_classes")(CARDS["kinetics700"], Path("."))
    assert kinetics.args == VideoClassArgs(**CARDS["kinetics700"].adapter_args)
    assert kinetics.args.per_class == 10 and kinetics.args.class_text == "{verb} {noun}" and kinetics.max_shots is None
    nextqa = ADAPTERS.get("video_qa")(CARDS["nextqa_oe"], Path("."))
    assert isinstance(nextqa.args, VideoQAArgs)
    assert nextqa.args.fields == {**QA_FIELDS, "id": "qid", "video_id": "video"}  # the card's names merged in
    assert ADAPTERS.get("video_classes")(CARDS["rareact"], Path(".")).max_shots == 0
