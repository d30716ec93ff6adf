"""The checks of ``tests/test_cuda.py`` on the CPU, everywhere: each one passes on the correct
implementation and raises AssertionError on a deliberately broken one (a backward 1% off or
missing a term, optimizer steps that never run, parameters that never move, a resume that
loses the random state), so that a pass on the GPU means something."""
from __future__ import annotations

import pytest
import torch

from xinggan.training import Trainer

from test_cuda import (auto_without_math, check_attention, check_exact_resume,
                       check_training_steps, chunked_128, exact_attention, training_config)

torch.set_num_threads(min(torch.get_num_threads(), 2))

# -- deliberately wrong attention backwards ---------------------------------------------------


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def k_gradient_one_percent_off(q, k, v):
    """The correct attention, with k's gradient scaled by 1.01; the output is untouched."""
    return auto_without_math(q, _ScaleGradient.apply(k, 1.01), v)


class _SoftmaxWithoutRowTerm(torch.autograd.Function):
    """softmax over the last axis whose backward drops the row term: ``p * g`` instead of
    ``p * (g - rowsum(p * g))``."""

    @staticmethod
    def forward(ctx, s):
        p = torch.softmax(s, dim=-1)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return p * grad


def attention_without_row_term(q, k, v):
    """The reference path (products under the current autocast, softmax in at least float32)
    with the softmax backward missing its row term."""
    energy = torch.bmm(q, k.transpose(1, 2))
    p = _SoftmaxWithoutRowTerm.apply(energy.to(torch.promote_types(energy.dtype, torch.float32)))
    return torch.bmm(p.to(v.dtype), v)


def test_the_broken_attentions_break_the_backward_only():
    """The two broken implementations give the exact forward and another gradient, so only
    a gradient check can catch them (checked on float64 against the formula)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 40, d, generator=g, dtype=torch.float64) for d in (8, 8, 16))
    w = torch.randn(1, 40, 16, generator=g, dtype=torch.float64)
    grads = []
    for fn in (exact_attention, k_gradient_one_percent_off, attention_without_row_term):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*inputs)
        torch.testing.assert_close(out, exact_attention(q, k, v), rtol=1e-9, atol=0)
        (out * w).sum().backward()
        grads.append([t.grad for t in inputs])
    exact, scaled, no_row = grads
    torch.testing.assert_close(scaled[1], 1.01 * exact[1], rtol=1e-9, atol=0)
    torch.testing.assert_close(scaled[0], exact[0], rtol=1e-9, atol=0)
    assert not torch.allclose(no_row[0], exact[0], rtol=1e-3)


# -- attention checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_check_passes_on_cpu(dtype):
    """The check of test_auto_attention_never_runs_the_math_path, on the CPU (``auto`` runs
    ``chunked`` here) and on SDPA's CPU path."""
    check_attention(auto_without_math, "cpu", n=512, dtype=dtype)
    check_attention(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0).squeeze(1),
        "cpu", n=512, dtype=dtype)


def test_attention_check_fails_on_a_k_gradient_one_percent_off():
    with pytest.raises(AssertionError, match="grad k") as caught:
        check_attention(k_gradient_one_percent_off, "cpu", n=512, dtype=torch.float32)
    assert "output" not in str(caught.value) and "grad q" not in str(caught.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_check_fails_on_a_softmax_backward_without_its_row_term(dtype):
    with pytest.raises(AssertionError, match="grad q"):
        check_attention(attention_without_row_term, "cpu", n=512, dtype=dtype)


def test_autocast_attention_check_passes_and_fails_on_cpu():
    """The check of test_chunked_under_autocast_matches_float64_on_cuda, under CPU autocast."""
    check_attention(chunked_128, "cpu", n=700, dv=64, autocast=torch.bfloat16)
    with pytest.raises(AssertionError, match="grad q"):
        check_attention(attention_without_row_term, "cpu", n=700, dv=64,
                        autocast=torch.bfloat16)


# -- training-step checks -------------------------------------------------------------------


class SkipsEveryStep:
    """A grad scaler that finds inf/NaN gradients on every iteration: it scales the losses and
    never runs an optimizer step (what an fp16 run whose every step overflows does)."""

    def __init__(self):
        self.scale_value = 2.0 ** 16

    def is_enabled(self):
        return True

    def scale(self, loss):
        return loss * self.scale_value

    def step(self, optimizer):
        return None  # skipped, as torch.amp.GradScaler skips on inf/NaN gradients

    def update(self):
        self.scale_value /= 2

    def state_dict(self):
        return {}


def cpu_trainer(root, run_dir, **extra):
    return Trainer(training_config(root, "cpu", **extra), run_dir, progress=False,
                   tensorboard=False)


def test_training_check_passes_on_cpu(tiny_data, tmp_path):
    result = check_training_steps(cpu_trainer(tiny_data, tmp_path), "off")
    assert result["iteration"] == 2


@pytest.mark.parametrize("amp,message", [("fp16", "skipped the optimizer step on all 2"),
                                         ("off", "optimizer steps \\[0\\], not 2")])
def test_training_check_fails_when_every_step_is_skipped(tiny_data, tmp_path, amp, message):
    trainer = cpu_trainer(tiny_data, tmp_path)
    trainer.parts.scaler = SkipsEveryStep()
    buffers = {k: v.clone() for k, v in trainer.generator.named_buffers() if v.is_floating_point()}
    with pytest.raises(AssertionError, match=message):
        check_training_steps(trainer, amp)
    # the BatchNorm statistics did move: a check on the state dict would have passed
    moved = [k for k, v in trainer.generator.named_buffers() if k in buffers
             and not torch.equal(v, buffers[k])]
    assert moved


def test_training_check_fails_when_parameters_do_not_move(tiny_data, tmp_path):
    """The optimizers step, but at learning rate 0: the parameter comparison catches it."""
    trainer = cpu_trainer(tiny_data, tmp_path)
    trainer.current_lr = lambda iteration=None: 0.0
    with pytest.raises(AssertionError, match="parameters did not change"):
        check_training_steps(trainer, "off")


# -- exact-resume checks ----------------------------------------------------------------------


def test_resume_check_passes_on_cpu(tiny_data, tmp_path):
    assert check_exact_resume(lambda run_dir: cpu_trainer(tiny_data, run_dir), tmp_path, 2) > 50


def test_resume_check_fails_on_a_resume_that_loses_the_random_state(tiny_data, tmp_path):
    def forgetful_trainer(run_dir):
        trainer = cpu_trainer(tiny_data, run_dir)
        restore = trainer.resume

        def resume():  # restores the checkpoint, then draws from a fresh random stream
            found = restore()
            torch.manual_seed(1)
            return found

        trainer.resume = resume
        return trainer

    with pytest.raises(AssertionError, match="tensors differ after the resume"):
        check_exact_resume(forgetful_trainer, tmp_path, 2)
