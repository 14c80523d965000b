"""flamingo-eval: few-shot multimodal evaluation of Flamingo-style vision-language models."""

__version__ = "0.1.0"
