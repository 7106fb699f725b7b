r"""A small decoder-only Transformer language model (GPT), its losses, its metrics and generation.

**Why a home-made GPT and not ``transformers.GPT2LMHeadModel``:** the whole model fits on one screen (nanoGPT
style), so a reader sees causal attention, the residual stream and the tied output layer; it returns plain
``(B, T, V)`` logits, so any ftkit loss plugs in (GPT-2's forward computes its own shifted CE); and it needs no
config flags. It uses ``F.scaled_dot_product_attention(is_causal=True)``, which picks the flash kernels on a GPU.

A block, with :math:`x` the residual stream of shape (B, T, C):
:math:`x ← x + \mathrm{Attn}(\mathrm{LN}(x))`, :math:`x ← x + \mathrm{MLP}(\mathrm{LN}(x))`, and causal attention
per head :math:`\mathrm{softmax}(QK^\top/\sqrt{d} + M)V` with :math:`M_{ij} = -∞` for :math:`j > i`.

**Losses** (:func:`lm_loss`): the model's :math:`(B, T, V)` logits and :math:`(B, T)` targets are flattened to
:math:`(BT, V)` and :math:`(BT)` and passed to a :func:`ftkit.make_loss` loss. LM names: ``cross_entropy``,
``label_smoothing`` (CE with ε = 0.1), ``mse`` (MSE between softmax and one-hot, the ``combined`` loss with
α=0, β=1) and ``combined`` (α·CE + β·MSE + γ·NLL with α=β=γ=1). Whatever the training loss, compare models with
:func:`token_cross_entropy` (nats per token), perplexity :math:`e^{CE}` and bits :math:`CE/\ln 2`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core import eval_mode
from ..losses import make_loss
from ..utils import check_int, check_number
from .recipe import Recipe

__all__ = ["LMRecipe", "GPTConfig", "GPT", "LM_LOSSES", "lm_loss", "TokenLoss", "token_cross_entropy", "perplexity",
           "report", "recipe", "prepare_run", "generate", "flops_per_token"]


# --------------------------------------------------------------------------- the model
@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64        # the longest context the model reads
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            divisors = [h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0 and h <= 32]
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: every head gets "
                             f"n_embd / n_head channels; pick n_head in {divisors} or change n_embd")
        if not 0 <= check_number("dropout", self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)    # queries, keys and values of all heads at once
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))  # pre-norm: the residual stream itself is never normalized
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings → ``n_layer`` blocks → LayerNorm → logits over the vocabulary."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens (fewer params)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2·n_layer) keep the stream's scale
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx):
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"a sequence of {T} tokens is longer than block_size={self.config.block_size}; "
                             "crop it to the last block_size tokens")
        x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied head is the token embedding); ``non_embedding`` leaves out both
        embedding tables."""
        n = sum(p.numel() for p in self.parameters())
        return n - (self.tok_emb.weight.numel() + self.pos_emb.weight.numel() if non_embedding else 0)

    def __repr__(self):
        c = self.config
        return (f"GPT(n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, "
                f"vocab_size={c.vocab_size}, dropout={c.dropout}: {self.num_parameters():,} parameters)")


def flops_per_token(model: GPT) -> float:
    r"""Training FLOPs per token (forward + backward), PaLM's estimate: :math:`6N + 12\,L\,C\,T` with N the
    parameters without the position table (matmuls: 2 FLOPs per weight forward, 4 backward) plus attention."""
    c = model.config
    n = model.num_parameters() - model.pos_emb.weight.numel()
    return 6 * n + 12 * c.n_layer * c.n_embd * c.block_size


# --------------------------------------------------------------------------- losses and metrics
class TokenLoss(nn.Module):
    """Flattens ``(B, T, V)`` logits and ``(B, T)`` targets, then applies a per-token loss over ``(N, V)``."""

    def __init__(self, loss: nn.Module, name: str = ""):
        super().__init__()
        self.loss, self.name = loss, name

    def forward(self, logits, targets):
        return self.loss(logits.flatten(0, -2), targets.flatten())

    def extra_repr(self):
        return self.name


LM_LOSSES = {
    "cross_entropy": ("cross_entropy", {}),
    "label_smoothing": ("cross_entropy", {"label_smoothing": 0.1}),
    "mse": ("combined", {"alpha": 0.0, "beta": 1.0}),                       # MSE(softmax(z), one_hot(y))
    "combined": ("combined", {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}),   # α·CE + β·MSE + γ·NLL
}


def lm_loss(loss="cross_entropy", **options) -> TokenLoss:
    """A per-token loss for GPT logits: a name of :data:`LM_LOSSES` (options override its defaults, e.g.
    ``lm_loss("label_smoothing", label_smoothing=0.2)``) or a loss callable over ``(N, V)`` logits."""
    if isinstance(loss, TokenLoss):
        return loss
    if isinstance(loss, str):
        if loss not in LM_LOSSES:
            raise ValueError(f"unknown language-model loss {loss!r}; choose one of: {', '.join(LM_LOSSES)}")
        base, defaults = LM_LOSSES[loss]
        return TokenLoss(make_loss(base, **{**defaults, **options}), loss)
    return TokenLoss(make_loss(loss), getattr(loss, "__name__", type(loss).__name__))


def token_cross_entropy(logits, targets):
    """A ``fit`` metric: (summed CE in nats, token count), so ``val_ce`` is the exact mean CE per token."""
    ce = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="sum")
    return ce, targets.numel()


token_cross_entropy.__name__ = "ce"


def perplexity(nats_per_token: float) -> float:
    """:math:`e^{CE}`: the model is as unsure as a uniform choice among that many tokens."""
    return math.exp(nats_per_token)


def report(corpus, nats_per_token: float) -> dict:
    """The numbers language models are compared by: CE (nats/token), perplexity and bits per char (char tokens)
    or per UTF-8 byte (BPE: tokens differ between tokenizers, bytes do not)."""
    unit = "char" if getattr(corpus.tokenizer, "name", "") == "char" else "byte"
    return {"val_loss": nats_per_token, "val_perplexity": perplexity(nats_per_token),
            f"bits_per_{unit}": corpus.bits_per(nats_per_token, unit)}


@dataclass
class LMRecipe(Recipe):
    """nanoGPT's optimizer and schedule for a small GPT: AdamW, warmup then linear decay to lr/10.

    β₂ = 0.99 (not 0.999): a small model on small batches sees noisy gradients, a shorter memory adapts faster.
    Weight decay 0.1 on matrices and embeddings only. Warmup 5 % of the steps: Adam's first steps are unreliable.
    """
    lr: float = 1e-3                        # nanoGPT's Shakespeare-char rate for a model this small
    batch_size: int = 64
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_ratio: float = 0.05
    final_factor: float = 0.1               # decay to lr/10, not 0: the last steps still learn
    grad_clip: float | None = 1.0           # nanoGPT's: tames loss spikes

    def extra_args(self) -> dict:
        return {"metrics": [token_cross_entropy]}


def recipe(model: nn.Module, lr: float, max_steps: int, warmup_steps: int | None = None):
    """(AdamW, schedule) of :class:`LMRecipe` for ``fit(..., optimizer=opt, scheduler=schedule)``: warmup for
    ``warmup_steps`` (default ``max(1, max_steps // 20)``, 5 %) then decay to lr/10 over the run."""
    warmup = max(1, max_steps // 20) if warmup_steps is None else warmup_steps
    chosen = LMRecipe(lr=lr, warmup_steps=warmup)
    return chosen.optimizer(model), chosen.scheduler()


def prepare_run(corpus, config: GPTConfig | None = None, *, lr: float, batch_size: int, max_steps: int,
                eval_every: int, seed: int = 0, model: nn.Module | None = None):
    """``(model, fit keyword arguments)`` for ``max_steps`` optimizer steps with a validation pass every
    ``eval_every`` steps (nanoGPT's eval_interval): an "epoch" is ``eval_every`` random-window batches.

    A new :class:`GPT` from ``config`` (seeded), or ``model`` to go on training (fine-tuning). The kwargs hold
    ``train_loader, val_loader, optimizer, scheduler, epochs, metrics`` (the CE metric: every model is compared
    by its validation CE, whatever its training loss) and ``grad_clip=1.0`` (nanoGPT's; tames loss spikes): those
    of :class:`LMRecipe`'s ``fit_args`` but the model and loss, which the caller passes."""
    from ..utils import seed_everything
    max_steps, eval_every = check_int("max_steps", max_steps), check_int("eval_every", eval_every)
    if max_steps % eval_every:
        lo, hi = max_steps // eval_every * eval_every, (max_steps // eval_every + 1) * eval_every
        raise ValueError(f"max_steps={max_steps} must be a multiple of eval_every={eval_every} (validation runs "
                         f"every eval_every steps): e.g. max_steps={lo or hi} or {hi}")
    seed_everything(seed)
    if model is None:
        if config is None:
            raise ValueError("give a GPTConfig to build a new model, or model= to go on training one")
        model = GPT(config)
    block = model.config.block_size
    chosen = LMRecipe(lr=lr, batch_size=batch_size, warmup_steps=max(1, max_steps // 20))
    args = chosen.fit_args(model, corpus.train_loader(block, batch_size, eval_every, seed=seed), max_steps // eval_every,
                           val_set=corpus.val_loader(block, 4 * batch_size), seed=seed)
    # the caller passes the model and its loss (notebook 06 compares losses on the same run)
    return model, {k: v for k, v in args.items() if k not in ("model", "loss")}


# --------------------------------------------------------------------------- generation
@torch.no_grad()
def _check_prompt(idx, vocab_size: int) -> torch.Tensor:
    """A (B, T) integer tensor of token ids in [0, vocab_size), T >= 1 (a 1-D prompt becomes one row)."""
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"the prompt must be a tensor of token ids, got {type(idx).__name__}; encode the text "
                        "first, e.g. torch.tensor([tokenizer.encode(text)])")
    if idx.dim() == 1:
        idx = idx[None]
    if idx.dim() != 2 or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"the prompt must be integer token ids of shape (batch, length), got {idx.dtype} of shape "
                         f"{tuple(idx.shape)}")
    if idx.shape[1] == 0 or idx.shape[0] == 0:
        raise ValueError(f"the prompt is empty (shape {tuple(idx.shape)}): give at least one token per row, "
                         "e.g. the encoded first character or a newline")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"the prompt holds token id {bad}, outside the model's vocabulary 0..{vocab_size - 1}; "
                         "encode it with the tokenizer the model was trained with")
    return idx.long()


def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, greedy: bool = False, generator: torch.Generator | None = None):
    r"""Extend ``idx`` (B, T) by ``max_new_tokens`` tokens, one at a time, reading the last ``block_size``.

    ``greedy``: the most likely token. Otherwise sample from :math:`\mathrm{softmax}(z/τ)` (τ = ``temperature``:
    < 1 sharper, > 1 flatter), restricted to the ``top_k`` most likely tokens when given.
    """
    check_int("max_new_tokens", max_new_tokens, 0)
    if not greedy:
        check_number("temperature", temperature, positive=True)
    if top_k is not None:
        check_int("top_k", top_k)
    idx = _check_prompt(idx, model.config.vocab_size)
    device = next(model.parameters()).device
    idx = idx.to(device)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            logits = model(idx[:, -model.config.block_size:])[:, -1, :].float()
            if greedy:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(-1)
                nxt = torch.multinomial(probs.cpu() if generator is not None else probs, 1,
                                        generator=generator).to(device)
            idx = torch.cat([idx, nxt], 1)
    return idx
