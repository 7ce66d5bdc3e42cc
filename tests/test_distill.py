"""Distillation: the KL op's backward (finite differences) and values (PyTorch), and distill() through
the Trainer: alpha=0 is plain training, a student equal to its teacher learns nothing, a student
learns its teacher, the combined gradient is right, resume is exact, checkpoints hold the student."""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from references import optional_reference

import npgpt
from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer, check_op, gradcheck, jitter, ops
from npgpt.allocation.distill import Distiller, distill
from npgpt.io.checkpoint import model_from_checkpoint
from npgpt.locks import RunInUse
from npgpt.training.trainer import checkpoint_state

TEXT = "the quick brown fox jumps over the lazy dog. a lazy dog sleeps; the fox runs. " * 30
QUIET = dict(progress=False, log=lambda *_: None)
ROOT = Path(__file__).resolve().parents[1]


def assert_grads_ok(report):
    assert report.ok, f"\n{report}"


# ----------------------------------------------------------------------------- the op
@pytest.mark.parametrize("shape", [(2, 3, 7), (5, 4)])
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_kl_div_gradcheck(rng, shape, tau):
    inputs = {"student_logits": 2 * rng.standard_normal(shape), "teacher_logits": 2 * rng.standard_normal(shape),
              "tau": tau}
    report = check_op(ops.kl_div_forward, ops.kl_div_backward, inputs, ["student_logits"])
    assert_grads_ok(report)
    print(report)


def test_kl_div_is_the_formula_and_vanishes_only_at_equal_distributions(rng):
    s, t = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 3, 6))
    tau = 1.7
    p = np.exp(t / tau) / np.exp(t / tau).sum(-1, keepdims=True)
    q = np.exp(s / tau) / np.exp(s / tau).sum(-1, keepdims=True)
    expected = tau ** 2 * np.mean(np.sum(p * np.log(p / q), axis=-1))
    loss, _ = ops.kl_div_forward(s, t, tau)
    assert loss == pytest.approx(expected, rel=1e-12) and loss > 0
    assert ops.kl_div_forward(t + 3.0, t, tau)[0] == pytest.approx(0.0, abs=1e-14)   # a shift is no change


def test_kl_div_is_stable_for_huge_logits():
    s = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    t = np.array([[-1e4, 1e4, 0.0], [5e3, -5e3, 0.0]])
    loss, cache = ops.kl_div_forward(s, t, 1.0)
    dlogits = ops.kl_div_backward(1.0, cache)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx((2e4 + np.log(3.0)) / 2, rel=1e-12)   # row 1: 2e4; row 2: log 3
    np.testing.assert_allclose(dlogits[0], [0.5, -0.5, 0.0], atol=1e-15)


def test_kl_div_keeps_float32(rng):
    s, t = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    _, cache = ops.kl_div_forward(s, t, 2.0)
    assert ops.kl_div_backward(1.0, cache).dtype == np.float32


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_kl_div_refuses_a_bad_temperature(tau):
    with pytest.raises(ValueError, match=f"tau must be a finite number > 0, got {tau!r}"):
        ops.kl_div_forward(np.zeros((2, 3)), np.zeros((2, 3)), tau)


def test_kl_div_refuses_logits_of_different_shapes():
    with pytest.raises(ValueError, match=r"student logits \(2, 3, 5\) and teacher logits \(2, 3, 6\)"):
        ops.kl_div_forward(np.zeros((2, 3, 5)), np.zeros((2, 3, 6)), 1.0)


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_kl_div_equals_pytorch(rng, tau):
    torch = optional_reference("torch", reason="the reference KL divergence")
    F = torch.nn.functional
    s, t = 3 * rng.standard_normal((2, 5, 11)), 3 * rng.standard_normal((2, 5, 11))
    loss, cache = ops.kl_div_forward(s, t, tau)
    dloss = 0.7
    ds = ops.kl_div_backward(dloss, cache)

    s_t = torch.tensor(s.reshape(-1, 11), requires_grad=True)
    t_t = torch.tensor(t.reshape(-1, 11))
    ref = F.kl_div(F.log_softmax(s_t / tau, dim=-1), F.softmax(t_t / tau, dim=-1),
                   reduction="batchmean") * tau ** 2
    (ref * dloss).backward()
    loss_diff = abs(loss - ref.item()) / abs(ref.item())
    grad_diff = np.max(np.abs(ds.reshape(-1, 11) - s_t.grad.numpy())) / np.max(np.abs(s_t.grad.numpy()))
    print(f"tau={tau}: relative difference loss {loss_diff:.1e}, gradient {grad_diff:.1e}")
    assert loss_diff < 1e-13 and grad_diff < 1e-13


# ----------------------------------------------------------------------------- distill()
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return Dataset(TEXT, cache_dir=tmp_path_factory.mktemp("cache"))


def gpt(data, n_layer=1, n_embd=16, seed=0, dtype=np.float32, dropout=0.0, block_size=16):
    return GPT(GPTConfig(vocab_size=data.vocab_size, block_size=block_size, n_layer=n_layer, n_head=2,
                         n_embd=n_embd, dropout=dropout), seed=seed, dtype=dtype)


def config(**kwargs):
    return TrainConfig(**{**dict(max_iters=6, batch_size=4, warmup_iters=2, eval_interval=3, eval_iters=2,
                                 lr=3e-3), **kwargs})


@pytest.fixture(scope="module")
def teacher(data):
    """A two-layer GPT trained a little on TEXT: a teacher with something to teach."""
    model = gpt(data, n_layer=2, n_embd=32, seed=7)
    Trainer(model, data, config(max_iters=150, eval_interval=150, lr=1e-2, min_lr=1e-3)).train(**QUIET)
    return model.eval()


def test_alpha_zero_is_plain_training_bit_for_bit(data, teacher):
    plain = gpt(data, dropout=0.1)
    student = gpt(data, dropout=0.1)
    expected = Trainer(plain, data, config()).train(**QUIET)
    run = distill(teacher, student, data, config(), alpha=0.0, tau=2.0, **QUIET)
    assert run.history["train_loss"] == expected["train_loss"]
    assert run.history["eval_train"] == expected["eval_train"] and run.history["eval_val"] == expected["eval_val"]
    for name, p in plain.params.items():
        np.testing.assert_array_equal(student.params[name], p, err_msg=name)
    assert len(run.model.history["kl"]) == 6 and all(k > 0 for k in run.model.history["kl"])


def test_a_student_equal_to_its_teacher_has_zero_kl_and_zero_gradient(data, teacher):
    student = gpt(data, n_layer=2, n_embd=32, seed=99)
    student.load_state_dict(teacher.state_dict())
    distiller = Distiller(teacher, student, alpha=1.0, tau=1.0)
    x, y = data.get_batch("train", 4, 16, np.random.default_rng(0))
    _, loss = distiller.forward(x, y)
    assert loss == 0.0 and distiller.kl == 0.0 and distiller.nll > 0
    grads = distiller.backward()
    assert grads.keys() == student.params.keys()
    assert all(not g.any() for g in grads.values())
    # and training on it moves nothing (no weight decay: AdamW's step on a zero gradient is zero)
    run = distill(teacher, student, data, config(weight_decay=0.0), alpha=1.0, tau=1.0, **QUIET)
    assert run.history["train_loss"] == [0.0] * 6
    for name, p in teacher.params.items():
        np.testing.assert_array_equal(student.params[name], p, err_msg=name)


def mean_kl(teacher, student, data, tau):
    """KL (times tau^2) of the student from the teacher, averaged over fixed val batches."""
    rng = np.random.default_rng(123)
    distiller = Distiller(teacher, student, alpha=1.0, tau=tau)
    total = []
    for _ in range(8):
        x, _ = data.get_batch("val", 8, 16, rng)
        total.append(ops.kl_div_forward(student.eval().forward(x)[0], distiller.teacher_logits(x), tau)[0])
    student.train()
    return float(np.mean(total))


def test_a_small_student_learns_its_teacher(data, teacher):
    student = gpt(data, n_layer=1, n_embd=16, seed=3)
    before = mean_kl(teacher, student, data, tau=2.0)
    run = distill(teacher, student, data, config(max_iters=60, eval_interval=60, lr=1e-2), alpha=1.0, tau=2.0,
                  **QUIET)
    after = mean_kl(teacher, student, data, tau=2.0)
    assert after < 0.5 * before, (before, after)
    kl = run.model.history["kl"]
    assert np.mean(kl[-10:]) < 0.5 * np.mean(kl[:10])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.slow
def test_the_combined_gradient_passes_the_finite_difference_check(data, backend):
    teacher = gpt(data, n_layer=2, n_embd=8, seed=1, dtype=np.float64, block_size=8)
    student = gpt(data, n_layer=1, n_embd=8, seed=2, dtype=np.float64, block_size=6)
    jitter(teacher.params, seed=1)
    jitter(student.params, seed=2)
    distiller = Distiller(teacher, student, alpha=0.3, tau=1.7)
    x, y = data.get_batch("train", 2, 6, np.random.default_rng(0))
    with npgpt.use_backend(backend):
        distiller.forward(x, y)
        grads = distiller.backward()
        report = gradcheck(lambda: distiller.forward(x, y)[1], distiller.params, grads)
    assert_grads_ok(report)
    print(report)


def test_evaluation_reports_the_students_plain_nll(data, teacher):
    student = gpt(data)
    run = distill(teacher, student, data, config(), alpha=0.7, **QUIET)
    plain = Trainer(student, data, config()).evaluate()
    assert run.history["eval_train"][-1] == plain["train"] and run.history["eval_val"][-1] == plain["val"]
    # while the training loss is the mixture
    distiller = run.model
    assert run.history["train_loss"][-1] == pytest.approx(0.7 * distiller.kl + 0.3 * distiller.nll, rel=1e-12)


def test_checkpoints_hold_the_student_and_resume_exactly(tmp_path, data, teacher):
    full_student = gpt(data, dropout=0.1)
    full = distill(teacher, full_student, data, config(), alpha=0.6, tau=1.5, **QUIET)

    path = tmp_path / "ckpt.npz"
    student = gpt(data, dropout=0.1)
    distill(teacher, student, data, config(max_iters=3), alpha=0.6, tau=1.5, checkpoint_path=path, **QUIET)
    saved = model_from_checkpoint(path)
    assert type(saved) is GPT and saved.config == student.config
    for name, p in student.params.items():
        np.testing.assert_array_equal(saved.params[name], p, err_msg=name)

    fresh = gpt(data, dropout=0.1, seed=42)          # any student of the same shape: the checkpoint wins
    resumed = distill(teacher, fresh, data, config(), alpha=0.6, tau=1.5, checkpoint_path=path, resume=True,
                      **QUIET)
    assert resumed.history["train_loss"] == full.history["train_loss"]       # bit for bit
    assert resumed.history["eval_val"] == full.history["eval_val"]
    for name, p in full_student.params.items():
        np.testing.assert_array_equal(fresh.params[name], p, err_msg=name)


def test_resume_refuses_a_student_of_another_shape(tmp_path, data, teacher):
    path = tmp_path / "ckpt.npz"
    distill(teacher, gpt(data), data, config(max_iters=1), checkpoint_path=path, **QUIET)
    with pytest.raises(ValueError, match="holds a float32 student with"):
        distill(teacher, gpt(data, n_embd=8), data, config(), checkpoint_path=path, resume=True, **QUIET)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_path"):
        distill(teacher, gpt(data), data, config(), resume=True, **QUIET)


def test_teacher_and_student_must_share_a_vocabulary(data, teacher):
    other = GPT(GPTConfig(vocab_size=data.vocab_size + 3, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=f"teacher has vocab_size={data.vocab_size} and the student "
                                         f"vocab_size={data.vocab_size + 3}"):
        distill(teacher, other, data, config(), **QUIET)


def test_the_teacher_must_see_the_students_whole_context(data, teacher):
    short_teacher = gpt(data, block_size=8)
    with pytest.raises(ValueError, match="teacher has block_size=8, shorter than the student's block_size=16"):
        Distiller(short_teacher, gpt(data))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_must_be_a_weight_in_0_1(data, teacher, alpha):
    with pytest.raises(ValueError, match=rf"alpha must be in \[0, 1\], got {alpha!r}"):
        distill(teacher, gpt(data), data, config(), alpha=alpha, **QUIET)


def test_tau_is_checked_before_training(data, teacher):
    with pytest.raises(ValueError, match="tau must be a finite number > 0, got 0"):
        distill(teacher, gpt(data), data, config(), tau=0, **QUIET)


def test_the_distiller_offers_what_the_trainer_asks_and_forwards_nothing_else(data, teacher):
    student = gpt(data)
    distiller = Distiller(teacher, student)
    assert distiller.params is student.params
    assert checkpoint_state(distiller) == checkpoint_state(student)
    for member in ("config", "dtype", "dropout_rng", "grads", "training", "train", "eval", "num_params",
                   "state_dict", "load_state_dict"):
        assert not hasattr(distiller, member), member


def test_a_student_whose_backward_takes_no_dlogits_is_refused(data, teacher):
    lstm = npgpt.RecurrentLM(npgpt.RecurrentConfig(vocab_size=data.vocab_size, block_size=16, n_embd=4,
                                                   n_hidden=6, n_layer=1))
    with pytest.raises(ValueError, match="a RecurrentLM does not"):
        Distiller(teacher, lstm)


def test_the_teacher_is_left_in_its_mode_and_unchanged(data, teacher):
    before = copy.deepcopy(teacher.params)
    teacher.train()
    try:
        distill(teacher, gpt(data), data, config(max_iters=2), **QUIET)
        assert teacher.training
    finally:
        teacher.eval()
    for name, p in before.items():
        np.testing.assert_array_equal(teacher.params[name], p, err_msg=name)


HOLD_LOCK = """
import sys
from npgpt.locks import hold_lock
with hold_lock(sys.argv[1], "x"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_distilling_into_a_checkpoint_another_run_writes_is_refused_before_step_1(tmp_path, data, teacher):
    """Another process (here: one holding the checkpoint's lock, as a running Trainer does) writes the
    checkpoint: distill refuses in one line naming it, before any step (before: it trained over it)."""
    path = tmp_path / "ckpt.npz"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, f"{path}.lock"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        student = gpt(data)
        before = {name: p.copy() for name, p in student.params.items()}
        with pytest.raises(RunInUse, match=rf"^the checkpoint {path} is in use by another npgpt run "
                                           rf"\(pid {holder.pid}, started [^\n]*choose another$"):
            distill(teacher, student, data, config(), checkpoint_path=path, **QUIET)
        assert all(np.array_equal(student.params[n], p) for n, p in before.items()) and not path.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
