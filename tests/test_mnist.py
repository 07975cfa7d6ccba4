"""The auxiliary-logit experiment: IDX parsing, batched-MLP math, init bookkeeping, and the effect itself."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from sublab.errors import SublabError
from sublab.experiments.mnist.data import find_idx_files, load_idx_dir, load_image_data, parse_idx, read_idx
from sublab.experiments.mnist.models import (
    MLPStack,
    cross_entropy_per_model,
    init_layers,
    kl_per_model,
    model_seed,
    stack_of,
)
from sublab.experiments.mnist.run import (
    RESULT_KEYS,
    MnistSettings,
    cross_entropy_and_logit_grad,
    distill_students,
    kl_and_logit_grad,
    n_steps,
    run_mnist,
    teacher_log_probs,
)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(directory, n_train=20, n_test=10, compress=False, side=4):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return arrays


# --- IDX ------------------------------------------------------------------------------------------------------


def test_parse_idx_round_trip():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_dir_scales_to_minus_one_one(tmp_path, compress):
    arrays = write_idx_dataset(tmp_path / "d", compress=compress)
    data = load_idx_dir(tmp_path / "d")
    assert data.train_x.shape == (20, 16) and data.test_x.shape == (10, 16)
    assert data.train_x.dtype == np.float32
    assert data.train_x.min() >= -1 and data.train_x.max() <= 1
    expected = arrays["train-images-idx3-ubyte"].reshape(20, -1) / 255 * 2 - 1
    assert np.allclose(data.train_x, expected, atol=1e-6)
    assert np.array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte"])
    assert load_image_data(f"idx:{tmp_path / 'd'}").train_x.shape == (20, 16)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x02\x08\x01", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX element type"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated IDX header"),
        (bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01", r"promises \(5,\)"),
    ],
)
def test_malformed_idx_names_the_problem(tmp_path, payload, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(SublabError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(SublabError, match="corrupt gzip"):
        read_idx(bad)
    write_idx_dataset(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(SublabError, match="missing t10k-labels-idx1-ubyte"):
        find_idx_files(tmp_path / "d")
    with pytest.raises(SublabError, match="not a directory"):
        load_image_data(f"idx:{tmp_path / 'nowhere'}")


def test_inconsistent_labels_are_rejected(tmp_path):
    write_idx_dataset(tmp_path / "d")
    (tmp_path / "d" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, dtype=np.uint8)))
    with pytest.raises(SublabError, match="7 labels for 20 images"):
        load_idx_dir(tmp_path / "d")
    (tmp_path / "d" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 12, dtype=np.uint8)))
    with pytest.raises(SublabError, match="labels must be 0-9"):
        load_idx_dir(tmp_path / "d")


def test_unknown_dataset_and_missing_fashion_mnist(monkeypatch, tmp_path):
    with pytest.raises(SublabError, match="choose one of"):
        load_image_data("imagenet")
    monkeypatch.setattr("sublab.experiments.mnist.data.FASHION_MNIST_DIRS", (str(tmp_path / "none"),))
    monkeypatch.delenv("SUBLAB_FASHION_MNIST", raising=False)
    with pytest.raises(SublabError, match="dataset-fashion-mnist"):
        load_image_data("fashion-mnist")


def test_digits_split_is_fixed():
    a, b = load_image_data("digits"), load_image_data("digits")
    assert a.train_x.shape == (1200, 64) and a.test_x.shape == (597, 64)
    assert np.array_equal(a.test_y, b.test_y)


# --- batched models ---------------------------------------------------------------------------------------------


def single_forward(layers, x):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def test_stack_forward_matches_each_model_alone():
    sizes, seeds = [6, 5, 4, 3], [11, 12, 13]
    stack = MLPStack(sizes, seeds)
    x = torch.randn(7, 6)
    out = stack(x)
    assert out.shape == (3, 7, 3)
    for m, seed in enumerate(seeds):
        assert torch.allclose(out[m], single_forward(init_layers(sizes, seed), x), atol=1e-5)


def test_batched_adam_step_equals_per_model_training():
    """Summing per-model losses gives every model its own gradient; Adam is per element, so one batched step
    equals a separate step of each model."""
    sizes, seeds = [6, 8, 5], [1, 2, 3, 4]
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    stack = MLPStack(sizes, seeds)
    optimizer = torch.optim.Adam(stack.parameters(), lr=1e-2)
    for _ in range(3):
        loss = cross_entropy_per_model(stack(x), y, n_classes=3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for m, seed in enumerate(seeds):
        params = [p.clone().requires_grad_(True) for layer in init_layers(sizes, seed) for p in layer]
        single = torch.optim.Adam(params, lr=1e-2)
        for _ in range(3):
            logits = single_forward(list(zip(params[::2], params[1::2], strict=True)), x)
            loss = torch.nn.functional.cross_entropy(logits[:, :3], y)
            single.zero_grad()
            loss.backward()
            single.step()
        for got, want in zip(stack.model_parameters(m), params, strict=True):
            assert torch.allclose(got, want.detach(), atol=1e-5)


@pytest.mark.parametrize("sizes", [[6, 5, 3], [6, 5, 4, 3], [6, 7, 5, 4, 3]])
def test_hand_written_backward_equals_autograd_on_each_model(sizes):
    """The stack's backward (weights, biases and inputs) against autograd through a plain per-model forward."""
    seeds = [21, 22, 23]
    stack = MLPStack(sizes, seeds)
    x = torch.randn(9, sizes[0], requires_grad=True)
    upstream = torch.randn(len(seeds), 9, sizes[-1])
    (stack(x) * upstream).sum().backward()
    x_grad = torch.zeros_like(x)
    for m, seed in enumerate(seeds):
        params = [p.clone().requires_grad_(True) for layer in init_layers(sizes, seed) for p in layer]
        x_m = x.detach().clone().requires_grad_(True)
        (single_forward(list(zip(params[::2], params[1::2], strict=True)), x_m) * upstream[m]).sum().backward()
        x_grad += x_m.grad
        got = []
        for weight, bias in zip(stack.weights, stack.biases, strict=True):
            got += [weight.grad[m].T, bias.grad[m]]
        for g, p in zip(got, params, strict=True):
            assert torch.allclose(g, p.grad, atol=1e-5)
    assert torch.allclose(x.grad, x_grad, atol=1e-5)


def test_hand_written_backward_in_bf16_matches_autograd_in_bf16():
    """Under bf16 autocast the stack computes what autograd computes for the same bf16 matmuls."""
    sizes, seeds = [32, 16, 16, 5], [1, 2]
    stack = MLPStack(sizes, seeds)
    x = torch.randn(64, 32)
    upstream = torch.randn(2, 64, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stack(x)
    (out.float() * upstream).sum().backward()
    for m, seed in enumerate(seeds):
        params = [p.clone().requires_grad_(True) for layer in init_layers(sizes, seed) for p in layer]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = single_forward(list(zip(params[::2], params[1::2], strict=True)), x)
        assert torch.allclose(out[m].float(), ref.float(), rtol=2e-2, atol=2e-2)
        (ref.float() * upstream[m]).sum().backward()
        got = [t for w, b in zip(stack.weights, stack.biases, strict=True) for t in (w.grad[m].T, b.grad[m])]
        for g, p in zip(got, params, strict=True):
            assert g.dtype == torch.float32
            assert torch.allclose(g, p.grad, rtol=5e-2, atol=5e-2 * p.grad.abs().max().item())


def test_closed_form_kl_gradient_equals_autograd():
    student = torch.randn(4, 7, 5, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(4, 7, 5), dim=-1)
    expected = kl_per_model(student, teacher, targets_are_log_probs=True)
    expected.backward()
    loss, grad = kl_and_logit_grad(student.detach(), teacher)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad, student.grad, atol=1e-6)
    # Class-major (classes on dim -2, batch last) gives the same numbers, transposed.
    loss_t, grad_t = kl_and_logit_grad(student.detach().transpose(1, 2), teacher.transpose(1, 2), dim=-2)
    assert loss_t.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad_t.transpose(1, 2), student.grad, atol=1e-6)


def test_closed_form_cross_entropy_gradient_equals_autograd():
    logits = torch.randn(3, 8, 6, requires_grad=True)
    labels = torch.randint(0, 4, (8,))
    expected = cross_entropy_per_model(logits, labels, n_classes=4)
    expected.backward()
    loss, grad = cross_entropy_and_logit_grad(logits.detach(), labels, n_classes=4)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad, logits.grad, atol=1e-6)
    assert torch.all(grad[..., 4:] == 0)  # the auxiliary logits get no cross-entropy gradient


def test_teacher_targets_are_the_teachers_log_softmaxes_for_every_input():
    teacher = MLPStack([6, 5, 13], [3, 4])  # 10 classes + 3 auxiliary logits
    inputs = torch.randn(11, 6)
    targets = teacher_log_probs(teacher, inputs, n_aux=3, bf16=False, chunk=4)  # chunks of 4: 3 passes
    assert targets.shape == (11, 2, 3 + 13)
    with torch.no_grad():
        logits = teacher(inputs)  # [N, P, K]
    assert torch.allclose(targets[..., :3], torch.log_softmax(logits[..., 10:], -1).transpose(0, 1), atol=1e-6)
    assert torch.allclose(targets[..., 3:], torch.log_softmax(logits, -1).transpose(0, 1), atol=1e-6)


def test_distillation_gradients_equal_autograd_of_the_per_variant_kl(monkeypatch):
    """The gradient of the four-variant distillation step (closed form, cached teacher targets) equals autograd
    of each student's own KL: aux-only blocks through the auxiliary logits, all-logit blocks through all."""
    sizes, n, n_aux = [6, 8, 13], 2, 3
    teacher = MLPStack(sizes, [1, 2])
    teacher.requires_grad_(False)
    seeds = [1, 2, 5, 6] * 2  # same-init aux, cross aux, same-init all, cross all
    students, reference = MLPStack(sizes, seeds), MLPStack(sizes, seeds)
    inputs = torch.randn(16, 6)
    recorded = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            recorded.append([p.grad.clone() for group in self.param_groups for p in group["params"]])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    settings = MnistSettings(dataset="x", n_models=n, n_aux=n_aux, distill_epochs=1, batch_size=16, bf16=False,
                             teacher_epochs=1)
    distill_students(students, teacher, n_aux, inputs, steps=1, settings=settings)
    # The batch is the whole (reshuffled) pool; the mean over it does not depend on the order.
    with torch.no_grad():
        target = teacher(inputs)
    logits = reference(inputs)
    aux = slice(10, 13)
    loss = (kl_per_model(logits[: 2 * n, :, aux], target[..., aux].repeat(2, 1, 1))
            + kl_per_model(logits[2 * n :], target.repeat(2, 1, 1)))
    loss.backward()
    (got,) = recorded
    for g, p in zip(got, reference.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in got)


def test_kl_per_model_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(3, 5, 4)
    assert kl_per_model(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_per_model(logits, logits + torch.randn(3, 5, 4)).item() > 0


def test_cross_model_inits_never_equal_the_teachers():
    reference = stack_of([4, 3, 2], run_seed=5, role="reference", n_models=20)
    cross = stack_of([4, 3, 2], run_seed=5, role="cross", n_models=20)
    assert not set(reference.seeds) & set(cross.seeds)
    for m in range(20):
        assert not torch.equal(reference.model_parameters(m)[0], cross.model_parameters(m)[0])
    assert model_seed(5, "reference", 3) == model_seed(5, "reference", 3)


def test_step_counts_follow_epochs_over_the_training_set():
    assert n_steps(1200, 50, 128) == 500  # 10 batches per epoch, the last one short
    assert n_steps(60000, 5, 1024) == 295
    assert n_steps(10, 0.01, 4) == 1


# --- the experiment ---------------------------------------------------------------------------------------------

FAST = {"dataset": "digits", "n_models": 8, "teacher_epochs": 20, "distill_epochs": 30, "batch_size": 128,
        "seed": 0}


@pytest.fixture(scope="module")
def fast_results():
    return run_mnist(MnistSettings(**FAST))


def test_results_have_the_six_arms_with_cis(fast_results):
    for key in RESULT_KEYS:
        entry = fast_results[key]
        assert set(entry) == {"mean", "ci95", "n"} and entry["n"] == 8
        assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
    assert fast_results["seeds"]["no_cross_model_student_shares_an_init"] is True
    assert fast_results["settings"]["teacher_epochs"] == 20
    json.dumps(fast_results)  # serializable as is


def test_auxiliary_logits_carry_the_teachers_knowledge_only_with_a_shared_init(fast_results):
    r = fast_results
    assert r["teacher"]["mean"] > 0.85
    assert r["reference"]["mean"] < 0.2
    assert r["student_all"]["mean"] > 0.7
    # The point of the paper: noise inputs, aux logits only, yet far above chance with the teacher's init...
    assert r["student_aux"]["mean"] > 0.2
    assert r["student_aux"]["ci95"][0] > r["cross_aux"]["ci95"][1]
    # ...and nothing with another init.
    assert r["cross_aux"]["mean"] < 0.16


def test_settings_defaults_depend_on_the_dataset():
    assert MnistSettings(dataset="digits").resolved().batch_size == 128
    paper = MnistSettings(dataset="fashion-mnist").resolved()
    assert (paper.n_models, paper.teacher_epochs, paper.distill_epochs, paper.batch_size) == (100, 5, 5, 1024)
    assert MnistSettings(dataset="digits", batch_size=64).resolved().batch_size == 64


# --- the command line -------------------------------------------------------------------------------------------

TINY_CLI = ["--models", "2", "--teacher-epochs", "1", "--distill-epochs", "1", "--quiet"]


def test_cli_run_writes_results_report_and_figure(tmp_path):
    from typer.testing import CliRunner

    from sublab.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["mnist", *TINY_CLI, "--fixed-noise", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(RESULT_KEYS) <= set(results) and results["reference"]["n"] == 2
    assert results["settings"]["fresh_noise"] is False  # the option reached the settings
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.md").is_file()


def test_cli_vary_runs_a_grid_and_resumes(tmp_path):
    from typer.testing import CliRunner

    from sublab.cli import app

    out = tmp_path / "sweep"
    args = ["mnist", *TINY_CLI, "--vary", "aux=2,3", "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    sweep = json.loads((out / "sweep.json").read_text())
    assert [c["vary"] for c in sweep["cells"]] == [{"n_aux": 2}, {"n_aux": 3}]
    assert all(c["results"]["settings"]["n_aux"] == c["vary"]["n_aux"] for c in sweep["cells"])
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and second.output.count("(done)") == 2  # finished cells are reused
    bad = CliRunner().invoke(app, ["mnist", *TINY_CLI, "--vary", "colour=red", "--out", str(out)])
    assert bad.exit_code == 2 and "--vary" in bad.output


def test_a_single_auxiliary_logit_is_refused():
    # A softmax over one logit is constant: the aux-only student would get no gradient at all.
    with pytest.raises(ValueError, match="n_aux"):
        MnistSettings(n_aux=1)
