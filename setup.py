"""Ship the top-level benchmark cards and prompt families inside the wheel (flamingo_eval/_cards)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCards(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them from the checkout
            return
        for group in ("benchmarks", "prompts"):
            dest = Path(self.build_lib) / "flamingo_eval" / "_cards" / group
            dest.mkdir(parents=True, exist_ok=True)
            for card in sorted(Path(group).glob("*.yaml")):
                shutil.copy2(card, dest / card.name)


setup(cmdclass={"build_py": BuildWithCards})
