"""Language (notebooks 04–06 and 08): Hugging Face plumbing (``hf``), one fine-tuning recipe shape (``recipe``), NER
and its scores (``ner``, ``ner_scores``), sentence classification (``classify``), the fine-tuning modes full / head /
LoRA and the one LoRA builder (``finetune``), causal-LM loading and generation (``causal``), supervised fine-tuning
(``sft``), a small GPT (``lm``) and a tiny BERT built offline for tests (``tiny``). Each submodule loads on first use
(``ftkit.nlp.ner`` or ``from ftkit.nlp import ner``), so ``import ftkit.nlp`` loads no transformers."""
from importlib import import_module

__all__ = ["causal", "classify", "finetune", "hf", "lm", "ner", "ner_scores", "recipe", "sft", "tiny"]


def __getattr__(name):
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit.nlp' has no attribute {name!r}")
