"""Where an easy-VQA score sits between "reads nothing" and "reads the image perfectly", by answer type.

easy-VQA is synthetic: every image holds one shape of one colour, and every question asks about the colour or
the shape (``what is the color of the shape?``, ``is there not a blue shape?``). So the right answer to any
question about any image follows from the image's two attributes, which the test split's own questions name.
That gives three reference rows next to the runs given:

* ``perfect reader, right images``: 100 (the attribute read-out checks itself against every test answer);
* ``perfect reader, shuffled images``: the same reader shown the images ``tools/shuffled_images.py`` gives
  (question ``i`` sees the image of question ``i + n/2``). This is the floor of a shuffled run for a model that
  answers from the image alone: most yes/no questions ask about a colour or shape the shown image lacks too,
  so their answer ("no", or "yes" for a negated question) stays right with the wrong image;
* ``question text only``: the train split's most common answer to the exact question string (no image).

    python -m tools.easyvqa_controls runs/demo/mini runs/demo/mini-shuffled runs/demo/mini-blind --shots 4

Each run directory's ``predictions.jsonl`` is read (every trial; the reference rows cover the same questions).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from flamingo_eval.task import make_adapter
from tools.shuffled_images import shuffling

COLOURS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
KINDS = ("all", "yes/no", "colour", "shape")


def kind(answer: str) -> str:
    """The answer type of a reference answer."""
    return "yes/no" if answer in ("yes", "no") else "shape" if answer in SHAPES else "colour"


def _words(question: str) -> list[str]:
    return question.replace("?", " ").split()


def attributes(rows: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """image -> {"colour": .., "shape": ..} from the (question, answer, image) rows that name them."""
    attr: dict[str, dict[str, str]] = defaultdict(dict)
    for question, answer, image in rows:
        if answer in COLOURS:
            attr[image]["colour"] = answer
        elif answer in SHAPES:
            attr[image]["shape"] = answer
        elif answer in ("yes", "no"):
            words = _words(question)
            present = (answer == "yes") != ("not" in words or "no" in words)
            for w in words:
                if present and w in COLOURS:
                    attr[image]["colour"] = w
                if present and w in SHAPES:
                    attr[image]["shape"] = w
    return attr


def read_out(question: str, attr: dict[str, str]) -> str | None:
    """The answer to ``question`` about an image with attributes ``attr`` (None: the attribute is unknown)."""
    words = _words(question)
    if words[0] == "what":
        return attr.get("colour" if "color" in words else "shape")
    named = [w for w in words if w in COLOURS or w in SHAPES]
    if not named:
        return None
    present = named[0] in (attr.get("colour"), attr.get("shape"))
    return "yes" if present != ("not" in words or "no" in words) else "no"


def _rows(split_samples: list) -> list[tuple[str, str, str]]:
    return [(s.fields["question"], s.references[0], s.media[0]) for s in split_samples]


def _table(rows: dict[str, dict[str, list[float]]]) -> str:
    out = ["| | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * len(KINDS)]
    for name, acc in rows.items():
        cells = [f"{100 * sum(acc[k]) / len(acc[k]):.1f} (n={len(acc[k])})" if acc[k] else "-" for k in KINDS]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def controls(runs: list[Path], shots: int | None) -> str:
    """The Markdown table: each run, then the three reference rows over the questions the runs cover."""
    card = compose_config("easyvqa", "tiny").benchmarks
    adapter = make_adapter(card, None)
    test, train = adapter.load(card.eval_split), adapter.load(card.demo_split)
    shown = shuffling(lambda c, r: make_adapter(card, None))(card, None).load(card.eval_split)  # what it runs
    by_id = {s.id: i for i, s in enumerate(test)}
    test_rows = _rows(test)
    attr = attributes(test_rows)
    majority: dict[str, Counter[str]] = defaultdict(Counter)
    for question, answer, _ in _rows(train):
        majority[question][answer] += 1
    table: dict[str, dict[str, list[float]]] = {}
    covered: set[str] = set()
    for run in runs:
        path = run / "predictions.jsonl"
        if not path.is_file():
            raise UserError(f"{path}: not found; give run directories of `flamingo-eval run easyvqa ...`")
        acc: dict[str, list[float]] = defaultdict(list)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                p = json.loads(line)
                sid, score, ref = p["sample_id"], float(p["score"]) / 100, p["references"][0]  # 0..100
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise UserError(f"{path}:{n}: not a prediction line of an easyvqa run ({e})") from None
            if sid not in by_id:
                raise UserError(f"{path}:{n}: sample {sid} is not an easy-VQA test question")
            if shots is not None and p["shots"] != shots:
                continue
            covered.add(sid)
            for k in ("all", kind(ref)):
                acc[k].append(score)
        table[f"{run}" + (f" ({shots}-shot)" if shots is not None else "")] = acc
    refs: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in (
        "perfect reader, right images", "perfect reader, shuffled images", "question text only")}
    for sid in sorted(covered, key=by_id.__getitem__):
        i = by_id[sid]
        question, answer, image = test_rows[i]
        guesses = (read_out(question, attr[image]), read_out(question, attr[shown[i].media[0]]),
                   majority[question].most_common(1)[0][0] if majority[question] else None)
        for name, guess in zip(refs, guesses):
            for k in ("all", kind(answer)):
                refs[name][k].append(float(guess == answer))
    return _table({**table, **refs})


def main(argv: list[str] | None = None) -> int:
    """Print the table; a bad run directory is a one-line error (exit 2)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of `flamingo-eval run easyvqa`")
    parser.add_argument("--shots", type=int, default=None, help="only this shot count's predictions")
    args = parser.parse_args(argv)
    try:
        print(controls(args.runs, args.shots))
    except UserError as e:
        print(f"easyvqa_controls: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
