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
# # The survey's practitioner's guide: Shrink-and-Improve on CIFAR-10
#
# **Paper.** Gaurav Menghani, *Efficient Deep Learning: A Survey on Making Deep Learning
# Models Smaller, Faster, and Better* {cite}`menghani2023survey`, ACM Computing Surveys
# 55(12), 2023, arXiv:2106.08962.
#
# **The survey's map.** Five areas: *compression* (pruning, quantization, low-rank
# factorisation, weight sharing), *learning techniques* (distillation, augmentation,
# self-supervision), *automation* (hyper-parameter search, NAS), *efficient architectures*
# (depthwise-separable convolutions, efficient attention) and *infrastructure*
# (frameworks, compilers, hardware). The book's {doc}`survey map <../book/survey_map>`
# hangs every chapter of this companion on it.
#
# **The guide's experiment**, which this chapter re-runs: a VGG-like CNN on CIFAR-10
# with a width multiplier $w$, trained as a baseline, with augmentation, and with
# augmentation plus distillation from a wider teacher, each exported in float and in
# int8. Its reading, **Shrink-and-Improve**: shrink the model, recover quality with
# learning techniques, then quantize. In the guide's table the $w = 0.25$ model with
# augmentation, distillation and int8 reaches 84.18 % against 84.42 % for the $w = 1.0$
# float baseline, from a 47x smaller file. (**Grow-Improve-and-Shrink** is the other
# strategy: grow, improve, then compress back; the teacher plus compression below is its
# small version.)
#
# **What we fix** in the original notebook (the paper note lists its flaws): checkpoints
# were chosen on the test set (here on a validation split); the learning-rate schedule,
# dropout and L2 differed between the arms of a width (here one schedule and one
# regularisation per width); the KD loss applied softmax twice at $T = 1$ without the
# $T^2$ factor (here Hinton's loss at a fixed $T = 4$, the teacher queried on the same
# augmented batch the student sees); one seed per arm
# (here paired seeds); int8 calibrated on test images (here on training images).
#
# **Scale.** Training this CNN on a CPU runs at a few hundred images per second per
# thread, so the cpu profile uses 1,500 training images, 4 epochs, two widths, three
# paired seeds and a $w = 0.5$ teacher instead of $w = 1.4$: absolute accuracies are far below the
# guide's, and only the differences between arms, paired by seed, are tested. This
# chapter may take up to 10 minutes (the issue allows it) because fewer images would
# leave nothing to compare. The accuracies are on the offline JPEG copy of CIFAR-10.
# Code: `effdl_lib/chapters/survey_guide.py`.

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdl_lib import plots
from effdl_lib.chapter import start
from effdl_lib.chapters import survey_guide as sg
from effdl_lib.config import ConfigError
from effdl_lib.records import glue

pd.set_option("display.max_colwidth", 200)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
seeds = None  # int [1, 20]
widths = None  # tuple[float, ...] [0.05, 3]
teacher_width = None  # float [0.05, 3]
n_train = None  # int [100, 49000]
n_val = None  # int [100, 10000]
n_test = None  # int [100, 10000]
epochs = None  # int [1, 500]
teacher_epochs = None  # int [1, 500]
batch_size = None  # int [1, 4096]
lr = None  # float (0, 1]
weight_decay = None  # float [0, 1]
dropout = None  # float [0, 1)
temperatures = None  # tuple[float, ...] (0, 100]
kd_alpha = None  # float [0, 1]
calibration_images = None  # int [1, 10000]
latency_repeats = None  # int [1, 1000]
sparsities = None  # tuple[float, ...] [0, 1)
channel_ratio = None  # float (0, 1)
finetune_epochs = None  # int [0, 100]
ranks = None  # tuple[int, ...] [1, 4096]

# %% [markdown]
# ## Set-up

# %%
cfg, rt, record = start(sg, profile, globals(), _names_before)
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %% [markdown]
# A bad parameter fails at once, with the valid choices:

# %%
# NBVAL_CHECK_OUTPUT
for bad in [("cpu", {"teacher_width": 0.1}), ("cpu", {"widths": [0.01]}), ("cpu", {"sparsities": [1.0]})]:
    try:
        sg.Config.resolve(*bad)
    except ConfigError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## The model, counted as the guide counts it
#
# Keras's "Total params" includes BatchNorm's moving mean and variance; PyTorch keeps
# those as buffers. Our PyTorch build of the guide's layer list gives the guide's count at
# all seven widths once the buffers are added (the `keras` column); the `torch` column
# is PyTorch's own count of trainable parameters.
#
# ```{literalinclude} ../effdl_lib/chapters/survey_guide.py
# :pyobject: GuideCNN
# ```

# %%
# NBVAL_CHECK_OUTPUT
counts = pd.DataFrame([{"w": w, "paper (Keras)": row[0], "ours, keras": sg.keras_params(sg.GuideCNN(w)),
                        "ours, torch": sg.n_params(sg.GuideCNN(w))} for w, row in sg.PAPER_TABLE.items()])
print(counts.to_string(index=False))

# %% [markdown]
# ## Training every arm
#
# Per seed: one teacher (the widest model, with augmentation), then for each width the
# three arms from the same initialisation, the same schedule (Adam, cosine decay),
# dropout and L2; the best epoch on validation is kept; the int8 model is calibrated on
# training images. The distillation loss is $(1-\alpha)\,\mathrm{CE} + \alpha
# T^2\,\mathrm{KL}$, against the teacher's logits on the same augmented batch.

# %%
results = sg.run(cfg, rt)
acc = sg.accuracy_table(results["runs"])
acc.assign(mean=100 * acc["mean"], ci_low=100 * acc["ci_low"], ci_high=100 * acc["ci_high"],
           KB=acc["bytes"] / 1024).round(2).set_index(["w", "arm", "precision"])

# %% [markdown]
# ## The guide's table beside ours
#
# The paper's columns are from its own notebook at 100 epochs on 50,000 images; ours at
# the cpu profile's scale. KB are serialized model sizes (TFLite files in the guide,
# PyTorch state dicts here).

# %%
sg.paper_beside_ours(results["runs"]).round(2).set_index("w")

# %% [markdown]
# ## The quality/footprint Pareto front
#
# Accuracy against model bytes (log scale), one line per arm over the widths, float32
# solid and int8 dashed. Shrink-and-Improve reads this plot from the lower left: a small
# model with learning techniques and int8 against a large float model.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Test accuracy against serialized model size per arm, float32 (solid) and int8 (dashed), mean over seeds.", "name": "fig-guide-pareto"}}
fig, ax = plt.subplots(figsize=(7, 4.2))
colors = {"base": "tab:gray", "aug": "tab:blue", "aug_kd": "tab:orange"}
for arm in sg.ARMS:
    for precision, style in (("fp32", "-"), ("int8", "--")):
        g = acc[(acc.arm == arm) & (acc.precision == precision)].sort_values("bytes")
        ax.errorbar(g["bytes"] / 1024, 100 * g["mean"], yerr=100 * (g["ci_high"] - g["mean"]),
                    ls=style, marker="o" if precision == "fp32" else "s", color=colors[arm],
                    label=f"{arm}, {precision}", capsize=2)
ax.set_xscale("log")
ax.set_xlabel("serialized model size (KB, log scale)")
ax.set_ylabel("test accuracy (%)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Beyond int8: pruning and low-rank factorisation
#
# On the largest student width with augmentation and distillation: unstructured
# magnitude pruning at several sparsities (fine-tuned, then re-pruned), structured
# channel pruning with `torch-pruning` (fine-tuned), and a rank sweep of the SVD of the
# largest dense layer (not fine-tuned). Unstructured zeros shrink the *compressed* file
# but not the dense one; structure removes parameters outright.

# %%
comp = results["compression"].groupby(["method", "setting"], sort=False).mean(numeric_only=True)
comp.drop(columns="seed").assign(test_acc=lambda d: 100 * d.test_acc).round(3)

# %% [markdown]
# ## Latency
#
# Seconds per forward pass, interleaved repeats (the bench toolkit), at batch 1 and 256,
# for the float and int8 models and the pruned variants of the last seed. The minimum
# and a low quantile are reported because interference only adds time; the interference
# measured during the timed section decides whether a timing verdict is issued.

# %%
lat = pd.concat({b: r.summary() for b, r in results["timings"].items()}, names=["batch", "model"])
print(f"threads: {results['timings'][256].threads}")
for b, r in results["timings"].items():
    print(f"batch {b}: {r.interference.describe()}")
_ms = [c for c in lat.columns if c != "n"]
lat.assign(**{c: 1e3 * lat[c] for c in _ms}).round(3).rename(columns={c: f"{c} (ms)" for c in _ms})

# %% [markdown]
# ## Claims
#
# Rules and origins were fixed in `effdl_lib/chapters/survey_guide.py` before running;
# `measure` computes every estimate there.
#
# ```{literalinclude} ../effdl_lib/chapters/survey_guide.py
# :pyobject: measure
# ```

# %%
record.check_all(sg.measure(results))
_sai = sg.shrink_and_improve(results["runs"])
_widths = sorted(w for w in acc.w.unique() if w != cfg.teacher_width)
_t = acc.set_index(["w", "arm", "precision"])["mean"]
glue("w_small", float(_widths[0]))
glue("w_large", float(_widths[-1]))
glue("acc_small_augkd_int8", float(_t[_widths[0], "aug_kd", "int8"]))
glue("acc_large_base", float(_t[_widths[-1], "base", "fp32"]))
glue("teacher_acc", float(_t[cfg.teacher_width, "teacher", "fp32"]))
glue("sai_text", (f"the smallest width within 0.5 points of that baseline is w = {_sai['width']:g}, "
                  f"at {_sai['size_ratio']:.1f}x fewer bytes") if _sai.get("width") is not None
     else "no width with augmentation, distillation and int8 comes within 0.5 points of it at this scale")
_v = {c.claim.id: c.verdict for c in record.checks}
for _cid in ("augmentation-helps", "distillation-adds", "int8-costs-little", "shrink-and-improve"):
    glue(f"verdict_{_cid}", _v[_cid])
_learning = [_c for _c in ("augmentation-helps", "distillation-adds") if _v[_c] != "reproduced"]
glue("scale_reading", "Both learning techniques help even at this scale." if not _learning else
     "Where a learning technique does not help here, a plausible reason (our hypothesis, not "
     "tested) is the scale: with 1,500 images and four epochs augmentation may slow "
     "learning more than it regularises, and a small teacher has less to teach.")
record.table()

# %% [markdown]
# **Reading the record.** The w = {glue:text}`w_large` float baseline reaches
# {glue:text}`acc_large_base:.1%` and the teacher {glue:text}`teacher_acc:.1%`; the
# w = {glue:text}`w_small` model with augmentation, distillation and int8 reaches
# {glue:text}`acc_small_augkd_int8:.1%`; {glue:text}`sai_text`. Augmentation:
# **{glue:text}`verdict_augmentation-helps`**; distillation on top:
# **{glue:text}`verdict_distillation-adds`**; int8 costing at most half a point:
# **{glue:text}`verdict_int8-costs-little`**; Shrink-and-Improve:
# **{glue:text}`verdict_shrink-and-improve`**. {glue:text}`scale_reading` The gpu
# profile runs the guide's widths, 44,000 images and 100 epochs.
#
# **Limits.** Two widths, three seeds and one teacher width in the cpu profile; latency on a
# shared 2-core machine (timing verdicts withheld when interference was measured); the
# paper's latency columns are not reproducible from its repository and are not compared.

# %%
record.write();
