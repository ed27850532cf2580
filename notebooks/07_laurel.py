# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: effdl (venv)
#     language: python
#     name: effdl
# ---

# %% [markdown]
# # LAuReL: Learned Augmented Residual Layer
#
# **Paper.** Gaurav Menghani, Ravi Kumar and Sanjiv Kumar, *LAuReL: Learned Augmented
# Residual Layer* {cite}`menghani2025laurel`, arXiv:2411.07501, ICML 2025. Survey area:
# efficient architectures. No official code; Gemma 3n ships a low-rank "laurel" block.
#
# **The idea.** A residual layer computes $x_{i+1} = f(x_i) + x_i$. LAuReL keeps $f$ and
# replaces the bare skip by a small learned linear map:
# $x_{i+1} = \alpha f(x_i) + g(x_i, x_{i-1}, \dots)$. Three variants and their
# combinations: **RW** learns the two weights $\alpha, \beta$ of $\alpha f(x) + \beta x$;
# **LR** adds a low-rank correction $BAx$ to the skip; **PA** mixes in the inputs of the
# previous $k$ layers. The paper's headline: on ResNet-50/ImageNet, RW reaches 60 % of the
# gain of an extra layer with 0.003 % more parameters, and on a C4 language-model
# ablation every variant beats a baseline with four more layers.
#
# **What we can and cannot check.** We run the same comparisons at a scale a laptop CPU
# runs in minutes: a small character GPT on tiny-shakespeare (seven arms, paired seeds)
# and a small pre-activation ResNet on Fashion-MNIST mirroring the paper's Table 1. The
# paper's effects are a few hundredths of a nat after 10B tokens; ours are measured after
# a few hundred steps, where seed-to-seed noise is of the same size. So every effect
# comes with a paired 95 % interval, and an effect whose interval includes zero is
# reported as *not testable at this scale*, not as a win or a loss. Code:
# `effdl_lib/chapters/laurel.py` and the language-model toolkit
# `effdl_lib/toolkits/lm.py` (shared with chapter 08).

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from effdl_lib import plots
from effdl_lib.chapter import start
from effdl_lib.chapters import laurel
from effdl_lib.config import ConfigError
from effdl_lib.records import glue
from effdl_lib.stats import summarize
from effdl_lib.toolkits import lm

pd.set_option("display.max_colwidth", 200)
pd.set_option("display.precision", 4)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
seeds = None  # int [1, 50]
steps = None  # int [1, 100000]
n_layer = None  # int [1, 24]
d_model = None  # int [8, 2048]
n_head = None  # int [1, 64]
block = None  # int [8, 2048]
batch = None  # int [1, 4096]
lr = None  # float (0, 1]
warmup = None  # int [0, 100000]
weight_decay = None  # float [0, 1]
rank = None  # int [1, 1024]
k = None  # int [1, 16]
pa_h = None  # str one of identity, lowrank
eval_every = None  # int [1, 100000]
eval_windows = None  # int [1, 10000]
test_windows = None  # int [1, 100000]
time_steps = None  # int [1, 100]
time_repeats = None  # int [2, 100]
vision_steps = None  # int [1, 100000]
vision_train = None  # int [100, 60000]
vision_test = None  # int [100, 10000]
vision_batch = None  # int [1, 4096]
vision_width = None  # int [4, 512]
vision_blocks = None  # int [1, 16]
vision_rank = None  # int [1, 512]
vision_lr = None  # float (0, 1]
workers = None  # int [1, 64]

# %% [markdown]
# ## Set-up
#
# Every parameter above can be overridden from papermill (`-p NAME VALUE`; `None` takes
# the profile's value). `smoke` checks that everything runs (under a minute), `cpu` is this
# published record (a few minutes on two cores, the seeds fanned out over two worker
# processes of one thread each; the record's `duration_s` has this run's time), `gpu` a larger model and the full Fashion-MNIST.
# The verdict rules were fixed in the library before any run.

# %%
cfg, rt, record = start(laurel, profile, globals(), _names_before)
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %% [markdown]
# A bad parameter fails at once, with the valid choices:

# %%
# NBVAL_CHECK_OUTPUT
for bad in [("cpu", {"rnak": 4}), ("cpu", {"pa_h": "full"}), ("cpu", {"rank": 500})]:
    try:
        laurel.Config.resolve(*bad)
    except ConfigError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## The language-model stack
#
# `effdl_lib.toolkits.lm` is one module in the spirit of nanoGPT: a tokeniser (characters,
# or a byte-level BPE vocabulary trained with the `tokenizers` package and cached beside
# the data cache under the hash of its training text), contiguous train / validation /
# test splits (windows of text overlap their neighbours, so a random split would leak),
# batches of random windows from a seeded generator (every arm of a seed sees the same
# batches), a pre-norm GPT with `scaled_dot_product_attention`, AdamW with warm-up and
# cosine decay, and the loss on fixed evaluation windows. Each transformer block is
# written as a single residual, `x + branch(x)`, which is what lets LAuReL wrap it from
# outside:
#
# ```{literalinclude} ../effdl_lib/toolkits/lm.py
# :pyobject: Block
# ```
#
# This chapter trains on characters (a vocabulary of a few dozen symbols keeps the
# embedding and the head small next to the blocks, so the blocks, where LAuReL acts, hold most of the
# parameters). The BPE tokeniser is what chapter 08 uses; here is what it does to the
# same text:

# %%
tok, splits = laurel.lm_data()
text = lm.load_text("tinyshakespeare")
train_text = tok.decode(splits.train[:200_000].tolist())
bpe = lm.bpe_tokenizer(train_text, 512, "tinyshakespeare-train200k")
sample = text[:80]
print(f"{len(text):,} characters, {tok.vocab_size} distinct; split train / val / test = "
      f"{len(splits.train):,} / {len(splits.val):,} / {len(splits.test):,} tokens (contiguous)")
print(f"BPE, 512 ids, trained on the first 200,000 training characters: "
      f"{len(train_text) / len(bpe.encode(train_text)):.2f} characters per token; "
      f"round trip exact: {bpe.decode(bpe.encode(text)) == text}")
print([bpe.decode([i]) for i in bpe.encode(sample)][:16])

# %% [markdown]
# ## LAuReL as a wrapper
#
# `laurel.Laurel` takes any residual block (anything with
# `branch(x)` whose output is `x + branch(x)`) and recombines the branch and the skip;
# `laurel.wrap(blocks, ...)` wraps every block of a group (a GPT's blocks, a ResNet
# stage) and gives them a shared history for PA. The block itself is not edited.
#
# ```{literalinclude} ../effdl_lib/chapters/laurel.py
# :pyobject: Laurel.forward
# ```
#
# Three choices the paper leaves open matter at initialisation:
#
# - **RW is bounded and reproduces the baseline at init.** We use
#   $(\alpha, \beta) = 2\,\mathrm{softmax}(w)$ with $w = 0$: exactly $(1, 1)$. Plain
#   $\mathrm{softmax}(0)$ would give $(0.5, 0.5)$ and halve both paths.
# - **B = 0, A not** (as in LoRA): the low-rank term starts at zero; A's gradient is
#   exactly zero at the first step and B's is not, so both move from the second step.
# - **No PA deadlock.** With identity $h$ the mixing weights $\gamma$ start at 0 (their
#   gradient is nonzero because the earlier activations are); with low-rank $h$ (and in
#   RW+LR+PA) $\gamma$ starts at 1 and $B$ at 0. $\gamma = 0$ together with $B = 0$ would
#   give both a zero gradient for ever. Before the first block, the history is clamped to
#   $x_0$, so every $\gamma$ has something to learn from.
#
# A check of all three on the chapter's own model, every variant: the largest difference
# from the baseline's output at init, the parameters added per block against the paper's
# formulas (RW 2; LR $2rD$; PA $k$ with identity $h$; RW+LR $2rD + 2$; RW+LR+PA
# $2rkD + k + 2$), and the share of LAuReL tensors that are undecayed and have moved
# after three AdamW steps:

# %%
# NBVAL_CHECK_OUTPUT
probe = torch.randint(0, tok.vocab_size, (2, cfg.block), generator=torch.Generator().manual_seed(0))
base_model = laurel.build_gpt(laurel.BASELINE, tok.vocab_size, cfg, seed=0)
rows = []
for v in laurel.VARIANTS:
    m = laurel.build_gpt(v, tok.vocab_size, cfg, seed=0)
    with torch.no_grad():
        diff = float((m(probe) - base_model(probe)).abs().max())
    rows.append({"variant": v, "max |output - baseline| at init": f"{diff:.1e}",
                 "added per block": sum(p.numel() for _, p in laurel.own_params(m)) // cfg.n_layer,
                 "paper's formula": laurel.laurel_params(v, cfg.d_model, cfg.rank, cfg.k, cfg.pa_h)})
print(pd.DataFrame(rows).set_index("variant").to_string())
print(f"LAuReL tensors undecayed and moved after 3 steps: {laurel.no_stuck_parameters():.0%}")

# %% [markdown]
# ## The experiment
#
# Language model: a pre-norm character GPT with {glue:text}`n_layer` layers of width
# {glue:text}`d_model`, context {glue:text}`block`, batch {glue:text}`batch`, trained for
# {glue:text}`steps` AdamW steps (peak learning rate {glue:text}`lr`, warm-up and cosine
# decay, weight decay {glue:text}`weight_decay` on matrices only), on
# {glue:text}`seeds` paired seeds. Seven arms: the baseline, the baseline with one more
# layer, and the five LAuReL variants wrapping every block of the baseline (rank
# {glue:text}`rank` for LR, PA over $k$ = {glue:text}`k` earlier inputs). A seed fixes the
# block weights (LAuReL's own parameters are created after them, so the baseline and a
# LAuReL arm of a seed start from the same blocks) and the batch order. The score is the
# loss on {glue:text}`test_windows` fixed windows of the test split; the validation
# split gives the loss curves; nothing is chosen on either.
#
# Vision: the same five-row design as the paper's Table 1, on a small pre-activation
# ResNet (a stride-2 stem, two stages of {glue:text}`vision_blocks` identity blocks,
# widths {glue:text}`vision_width` and twice that) trained on
# {glue:text}`vision_train` Fashion-MNIST images for {glue:text}`vision_steps` steps and
# scored on {glue:text}`vision_test` test images. LAuReL wraps every identity block (one
# history per stage; Xavier A as the paper does for ResNet, rank
# {glue:text}`vision_rank`); the "+1 layer" arm has one more block in the second stage.
#
# **What was tuned and what was not.** Nothing was tuned per arm: every arm uses the
# baseline's learning rate, schedule and step count, chosen once for the baseline from
# nanoGPT-like defaults. The deeper arm may therefore be under-trained (a deeper model
# often wants a smaller learning rate and more steps), and a short run measures
# optimisation speed as much as capacity; the loss curves below show which.

# %%
for _name in ("n_layer", "d_model", "block", "batch", "steps", "lr", "weight_decay", "seeds",
              "rank", "k", "test_windows", "vision_blocks", "vision_width", "vision_train",
              "vision_steps", "vision_test", "vision_rank"):
    glue(_name, getattr(cfg, _name))

# %%
results = laurel.run(cfg)
print(f"{len(results.lm)} language-model runs and {len(results.vision)} vision runs "
      f"({cfg.workers} worker process(es), one thread each)")

# %% [markdown]
# ## Language model: seven arms
#
# Test loss per arm (mean over seeds and its 95 % interval half-width), the gain over the
# baseline paired by seed (positive: better), the share of the +1-layer gain (a paired
# bootstrap; only when that gain is itself resolved), the parameters each arm adds, and
# the step time relative to the baseline (interleaved, see below) beside its FLOP floor
# (the extra arithmetic LAuReL adds per block, the overhead an ideal implementation would
# pay).

# %%
lm_table = laurel.lm_summary(results)
lm_table

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Test-loss gain over the same-depth baseline (baseline minus arm, nats per character; positive is better), mean and 95 % t-interval over paired seeds. Orange: the +1-layer arm.", "name": "fig-laurel-lm-gain"}}
gain_rows = pd.DataFrame([{"arm": a, "mean": lm_table.loc[a, "gain"],
                           "ci_low": lm_table.loc[a, "gain CI low"],
                           "ci_high": lm_table.loc[a, "gain CI high"]} for a in laurel.LM_ARMS[1:]])
ax = plots.bar_with_ci(gain_rows, "arm", highlight=(laurel.DEEPER,), xlabel="test-loss gain over baseline (nats)",
                       ylabel="arm", highlight_label="+1 layer", other_label="LAuReL variant")
ax.axvline(0, color="k", lw=0.8)
plt.show()

# %% [markdown]
# The paper's C4 ablation beside ours, in the same columns. The paper's deeper arm has
# four more layers (24 to 28), ours one more on {glue:text}`n_layer`, so "share of deeper
# gain" measures a variant against a different step of depth in the paper than here.

# %%
laurel.paper_vs_ours_lm(lm_table)

# %% [markdown]
# ### Faster optimisation or more capacity?
#
# The validation loss during training, and each arm's gain over the baseline at every
# evaluation (paired by seed). A gain that appears early and then shrinks is faster
# optimisation (RW in particular acts like a learned scaling of the branch, as in
# ReZero); a gain that grows with training is capacity.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: validation loss against training steps, mean over seeds. Right: validation-loss gain over the baseline (baseline minus arm, paired by seed), mean and 95 % t-interval.", "name": "fig-laurel-curves"}}
curve = laurel.curves(results)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for arm, g in curve.groupby("arm", sort=False):
    m = g.groupby("step").val_loss.mean()
    ax1.plot(m.index, m.to_numpy(), label=arm, marker=".")
ax1.set_xlabel("training step")
ax1.set_ylabel("validation loss (nats per character)")
ax1.legend(title="arm")
ax1.grid(alpha=0.3)
plots.lines_with_ci(laurel.curve_gains(results), "step", "arm", ax=ax2, xlabel="training step",
                    ylabel="gain over baseline (nats), mean and 95% CI")
ax2.axhline(0, color="k", lw=0.8)
plt.show()

# %% [markdown]
# What RW learned: the mean of $(\alpha, \beta)$ per block over seeds, at the end of
# training (both start at 1).

# %%
ab = results.lm[results.lm.arm.str.startswith("RW")][["arm", "seed", "alpha_beta"]]
learned = pd.DataFrame([{"arm": r.arm, "block": i, "alpha": a, "beta": b}
                        for r in ab.itertuples() for i, (a, b) in enumerate(r.alpha_beta)])
learned.groupby(["arm", "block"])[["alpha", "beta"]].mean()

# %% [markdown]
# ## Step time
#
# One training step (forward, backward, AdamW) of each arm's model, the arms interleaved
# and their order rotated every repeat, one thread; each repeat keeps the fastest of its
# steps (interference only adds time), and the ratio to the baseline is a paired
# bootstrap over repeats, and the busy share of the other cores during the timed section
# is recorded (the machine is shared, so absolute times are noisy and only ratios within
# the run are reported). At this size a LAuReL block adds a handful of small tensor
# operations to a block of a dozen, so per-operation overhead, not arithmetic, sets its
# cost; the FLOP floor is what the arithmetic alone would cost.

# %%
timing = results.timing
step_ms = timing.summary().drop(columns="n") * 1000
step_ms.columns = [f"{c} (ms)" for c in step_ms.columns]
print(step_ms.round(1).to_string())
print("interference:", timing.gate() or "quiet")
print(f"threads: {timing.threads}")

# %% [markdown]
# ## Vision analogue: Table 1
#
# Test accuracy of the small ResNet per arm, the gain over the baseline paired by seed,
# and the parameters added; the paper's ResNet-50/ImageNet numbers beside ours.

# %%
vision_table = laurel.vision_summary(results)
vision_table

# %%
laurel.paper_vs_ours_vision(vision_table)

# %% [markdown]
# ## Claims and verdicts
#
# Each claim's rule was fixed before the run. Loss and accuracy effects are paired
# differences over seeds; when the 95 % interval of an effect includes zero, the run
# cannot tell its sign and the claim is *not testable at this scale*. The share of the
# +1-layer gain exists only when that gain is itself resolved.
#
# ```{literalinclude} ../effdl_lib/chapters/laurel.py
# :pyobject: measure
# ```

# %%
record.check_all(laurel.measure(results))
record.extra["lm_summary"] = laurel.plain_records(lm_table)
record.extra["vision_summary"] = laurel.plain_records(vision_table)
record.extra["timing"] = {"summary": timing.summary().reset_index().to_dict("records"),
                          "interference": timing.interference.as_dict(),
                          "threads": timing.threads}
_checks = {c.claim.id: c for c in record.checks}
glue("verdicts", "; ".join(f"{c.claim.id}: {c.verdict}" for c in record.checks))
glue("deeper_gain", float(lm_table.loc[laurel.DEEPER, "gain"]))
glue("deeper_lo", float(lm_table.loc[laurel.DEEPER, "gain CI low"]))
glue("deeper_hi", float(lm_table.loc[laurel.DEEPER, "gain CI high"]))
glue("rwlrpa_gain", float(lm_table.loc["RW+LR+PA", "gain"]))
glue("rwlrpa_lo", float(lm_table.loc["RW+LR+PA", "gain CI low"]))
glue("rwlrpa_hi", float(lm_table.loc["RW+LR+PA", "gain CI high"]))
glue("rw_gain", float(lm_table.loc["RW", "gain"]))
glue("rwlr_time", float(lm_table.loc["RW+LR", "step time ratio"]))
glue("rwlr_floor", float(lm_table.loc["RW+LR", "FLOP floor"]))
glue("rwlrpa_params", int(lm_table.loc["RW+LR+PA", "added params"]))
glue("deeper_params", int(lm_table.loc[laurel.DEEPER, "added params"]))
glue("v_deeper", float(vision_table.loc[laurel.DEEPER, "gain (points)"]))
glue("v_rw", float(vision_table.loc["RW", "gain (points)"]))
glue("n_resolved", sum(c.verdict != "not testable at this scale" for c in record.checks))
glue("n_claims", len(record.checks))
glue("rw_params", int(lm_table.loc["RW", "added params"]))
glue("our_tokens", cfg.steps * cfg.batch * cfg.block)
glue("token_ratio", 10e9 / (cfg.steps * cfg.batch * cfg.block))
record.table()

# %% [markdown]
# ## What we found
#
# - **The positive control.** One more layer changed the language model's test loss by
#   {glue:text}`deeper_gain:+.4f` nats (95 % CI {glue:text}`deeper_lo:+.4f` to
#   {glue:text}`deeper_hi:+.4f`) for {glue:text}`deeper_params:,` more parameters. This
#   is the yardstick the paper measures LAuReL against.
# - **LAuReL on the language model.** RW+LR+PA changed the test loss by
#   {glue:text}`rwlrpa_gain:+.4f` nats (95 % CI {glue:text}`rwlrpa_lo:+.4f` to
#   {glue:text}`rwlrpa_hi:+.4f`) with {glue:text}`rwlrpa_params:,` extra parameters; RW
#   ({glue:text}`rw_params` parameters in all) by {glue:text}`rw_gain:+.4f`. The table and the figure above
#   give every variant; the claim table says which effects the seeds resolve.
# - **Cost.** RW+LR's step time was {glue:text}`rwlr_time:.3f` times the baseline's,
#   against a FLOP floor of {glue:text}`rwlr_floor:.3f` (the arithmetic it adds). What
#   lies above the floor is the per-operation cost of a few more small kernels, which
#   matters at a width of {glue:text}`d_model` and fades as the blocks grow, as the
#   paper's 1-2 % at 4B parameters suggests.
# - **Vision.** One more block changed the small ResNet's accuracy by
#   {glue:text}`v_deeper:+.2f` points, RW by {glue:text}`v_rw:+.2f`.
# - {glue:text}`n_resolved` of {glue:text}`n_claims` claims were decided; the others are
#   below the seed noise of a few hundred steps and a handful of seeds. The paper's
#   effects (about 0.06 nats on C4, 0.15-0.30 points on ImageNet) come from runs that see
#   about {glue:text}`token_ratio:,.0f` times more tokens (10B on C4 against our
#   {glue:text}`our_tokens:,` per run); whether LAuReL's gains need that scale is what
#   this chapter cannot settle. Verdicts: {glue:text}`verdicts`.

# %%
record.write();
