"""Language (notebooks 04–06 and the fine-tuning notebooks after them): Hugging Face plumbing (``hf``), NER and its
scores (``ner``, ``ner_scores``), sentence classification (``classify``), the fine-tuning modes full / head / LoRA
(``finetune``), a small GPT (``lm``) and a tiny BERT built offline for tests (``tiny``). Import the submodule you
need: each loads transformers on first use."""
