"""ftkit.nlp.lm: the GPT, its per-token losses (checked against formulas and torch), metrics, generation, learning."""
import math

import pytest
import torch
import torch.nn.functional as F

import ftkit
from ftkit.data.corpus import make_tokenizer, RandomWindows, SequentialWindows
from ftkit.nlp.lm import (flops_per_token, generate, GPT, GPTConfig, lm_loss, perplexity, prepare_run, recipe,
                          token_cross_entropy)



def tiny(vocab=11, block=8, **kw):
    return GPT(GPTConfig(vocab, block, n_layer=kw.pop("n_layer", 2), n_head=2, n_embd=16, **kw))


def test_config_refuses_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match=r"n_embd=100 is not divisible by n_head=3.*pick n_head in \[1, 2, 4, 5, 10, 20, 25\]"):
        GPTConfig(65, n_head=3, n_embd=100)
    with pytest.raises(ValueError, match="dropout must be in"):
        GPTConfig(65, dropout=1.0)


def test_logits_shape_causality_tying_and_parameter_count():
    model = tiny().eval()
    x = torch.randint(11, (3, 8))
    logits = model(x)
    assert logits.shape == (3, 8, 11)
    x2 = x.clone()
    x2[:, 5] = (x2[:, 5] + 1) % 11
    changed = (model(x2) - logits).abs().amax((0, 2))
    assert changed[:5].max() == 0 and changed[5:].min() > 0   # position t never reads tokens after t
    assert model.head.weight is model.tok_emb.weight
    c, L = 16, 2
    per_block = (3 * c * c + 3 * c) + (c * c + c) + (4 * c * c + 4 * c) + (4 * c * c + c) + 4 * c  # attn, mlp, 2 LN
    assert model.num_parameters() == 11 * c + 8 * c + L * per_block + 2 * c
    assert flops_per_token(model) == 6 * (model.num_parameters() - 8 * c) + 12 * L * c * 8
    with pytest.raises(ValueError, match="longer than block_size=8; crop"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_cross_entropy_equals_nll_of_log_softmax_so_gamma_adds_to_alpha():
    torch.manual_seed(1)
    logits, y = torch.randn(4, 8, 11) * 3, torch.randint(11, (4, 8))
    ce = lm_loss("cross_entropy")(logits, y)
    nll = F.nll_loss(logits.log_softmax(-1).flatten(0, 1), y.flatten())
    assert ce == pytest.approx(float(nll), abs=1e-6)
    assert ce == pytest.approx(float(-logits.log_softmax(-1).gather(-1, y[..., None]).mean()), abs=1e-6)
    alpha_gamma = lm_loss("combined", alpha=1.0, beta=0.0, gamma=1.0)(logits, y)
    assert alpha_gamma == pytest.approx(2 * float(ce), abs=1e-6)


def test_mse_label_smoothing_and_combined_follow_their_formulas():
    torch.manual_seed(2)
    logits, y = torch.randn(2, 5, 7), torch.randint(7, (2, 5))
    p, onehot = logits.softmax(-1), F.one_hot(y, 7).float()
    mse = ((p - onehot) ** 2).mean()                                    # mean over the B·T·V entries
    assert lm_loss("mse")(logits, y) == pytest.approx(float(mse), abs=1e-6)
    logp = logits.log_softmax(-1)
    ce = -logp.gather(-1, y[..., None]).mean()
    smooth = 0.9 * ce + 0.1 * (-logp.mean(-1)).mean()                   # (1-ε)·CE + ε·mean_c(-log p_c)
    assert lm_loss("label_smoothing")(logits, y) == pytest.approx(float(smooth), abs=1e-6)
    assert lm_loss("combined")(logits, y) == pytest.approx(float(2 * ce + mse), abs=1e-6)
    with pytest.raises(ValueError, match="unknown language-model loss 'hinge'; choose one of: cross_entropy, "
                                         "label_smoothing, mse, combined"):
        lm_loss("hinge")


def test_logit_gradients_match_the_notebooks_formulas_and_mse_vanishes_on_confident_mistakes():
    V = 50
    z = torch.zeros(1, 1, V)
    z[0, 0, 0] = 8.0                                      # sure of token 0; the truth is token 1
    y = torch.tensor([[1]])
    grads = {}
    for name in ("cross_entropy", "mse"):
        zz = z.clone().requires_grad_()
        lm_loss(name)(zz, y).backward()
        grads[name] = zz.grad[0, 0]
    p, Y = z[0, 0].softmax(-1), F.one_hot(torch.tensor(1), V).float()
    assert torch.allclose(grads["cross_entropy"], p - Y, atol=1e-6)                       # ∂CE/∂z = p − Y
    assert torch.allclose(grads["mse"], 2 / V * p * ((p - Y) - (p * (p - Y)).sum()), atol=1e-7)
    # the push up on the true token: CE ≈ 1 (the model finds it nearly impossible), MSE < 1e-4 (its factor p_y)
    assert grads["cross_entropy"][1] < -0.99 and -1e-4 < grads["mse"][1] < 0


def test_metric_and_perplexity_of_a_uniform_model():
    logits, y = torch.zeros(3, 4, 50), torch.randint(50, (3, 4))
    total, count = token_cross_entropy(logits, y)
    assert count == 12 and float(total) / count == pytest.approx(math.log(50))
    assert perplexity(float(total) / count) == pytest.approx(50)   # uniform over V tokens: perplexity V


def test_generation_greedy_top_k_and_temperature():
    model = tiny(block=6)
    start = torch.tensor([[1, 2, 3]])
    g1 = generate(model, start, 10, greedy=True)
    assert g1.shape == (1, 13) and torch.equal(g1[:, :3], start)
    x = g1[:, :-1][:, -6:]
    assert g1[0, -1] == model.eval()(x)[0, -1].argmax()                # reads only the last block_size tokens
    assert torch.equal(generate(model, start, 10, top_k=1), g1)        # top-1 sampling is greedy
    a = generate(model, start, 20, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(3))
    b = generate(model, start, 20, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(model, start, 5, temperature=0)


def test_fit_learns_a_repeating_text_far_below_chance():
    text = "the cat sat on the mat. " * 60
    tok = make_tokenizer("char", text)
    ids = torch.tensor(tok.encode(text))
    model = tiny(vocab=tok.vocab_size, block=16, n_layer=1)
    opt, sched = recipe(model, 1e-2, 120)
    history = ftkit.fit(model, RandomWindows(ids, 16, 16, 40, seed=0), lm_loss("cross_entropy"), opt, 3,
                        val_loader=SequentialWindows(ids[-200:], 16, 8), scheduler=sched,
                        metrics=[token_cross_entropy], device="cpu", progress=False, grad_clip=1.0)
    assert len(history.steps) == 120
    assert history["val_loss"] == pytest.approx(history["val_ce"], abs=1e-5)  # CE training: loss is the CE
    assert history["val_ce"][-1] < 0.3 < math.log(tok.vocab_size)             # chance: ln 10 ≈ 2.3
    out = tok.decode(generate(model, torch.tensor([tok.encode("the ")]), 12, greedy=True)[0].tolist())
    assert out == "the cat sat on t" or out.startswith("the mat. the ")


def test_prepare_run_counts_steps_and_refuses_a_budget_that_is_not_a_multiple_of_eval_every():
    from ftkit.data.corpus import load_corpus
    from conftest import DATA
    corpus = load_corpus(DATA / "text" / "milton.txt", "char", block_size=8)
    model, run = prepare_run(corpus, GPTConfig(corpus.vocab_size, 8, 1, 2, 16), lr=1e-3, batch_size=4,
                             max_steps=30, eval_every=10)
    assert run["epochs"] == 3 and len(run["train_loader"]) == 10 and run["grad_clip"] == 1.0
    with pytest.raises(ValueError, match=r"max_steps=25 must be a multiple of eval_every=10 .*max_steps=20 or 30"):
        prepare_run(corpus, model.config, lr=1e-3, batch_size=4, max_steps=25, eval_every=10)


# --------------------------------------------------------------------------- language model
def test_generate_checks_the_prompt():
    from ftkit.nlp.lm import GPT, GPTConfig, generate
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match=r"token id 11, outside the model's vocabulary 0..10"):
        generate(model, torch.tensor([[1, 11]]), 3)
    with pytest.raises(ValueError, match=r"token id -1, outside"):
        generate(model, torch.tensor([[-1]]), 3)
    with pytest.raises(ValueError, match=r"the prompt is empty \(shape \(1, 0\)\)"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="integer token ids"):
        generate(model, torch.zeros(1, 2), 3)
    with pytest.raises(TypeError, match="the prompt must be a tensor of token ids, got list"):
        generate(model, [[1, 2]], 3)
    assert generate(model, torch.tensor([1, 2]), 3, greedy=True).shape == (1, 5)  # one 1-D prompt is one row
