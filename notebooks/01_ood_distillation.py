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
# # Distillation through out-of-distribution unlabeled data
#
# **Paper.** Gaurav Menghani and Sujith Ravi, *Learning from a Teacher using Unlabeled
# Data* {cite}`menghani2019ood`, arXiv:1911.05275. Survey area: learning techniques
# (distillation).
#
# **What the paper says.** Its abstract: a teacher captures relationships between
# classes that extend beyond its training data, and it can transfer them to a student
# through *out-of-distribution* (OOD) unlabeled data, with results on MNIST, CIFAR-10
# and Caltech-256. Its introduction and figure captions describe the procedure: a
# "blind-distilled" student learns only from the teacher's soft labels on unlabeled OOD
# images, never seeing an in-distribution image or label, and is then fine-tuned with
# labels and compared with the same student trained from scratch on those labels.
#
# **What comes from elsewhere.** That structured images transfer more than
# structure-free ones is the finding of Kulkarni et al. {cite}`kulkarni2017mismatched`
# ("stimulus complexity is a key factor"), not of this paper. The rest of what is tested
# here is this companion's own design, and each claim below says so in its *origin*
# column: the control (the same images labelled by a random-init teacher), the
# fine-tuning of that control and of a noise-distilled student (to separate the
# teacher's knowledge from mere pre-training), the shrinking advantage as labels grow,
# and the effect of the transfer-set size.
#
# **What we can and cannot check.** The paper's body (architectures, temperature,
# transfer-set sizes, which OOD source went with which dataset, every number) was not
# readable offline, so no paper number is quoted and every claim is tested
# qualitatively, on MNIST only. Code: `effdl_lib/chapters/ood_distillation.py`.

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from effdl_lib import plots
from effdl_lib.chapter import start
from effdl_lib.chapters import ood_distillation as ood
from effdl_lib.config import ConfigError
from effdl_lib.records import glue
from effdl_lib.stats import summarize
from effdl_lib.toolkits.distill import kd_loss

pd.set_option("display.max_colwidth", 400)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
seeds = None  # int [1, 50]
val_size = None  # int [1000, 20000]
teacher_train = None  # int [100, 59000]
teacher_steps = None  # int [1, 100000]
transfer_size = None  # int [10, 60000]
transfer_sizes = None  # tuple[int, ...] [10, 60000]
select_per_source = None  # int [10, 1000]
student_steps = None  # int [1, 100000]
student_hidden = None  # int [4, 4096]
temperatures = None  # tuple[float, ...] (0, 1000)
k_shots = None  # tuple[int, ...] [1, 500]
finetune_steps = None  # int [1, 100000]
finetune_steps_check = None  # int [0, 100000]
batch_size = None  # int [1, 65536]
lr = None  # float (0, 1)
sources = None  # tuple[str, ...] one of fashion, notmnist, cifar_patches, noise, shuffled_mnist, mnist
balance_classes = None  # bool

# %% [markdown]
# ## Set-up
#
# Every parameter above can be overridden from papermill (`-p NAME VALUE`; `None` takes
# the profile's value); `profile` picks the base values (`smoke` for CI, `cpu` for this
# published record, `gpu` for more seeds and steps on a GPU). The verdict rules are
# fixed in the library before any run.

# %% tags=["hide-input"]
cfg, rt, record = start(ood, profile, globals(), _names_before)
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %% [markdown]
# A bad parameter fails at once, with the valid choices; so does a student that would
# not be clearly smaller than its teacher, or a transfer set so large that every seed
# would draw the same images:

# %%
# NBVAL_CHECK_OUTPUT
for bad in [("huge", {}), ("cpu", {"tempreature": 2.0}), ("cpu", {"seeds": "three"}),
            ("cpu", {"student_hidden": 256}), ("cpu", {"transfer_size": 9000})]:
    try:
        ood.Config.resolve(*bad)
    except ConfigError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# The distillation loss is Hinton et al.'s {cite}`hinton2015distilling`, from the shared
# distillation toolkit: $T^2\,\mathrm{KL}(p_T^{\text{teacher}} \,\|\,
# p_T^{\text{student}})$ with both distributions softened by the temperature $T$.
#
# ```{literalinclude} ../effdl_lib/toolkits/distill.py
# :pyobject: kd_loss
# ```
#
# A hand-checkable case: identical logits give 0; logits $(0, 0)$ against a teacher at
# $(\ln 3, 0)$ with $T=1$ give $\tfrac34\ln\tfrac32 + \tfrac14\ln\tfrac12 = 0.1308$.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(kd_loss(torch.zeros(1, 2), torch.tensor([[np.log(3.0), 0.0]]), 1.0)), 4))
print(round(float(kd_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]), 4.0)), 4))

# %% [markdown]
# ## Data and transfer sets
#
# MNIST's 60,000 training images are split once: a labelled validation set (used only in
# the disclosed ablation below, never to choose what is reported) and a pool for the
# teacher, the unlabeled in-distribution upper bound and the k-shot labels. The transfer
# sources, all 28x28 grayscale in [0, 1] with MNIST's polarity:
#
# | source | what | role |
# |---|---|---|
# | `fashion` | Fashion-MNIST training images | real OOD |
# | `notmnist` | notMNIST letters A-J (9,000 of the 10,000 offline; 1,000 held out) | real OOD |
# | `cifar_patches` | one random 28x28 crop per grayscale CIFAR-10 training image (JPEG copy) | real OOD |
# | `noise` | uniform noise | structure-free |
# | `shuffled_mnist` | MNIST with each image's pixels shuffled | structure-free |
# | `mnist` | unlabeled MNIST | in-distribution upper bound |
# | `control:<source>` | the *same* images of a real OOD source, labelled by a random-init teacher | knowledge-free control |
#
# Every seed draws its own transfer set without replacement; the transfer size is at
# most 60 % of the smallest pool (notMNIST's 9,000), so sets differ from seed to seed
# and the intervals include the sampling of the transfer set.

# %% mystnb={"figure": {"caption": "Eight examples from each transfer source, as the teacher sees them (white on black, like MNIST).", "name": "fig-ood-sources"}}
splits = ood.mnist_splits(cfg.val_size)
print(f"MNIST pool {len(splits.pool_x)}, validation {len(splits.val_x)}, "
      f"test {len(splits.test_x)}")
_rng = np.random.default_rng(0)
fig = plots.image_grid({s: ood.transfer_set(s, 8, _rng, splits.pool_x) for s in cfg.sources},
                       title="Examples from each transfer source")
plt.show()

# %% [markdown]
# ## The experiment
#
# One call runs everything, in this order:
#
# 1. **The teacher**, trained once on labelled MNIST, and a **random teacher** of the
#    same architecture. Seeds vary the transfer sample, the student's initialisation and
#    its batch order, never the teacher, so all arms are paired by seed.
# 2. **Selection without MNIST labels.** For every source and temperature, a student on
#    a selection seed that no reported run uses is scored by its *class-balanced
#    agreement with the teacher on held-out OOD images* (Fashion-MNIST and CIFAR-10 test
#    images, the 1,000 held-out notMNIST letters, fresh noise; none can appear in a
#    transfer set, none is MNIST). Each source gets its most-agreeing temperature; the
#    best real OOD source and the best structure-free source are the most-agreeing ones.
# 3. **Blind students** for every source and seed; for each real OOD source, the control
#    student learns from the *same images* labelled by the random teacher, at the same
#    temperature, from the same initialisation, in the same batch order. The only
#    difference is the teacher's knowledge. Smaller subsets of each real OOD transfer
#    set, at the same number of gradient steps, give the transfer-size curve. Each seed
#    and source is one task of the grid runner (chapter 10): on one machine a worker
#    process per core (or `EFFDL_WORKERS`), on a cluster wherever `EFFDL_SCHEDULER`
#    points. Every task seeds its own students and trains them on one thread, so the
#    numbers do not depend on where or in which order the tasks ran; `make book`, which
#    runs this chapter beside another one, keeps the tasks in the notebook's process.
# 4. **Fine-tuning** with k labels per class, from the best OOD student, from its control
#    student, from the noise student, and from scratch (the same initialisation), paired
#    by seed; k = 0 is each start untouched. The blind start and scratch are also trained
#    with a larger step budget, to check that scratch is not under-trained.
#
# ```{literalinclude} ../effdl_lib/chapters/ood_distillation.py
# :pyobject: run
# ```

# %%
results = ood.run(cfg, rt, splits)
for _name, _value in ood.prose_values(results).items():
    glue(_name, _value)
results.phases  # seconds per phase: wall clock, and process CPU time

# %% [markdown]
# ## Teacher and student
#
# The teacher is a small CNN, the student a one-hidden-layer MLP with
# {glue:text}`student_params:,` parameters, {glue:text}`student_share:.0%` of the
# teacher's {glue:text}`teacher_params:,` (distillation as compression). The teacher
# reaches {glue:text}`teacher_acc:.1%` on the MNIST test set; the random teacher
# {glue:text}`random_teacher_acc:.1%`, sending {glue:text}`random_top_share:.0%` of the
# test images to a single digit.

# %% [markdown]
# ## Choosing the temperature and the source without MNIST labels
#
# Balanced agreement with the teacher on the held-out OOD images, per source and
# temperature (the selection seed's students). The chosen temperature of each source
# is its row's maximum.

# %% tags=["hide-input"]
results.selection.pivot(index="arm", columns="temperature", values="select_agree").round(3)

# %% [markdown]
# **Ablation: selection with MNIST labels (disclosed, not used).** The same students
# scored on {glue:text}`val_size:,` labelled MNIST validation images, as the first
# version of this chapter did. Labelled selection would pick {glue:text}`lab_best_ood` as the best OOD source
# ({glue:text}`selection_same` as the label-free rule) and a different temperature for
# {glue:text}`temps_differ` of the sources.

# %% tags=["hide-input"]
_sel = results.selection.pivot(index="arm", columns="temperature", values="val_acc").round(3)
_sel.assign(chosen_T=_sel.index.map(results.temps),
            labelled_T=_sel.index.map(results.labelled_choice["temps"]))

# %% [markdown]
# So a blind student here saw the OOD transfer images and the teacher's soft labels on
# them; its temperature and source were chosen from held-out OOD images and the
# teacher's predictions on them. It never saw an MNIST image or label (the
# `shuffled_mnist` and `mnist` arms see MNIST pixels by construction).

# %% [markdown]
# ## Blind distillation and its control
#
# Each student sees only its teacher's soft labels on its transfer set, for the same
# number of gradient steps in every arm. Beside test accuracy: how often the student
# agrees with the trained teacher, and with its *own* teacher, on the MNIST test images.
# Agreement is not accuracy: the control students agree with their random teacher far
# more than they are right.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "MNIST test accuracy of blind students per transfer source (orange: real OOD sources) and of their random-teacher controls on the same images; mean and 95 % t-interval over seeds. The dotted line is chance.", "name": "fig-ood-blind"}}
blind_summary = ood.blind_summary(results.blind)
ax = plots.bar_with_ci(blind_summary.reset_index(), "arm", scale=100,
                       highlight=ood.OOD_SOURCES,
                       title=f"Blind students, n={cfg.seeds} seeds")
ax.axvline(10, color="gray", ls=":", label="chance (10 %)")
ax.set_xlabel("MNIST test accuracy (%)")
ax.set_ylabel("transfer source (teacher)")
ax.legend(loc="lower right")
plt.show()

# %% tags=["hide-input"]
blind_summary.round(4)

# %% [markdown]
# Paired by seed, each real OOD source against its control (same images, same
# temperature, same initialisation; accuracy, 0.01 = 1 point):

# %% tags=["hide-input"]
ood.control_table(results.blind).round(4)

# %% [markdown]
# **What each teacher says about each source.** The share of seed 0's transfer set that
# the teacher assigns to each digit. A source that the teacher maps to one or two digits
# teaches the student little about the rest; the random teacher's rows show why its
# students stay near chance. Class-balanced resampling (`balance_classes=True`) is
# available but off in this record.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Share of each transfer set (seed 0) that the trained teacher, or for control rows the random teacher, assigns to each digit.", "name": "fig-ood-histogram"}}
hist = results.hist
fig, ax = plt.subplots(figsize=(7, 0.38 * len(hist) + 1))
im = ax.imshow(hist.to_numpy(), cmap="viridis", vmin=0, aspect="auto")
ax.set_yticks(range(len(hist)), hist.index)
ax.set_xticks(range(10), hist.columns)
ax.set_xlabel("teacher's predicted digit")
ax.set_ylabel("transfer source (teacher)")
fig.colorbar(im, label="share of transfer set")
plt.show()

# %% tags=["hide-input"]
hist.round(3)

# %% [markdown]
# ## Transfer-set size
#
# Blind students from random subsets of each real OOD transfer set, all trained for the
# same number of gradient steps (so a smaller set is seen more often, not for less
# time).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "MNIST test accuracy of blind students against the number of transfer images, per real OOD source; same gradient steps at every size; mean and 95 % t-interval over seeds.", "name": "fig-ood-size"}}
size_summary = summarize(results.sizes, ["size", "arm"], "test_acc")
ax = plots.lines_with_ci(size_summary, "size", "arm", scale=100, logx=True,
                         title="Blind students by transfer-set size")
ax.set_xlabel("transfer images")
ax.set_ylabel("MNIST test accuracy (%)")
plt.show()

# %% tags=["hide-input"]
size_summary.pivot(index="size", columns="arm", values="mean").round(4)

# %% [markdown]
# ## Fine-tuning with k labels per class
#
# The blind student of the best real OOD source ({glue:text}`best_ood`, chosen without
# labels), its random-teacher control, and the noise student are fine-tuned on k
# labelled MNIST images per class and compared, seed by seed, with the same student
# architecture from the same initialisation trained from scratch on the same labels for
# the same number of steps. At k = 0 each start is scored as it is.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "MNIST test accuracy after fine-tuning on k labels per class, by starting point (k = 0: no fine-tuning); mean and 95 % t-interval over seeds. The x axis is linear below 1 and logarithmic above.", "name": "fig-ood-finetune"}}
base = results.tuned[results.tuned.steps == cfg.finetune_steps]
tuned_summary = summarize(base, ["k", "start"], "test_acc")
ax = plots.lines_with_ci(tuned_summary, "k", "start", scale=100,
                         title=f"Fine-tuning from blind ({results.best_ood}), control, "
                               f"noise, scratch")
ax.set_xscale("symlog", linthresh=1)
ax.set_xlabel("labels per class (k)")
ax.set_ylabel("MNIST test accuracy (%)")
plt.show()

# %% tags=["hide-input"]
(tuned_summary.pivot(index="k", columns="start", values="mean")
 .join(base.groupby(["k", "start"])["agree_teacher"].mean().unstack().add_prefix("agree "))
 .round(4))

# %% [markdown]
# The advantage of the blind start over each other start, paired by seed (accuracy,
# 0.01 = 1 point), at the base budget of {glue:text}`finetune_steps` steps and, for
# blind vs scratch, at the check budget of {glue:text}`steps_check` steps:

# %% tags=["hide-input"]
_adv = {other: ood.advantage_table(results.tuned, "blind", other).assign(vs=other)
        for other in ("scratch", "control", "noise") if other in set(results.tuned.start)}
pd.concat(_adv.values()).set_index(["vs", "steps", "k"])[["mean", "ci_low", "ci_high", "n"]].round(4)

# %% [markdown]
# ## Claims
#
# Each claim's rule and origin were fixed in `effdl_lib/chapters/ood_distillation.py`
# before running, and `measure` computes every estimate there; each is a paired
# difference over seeds, in accuracy (0.01 = 1 point).
#
# ```{literalinclude} ../effdl_lib/chapters/ood_distillation.py
# :pyobject: measure
# ```

# %%
record.check_all(ood.measure(results))
record.extra["summary"] = ood.record_summary(results)
glue("verdicts", "; ".join(f"{c.claim.id} {c.verdict}" for c in record.checks))
record.table()

# %% [markdown]
# **Reading the record.** The best real OOD source, chosen without MNIST labels, was
# {glue:text}`best_ood`: its blind students reach {glue:text}`best_ood_acc:.1%`
# (95 % CI {glue:text}`best_ood_lo:.1%` to {glue:text}`best_ood_hi:.1%`, n =
# {glue:text}`seeds`) on the MNIST test set without a single MNIST image or label,
# against {glue:text}`best_control_acc:.1%` for the control students distilled through
# the same images from the random teacher (controls of all real sources:
# {glue:text}`control_accs`) and {glue:text}`upper_acc:.1%` for the in-distribution upper
# bound. The control students agree with their own random teacher on
# {glue:text}`control_agree_own:.0%` of the MNIST test images: agreement without
# knowledge.
#
# With one label per class, fine-tuning the blind student beats scratch by
# {glue:text}`adv1_scratch:+.3f` ({glue:text}`adv1_scratch_lo:+.3f` to
# {glue:text}`adv1_scratch_hi:+.3f`), the fine-tuned control by
# {glue:text}`adv1_control:+.3f` ({glue:text}`adv1_control_lo:+.3f` to
# {glue:text}`adv1_control_hi:+.3f`) and the fine-tuned noise student by
# {glue:text}`adv1_noise:+.3f` ({glue:text}`adv1_noise_lo:+.3f` to
# {glue:text}`adv1_noise_hi:+.3f`). At k = {glue:text}`k_hi` the advantage over scratch is
# {glue:text}`adv_khi:+.3f` ({glue:text}`adv_khi_lo:+.3f` to {glue:text}`adv_khi_hi:+.3f`);
# with {glue:text}`steps_check` fine-tuning steps instead it is
# {glue:text}`adv_khi_check:+.3f` ({glue:text}`adv_khi_check_lo:+.3f` to
# {glue:text}`adv_khi_check_hi:+.3f`), and the longer budget changes scratch's own
# accuracy by {glue:text}`scratch_gain:+.3f` ({glue:text}`scratch_gain_lo:+.3f` to
# {glue:text}`scratch_gain_hi:+.3f`), which is how far the base budget under-trains it.
# Without any label (k = 0) the blind student scores {glue:text}`k0_blind:.1%` against
# {glue:text}`k0_scratch:.1%` for the untrained initialisation. The best source's blind
# students go from {glue:text}`size_lo_acc:.1%` with {glue:text}`size_lo` transfer images
# to {glue:text}`size_hi_acc:.1%` with {glue:text}`size_hi`, at the same number of steps.
# Verdicts, from the rules fixed before the run: {glue:text}`verdicts`.
#
# **Limits.** One teacher architecture, one student, MNIST only; CIFAR-10 and
# Caltech-256 from the paper are not run here, and no paper number could be compared.
# The teacher (and the random teacher) is fixed, so the intervals include the transfer
# sample, the student's initialisation and its batch order, but not teacher-to-teacher
# variation. Transfer sets of one seed overlap those of another in part (notMNIST's pool
# is only 9,000 images). The label-free selection rule is ours; the paper's own choice
# of temperature was not readable offline.

# %% tags=["hide-input"]
record.extra["process_cpu_s"] = round(time.process_time(), 1)  # all threads; load-independent
record.write();
