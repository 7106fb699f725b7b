"""notebooks/08_instruction_tuning.ipynb under papermill: a tiny random Llama built offline, the shipped
instruction set (48 training, 12 held-out examples), LoRA and full fine-tuning."""
import pytest

from ftkit.data.instructions import load_instructions
from ftkit.nlp.causal import build_tiny_causal_lm

pytestmark = pytest.mark.notebook


def test_instruction_tuning_notebook(run_notebook, tmp_path_factory, monkeypatch):
    train, _ = load_instructions()
    tiny = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "llama",
                                [e["prompt"] + " " + e["completion"] for e in train] + ["user assistant system"])
    m = run_notebook("08_instruction_tuning.ipynb", preset="cpu", model_name_or_path=tiny,
                     full_fine_tune=True, full_model_name_or_path=tiny, offline_fallback=False, n_train=48,
                     n_test=12, epochs=2,
                     lr=2e-2, full_lr=3e-3, max_length=128, max_new_tokens=4, fresh_process=False,
                     device="cpu", dashboard=False)
    assert (m["n_train"], m["n_test"], m["epochs"], m["load_in_4bit"]) == (48, 12, 2, False)
    t = m["tokens"]
    # the mask: SFT counts exactly the reply tokens; without it, every token but the first of each sequence
    assert t["trained_masked"] == t["completion"] and t["trained_unmasked"] == t["prompt"] + t["completion"] - 48
    assert m["loss_batch"]["masked"] == pytest.approx(m["loss_batch"]["masked_by_hand"], rel=1e-5)
    assert m["padding_share"]["packed blocks"] < 0.05 < m["padding_share"]["padded batches"]
    lora = m["lora"]
    assert len(lora["val_loss_per_epoch"]) == 2 and lora["val_loss_per_epoch"][-1] < lora["val_loss_before"] - 0.1
    assert lora["exact_match_after"]["all"] >= lora["exact_match_before"]["all"]
    assert 0 < lora["trainable_params"] < m["full"]["trainable_params"] == m["parameters"]
    assert m["full"]["val_loss"] < m["full"]["val_loss_before"] - 0.1   # full fine-tuning learns too
    assert m["reload_max_diff"] < 1e-5 and m["merge_max_diff"] <= 1e-4 and m["fresh_process_max_diff"] is None
    assert m["folder_mb"]["adapter"] < m["folder_mb"]["merged"]
