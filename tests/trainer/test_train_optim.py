"""The optimizers and lr schedules by their sd-scripts names, with warm-up."""
from __future__ import annotations

import pytest
import torch

from cloudlora_backend.trainer.loop.optim import OptimizerError, build_optimizer, build_scheduler, parse_optimizer_args


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 4))]


@pytest.mark.parametrize("name,lr", [("AdamW", 1e-2), ("Prodigy", 1.0), ("Adafactor", 1e-2)])
def test_each_supported_optimizer_lowers_a_simple_loss(name, lr):
    params = _params()
    opt = build_optimizer(name, [{"params": params, "lr": lr}], lr, [], torch.device("cpu"))
    before = float((params[0].detach() ** 2).sum())
    for _ in range(20):
        opt.zero_grad()
        (params[0] ** 2).sum().backward()
        opt.step()
    assert float((params[0].detach() ** 2).sum()) < before


def test_adamw8bit_without_cuda_is_refused_with_what_to_use_instead():
    with pytest.raises(OptimizerError, match='needs a CUDA GPU.*"AdamW"'):
        build_optimizer("AdamW8bit", [{"params": _params()}], 1e-4, [], torch.device("cpu"))


def test_optimizer_args_are_parsed_like_sd_scripts_and_reach_the_optimizer():
    assert parse_optimizer_args(["weight_decay=0.05", "betas=0.9,0.99"]) == {"weight_decay": 0.05, "betas": (0.9, 0.99)}
    opt = build_optimizer("AdamW", [{"params": _params()}], 1e-3, ["weight_decay=0.05", "betas=0.8,0.9"],
                          torch.device("cpu"))
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[0]["betas"] == (0.8, 0.9)


@pytest.mark.parametrize("name", ["cosine", "linear", "constant_with_warmup", "cosine_with_restarts", "polynomial"])
def test_schedules_warm_up_linearly_then_follow_their_shape(name):
    opt = torch.optim.AdamW(_params(), lr=1e-3)
    sched = build_scheduler(name, opt, warmup_steps=4, total_steps=20, num_cycles=2)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[2] == pytest.approx(5e-4) and lrs[4] == pytest.approx(1e-3)
    if name != "constant_with_warmup":
        assert lrs[-1] < 1e-3
