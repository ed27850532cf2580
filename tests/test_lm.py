"""The language-model toolkit: tokenisers, splits, batches, the GPT, the optimiser
factory, the schedule, evaluation, training and step timing."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effdl_lib import data
from effdl_lib.toolkits import lm

HAVE_SHAKESPEARE = (data.data_root() / data.REGISTRY["tinyshakespeare"].relpath).exists()
needs_text = pytest.mark.skipif(not HAVE_SHAKESPEARE, reason="tiny-shakespeare not under EFFDL_DATA")

SAMPLE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
          "Naïve café — ümlaut, 東京, emoji 🙂 and  double  spaces\ttabs.\n") * 20


# ---------------------------------------------------------------- tokenisers

def test_char_tokenizer_round_trip_and_sorted_ids():
    tok = lm.CharTokenizer("banana")
    assert tok.chars == ["a", "b", "n"] and tok.vocab_size == 3
    assert tok.encode("nab") == [2, 0, 1]
    assert tok.decode(tok.encode(SAMPLE[:0] + "banana")) == "banana"


def test_char_tokenizer_bad_input():
    with pytest.raises(ValueError, match="empty"):
        lm.CharTokenizer("")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.CharTokenizer("abc").encode("abz")


def test_bpe_round_trips_text_and_has_the_requested_size(tmp_path):
    tok = lm.bpe_tokenizer(SAMPLE, 300, "sample", cache=tmp_path)
    assert tok.vocab_size == 300
    for text in (SAMPLE, "unseen words: Zyzzyva! 🙂\n  x", ""):
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(SAMPLE)) < len(SAMPLE.encode("utf-8"))  # merges compress


def test_bpe_is_saved_with_the_text_hash_and_reloaded(tmp_path):
    tok = lm.bpe_tokenizer(SAMPLE, 280, "s/x", cache=tmp_path)
    assert tok.path.parent == tmp_path / "tokenizers"
    assert tok.path.name == f"bpe-s_x-280-{lm.text_hash(SAMPLE)[:16]}.json"
    again = lm.bpe_tokenizer(SAMPLE, 280, "s/x", cache=tmp_path)
    assert again.encode(SAMPLE) == tok.encode(SAMPLE)
    other = lm.bpe_tokenizer(SAMPLE + "more", 280, "s/x", cache=tmp_path)
    assert other.path != tok.path                      # a changed text trains anew
    tok.path.write_text("{not json")                   # a corrupt file is retrained
    fixed = lm.bpe_tokenizer(SAMPLE, 280, "s/x", cache=tmp_path)
    assert fixed.encode(SAMPLE) == tok.encode(SAMPLE)
    assert not list((tmp_path / "tokenizers").glob("*.part"))


@pytest.mark.parametrize("size", [0, 256, 2.5, True, "300"])
def test_bpe_bad_vocab_size(tmp_path, size):
    with pytest.raises(ValueError, match="vocab_size"):
        lm.bpe_tokenizer(SAMPLE, size, cache=tmp_path)


def test_make_tokenizer_kinds(tmp_path, monkeypatch):
    assert lm.make_tokenizer("char", "abc").vocab_size == 3
    with pytest.raises(ValueError, match="vocab_size"):
        lm.make_tokenizer("bpe", SAMPLE)
    with pytest.raises(ValueError, match="'char' or 'bpe'"):
        lm.make_tokenizer("word", SAMPLE)


def test_load_text_unknown_corpus():
    with pytest.raises(ValueError, match="tinyshakespeare"):
        lm.load_text("shakespeare")


@needs_text
def test_tinyshakespeare_loads_with_its_size():
    text = lm.load_text("tinyshakespeare")
    assert len(text) == 1_115_394 and lm.CharTokenizer(text).vocab_size == 65


# ---------------------------------------------------------------- splits and batches

def test_split_ids_contiguous_and_complete():
    ids = torch.arange(1000)
    sp = lm.split_ids(ids, 0.1, 0.05)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (850, 100, 50)
    assert torch.equal(torch.cat([sp.train, sp.val, sp.test]), ids)
    assert sp.train.max() < sp.val.min() and sp.val.max() < sp.test.min()


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (0.6, 0.5), (1.0, 0.0)])
def test_split_ids_bad_fractions(val, test):
    with pytest.raises(ValueError, match="fractions"):
        lm.split_ids(range(100), val, test)


def test_random_windows_targets_are_the_next_tokens():
    ids = torch.arange(100) * 7
    x, y = lm.random_windows(ids, 8, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 7)
    x2, _ = lm.random_windows(ids, 8, 5, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)                            # seeded
    assert int(x.max()) <= 7 * 98                        # never past the end


def test_windows_need_enough_tokens():
    with pytest.raises(ValueError, match="block"):
        lm.random_windows(torch.arange(8), 8, 2, torch.Generator())
    with pytest.raises(ValueError, match="block"):
        lm.fixed_windows(torch.arange(3), 8, 2)


def test_fixed_windows_are_fixed_by_seed():
    ids = torch.arange(500)
    assert torch.equal(lm.fixed_windows(ids, 16, 10, 3), lm.fixed_windows(ids, 16, 10, 3))
    assert not torch.equal(lm.fixed_windows(ids, 16, 10, 3), lm.fixed_windows(ids, 16, 10, 4))


# ---------------------------------------------------------------- the model

def small(tied=True, **kw):
    torch.manual_seed(0)
    return lm.GPT(lm.GPTConfig(**{"vocab_size": 13, "block": 16, "n_layer": 2, "d_model": 16,
                                  "n_head": 2, "tied": tied, **kw}))


def test_gpt_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        lm.GPTConfig(10, d_model=30, n_head=4)
    with pytest.raises(ValueError, match="n_layer"):
        lm.GPTConfig(10, n_layer=0)


def test_gpt_parameter_count_by_hand():
    v, t, d, L = 13, 16, 16, 2
    per_block = 2 * 2 * d + 3 * d * d + d * d + 2 * 4 * d * d   # 2 LayerNorms, qkv, proj, MLP
    tied = v * d + t * d + L * per_block + 2 * d
    assert lm.n_params(small(True)) == tied
    assert lm.n_params(small(False)) == tied + v * d
    m = small(True)
    assert m.head.weight is m.tok.weight


def test_gpt_is_causal_and_shapes():
    m = small().eval()
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(1))
    logits = m(idx)
    assert logits.shape == (2, 10, 13)
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 13
    assert torch.allclose(m(changed)[:, :7], logits[:, :7], atol=1e-6)
    assert not torch.allclose(m(changed)[:, 7:], logits[:, 7:], atol=1e-6)
    with pytest.raises(ValueError, match="context length"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_block_equals_the_two_residual_adds():
    torch.manual_seed(0)
    b = lm.Block(lm.GPTConfig(5, d_model=8, n_head=2))
    x = torch.randn(2, 6, 8)
    h = x + b.attn(b.ln1(x))
    assert torch.allclose(b(x), h + b.mlp(b.ln2(h)), atol=1e-6)
    assert torch.allclose(b(x), x + b.branch(x), atol=1e-6)


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    att = lm.CausalSelfAttention(lm.GPTConfig(5, d_model=8, n_head=2))
    x = torch.randn(1, 4, 8)
    q, k, v = att.qkv(x).split(8, dim=2)
    outs = []
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        w = (q[0, :, s] @ k[0, :, s].T) / 2.0
        w = w.masked_fill(torch.triu(torch.ones(4, 4, dtype=torch.bool), 1), float("-inf"))
        outs.append(torch.softmax(w, -1) @ v[0, :, s])
    assert torch.allclose(att(x)[0], att.proj(torch.cat(outs, 1)), atol=1e-5)


def test_wrap_residuals_replaces_in_place_and_rejects_plain_modules():
    m = small()

    class Scaled(nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return x + 0.5 * self.block.branch(x)

    blocks = lm.wrap_residuals(m.blocks, lambda b, i: Scaled(b))
    assert blocks is m.blocks and all(isinstance(b, Scaled) for b in m.blocks)
    with pytest.raises(TypeError, match="branch"):
        lm.wrap_residuals(nn.ModuleList([nn.Linear(2, 2)]), lambda b, i: b)


# ---------------------------------------------------------------- optimisation

def test_param_groups_decay_matrices_only_and_honour_exclude():
    m = small()
    groups = lm.param_groups(m, 0.1)
    decay, no_decay = set(groups[0]["names"]), set(groups[1]["names"])
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "blocks.0.attn.qkv.weight" in decay and "tok.weight" in decay
    assert "blocks.0.ln1.weight" in no_decay and "ln_f.bias" in no_decay
    assert decay | no_decay == {n for n, _ in m.named_parameters()} and not decay & no_decay
    groups = lm.param_groups(m, 0.1, exclude=lambda n, p: n.startswith("blocks.1."))
    assert not any(n.startswith("blocks.1.") for n in groups[0]["names"])
    opt = lm.make_optimizer(m, 1e-3, 0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    with pytest.raises(ValueError, match="lr"):
        lm.make_optimizer(m, 0.0)


def test_warmup_cosine_hand_values():
    assert lm.warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert lm.warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert lm.warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert lm.warmup_cosine(60, 10, 110, 0.1) == pytest.approx(0.55)   # half-way: (1 + 0.1)/2
    assert lm.warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lm.warmup_cosine(500, 10, 110, 0.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="warmup"):
        lm.warmup_cosine(0, 20, 10)


# ---------------------------------------------------------------- evaluation, training, timing

def test_evaluate_uniform_logits_give_log_vocab():
    m = small()
    with torch.no_grad():
        m.tok.weight.zero_()      # tied head: all logits 0
    ids = torch.randint(0, 13, (200,), generator=torch.Generator().manual_seed(0))
    starts = lm.fixed_windows(ids, 16, 7)
    assert lm.evaluate(m, ids, starts, 16, batch=3) == pytest.approx(math.log(13), rel=1e-6)


def test_evaluate_matches_cross_entropy_by_hand():
    m = small().eval()
    ids = torch.randint(0, 13, (100,), generator=torch.Generator().manual_seed(2))
    starts = torch.tensor([0, 5, 50])
    x, y = lm.windows_at(ids, starts, 16)
    want = F.cross_entropy(m(x).reshape(-1, 13), y.reshape(-1)).item()
    assert lm.evaluate(m, ids, starts, 16, batch=2) == pytest.approx(want, rel=1e-6)


def test_gpt_overfits_a_tiny_batch():
    m = small(n_layer=2)
    ids = torch.randint(0, 13, (24,), generator=torch.Generator().manual_seed(0))
    res = lm.train(m, ids, steps=200, batch=8, block=16, lr=1e-2, seed=0, warmup=10,
                   weight_decay=0.0, eval_ids=ids, eval_starts=torch.arange(8), eval_every=100)
    assert res.train_loss[0] > 2.0 and res.train_loss[-1] < 0.1
    assert res.eval_steps == [100, 200] and res.eval_loss[-1] < 0.1


def test_train_is_seeded():
    ids = torch.randint(0, 13, (300,), generator=torch.Generator().manual_seed(0))
    a = lm.train(small(), ids, steps=5, batch=4, block=16, lr=1e-3, seed=3).train_loss
    b = lm.train(small(), ids, steps=5, batch=4, block=16, lr=1e-3, seed=3).train_loss
    assert a == b
    with pytest.raises(ValueError, match="steps"):
        lm.train(small(), ids, steps=0, batch=4, block=16, lr=1e-3, seed=3)


def test_time_steps_interleaves_every_arm():
    ids = torch.randint(0, 13, (300,), generator=torch.Generator().manual_seed(0))
    res = lm.time_steps({"a": small(), "b": small(n_layer=1)}, ids, batch=2, block=16,
                        steps_per_repeat=1, repeats=3, warmup=0)
    assert res.arms == ["a", "b"] and len(res.rows) == 6
    assert [r["arm"] for r in res.rows] == ["a", "b", "b", "a", "a", "b"]   # rotated
    assert all(0 < r["value"] <= r["mean"] for r in res.rows)
    with pytest.raises(ValueError, match="steps_per_repeat"):
        lm.time_steps({"a": small()}, ids, batch=2, block=16, steps_per_repeat=0)


def test_train_loss_hook_replaces_the_objective():
    ids = torch.randint(0, 13, (300,), generator=torch.Generator().manual_seed(0))
    seen = []

    def half_loss(model, x, y):
        seen.append(x.shape)
        return 0.5 * lm.next_token_loss(model, x, y)

    full = lm.train(small(), ids, steps=3, batch=4, block=16, lr=1e-3, seed=3, grad_clip=None)
    half = lm.train(small(), ids, steps=3, batch=4, block=16, lr=1e-3, seed=3, grad_clip=None,
                    loss_fn=half_loss)
    assert seen == [(4, 16)] * 3
    assert half.train_loss[0] == pytest.approx(0.5 * full.train_loss[0], rel=1e-6)


@needs_text
def test_corpus_splits_char_and_bpe_trained_on_train_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    tok, sp = lm.corpus_splits("tinyshakespeare", "char")
    text = lm.load_text("tinyshakespeare")
    assert tok.decode(torch.cat([sp.train, sp.val, sp.test]).tolist()) == text
    assert len(sp.val) == len(sp.test) == int(len(text) * 0.05)
    bpe, bsp = lm.corpus_splits("tinyshakespeare", "bpe", 300, val=0.1, test=0.1)
    n_train = len(text) - 2 * int(len(text) * 0.1)
    assert bpe.path.name.endswith(f"-{lm.text_hash(text[:n_train])[:16]}.json")
    assert bpe.decode(bsp.test.tolist()) == text[len(text) - int(len(text) * 0.1):]
    with pytest.raises(ValueError, match="fractions"):
        lm.corpus_splits("tinyshakespeare", val=0.7, test=0.5)
