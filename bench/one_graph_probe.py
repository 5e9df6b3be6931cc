"""Can the installed torch trace a training step and its AdamW update as ONE graph? (issue 27: the optimizer's
update inside the captured region, "measure one graph against two").

maelab's whole step compiles forward + backward into one graph, and torch.optim's fused AdamW breaks the graph
around every ``Optimizer.step``: a second graph and the fused kernel outside both. The only way to one graph is
calling ``torch._fused_adamw_`` by hand on the optimizer's state tensors inside the compiled function. This probe
tries that on a tiny MLP, on the CPU or CUDA, with the lr as a device tensor (what the compiled step uses, so that a
new lr each step recompiles nothing) and as a Python float, and prints, for each, whether it traced, how many frames
dynamo compiled for 3 steps at 3 lrs, and the largest weight difference to torch.optim's fused AdamW.

    python bench/one_graph_probe.py [--device cuda] [--backend aot_eager|inductor]

torch 2.13.0+cpu, 2026-12-07 (the 2-core AMD EPYC), aot_eager: the tensor lr fails to trace
(``aten::_fused_adamw_.tensor_lr`` has no fake/meta kernel); the float lr fails in AOT autograd's functionalization
("mutating a non-functional tensor with a functional tensor"), and dynamo alone compiles it once per lr (a recompile
every step under a schedule). torch 2.11.0 (the GPU machines' image), the same. So the update stays torch.optim's,
a second graph (docs/performance.md).
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch._dynamo.config as dynamo_config
from torch._dynamo.testing import CompileCounterWithBackend


def model_and_optimizer(device: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 1)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3, device=device), fused=True, weight_decay=0.05)
    for p in model.parameters():  # one zero-gradient step: the optimizer's state exists before the first trace
        p.grad = torch.zeros_like(p)
    opt.step()
    return model, opt


def one_graph_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, lr: torch.Tensor | float):
    """forward, backward, clip and the fused AdamW update by hand (what torch.optim's fused path calls)."""
    params = list(model.parameters())
    loss = model(x).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
    state, group = [opt.state[p] for p in params], opt.param_groups[0]
    steps = [s["step"] for s in state]
    torch._foreach_add_(steps, 1)
    torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in state],
                        [s["exp_avg_sq"] for s in state], [], steps, lr=lr, beta1=0.9, beta2=0.999,
                        weight_decay=group["weight_decay"], eps=1e-8, amsgrad=False, maximize=False)
    return loss.detach()


def probe(device: str, backend: str, tensor_lr: bool) -> str:
    torch._dynamo.reset()
    model, opt = model_and_optimizer(device)
    ref_model, ref_opt = model_and_optimizer(device)
    counter = CompileCounterWithBackend(backend)  # an unknown backend is refused in main(), before this
    lr = torch.tensor(0.0, device=device)
    compiled = torch.compile(one_graph_step, backend=counter)
    try:
        with dynamo_config.patch(trace_autograd_ops=True):
            for i in range(3):
                x = torch.randn(8, 16, generator=torch.Generator().manual_seed(i)).to(device)
                value = 1e-3 * (i + 1)
                lr.fill_(value)
                model.zero_grad(set_to_none=False)
                compiled(model, opt, x, lr if tensor_lr else value)
                ref_opt.param_groups[0]["lr"].fill_(value)
                ref_opt.zero_grad()
                ref_model(x).pow(2).mean().backward()
                torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 1.0, foreach=True)
                ref_opt.step()
    except Exception as err:  # noqa: BLE001 - the probe reports whatever stops the trace
        cause = getattr(err, "inner_exception", None) or err  # a backend's failure, unwrapped
        return f"failed at frame {counter.frame_count}: {type(cause).__name__}: {str(cause).splitlines()[0][:150]}"
    diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref_model.parameters(), strict=True))
    return f"traced: {counter.frame_count} frame(s) for 3 lrs, weights within {diff:.2e} of torch.optim's"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="aot_eager")
    args = parser.parse_args()
    try:
        torch.empty(0, device=args.device)
        torch._dynamo.lookup_backend(args.backend)
    except (RuntimeError, AssertionError, torch._dynamo.exc.InvalidBackend) as err:
        print(f"one_graph_probe: --device {args.device} --backend {args.backend}: {str(err).splitlines()[0]}",
              file=sys.stderr)
        sys.exit(2)
    print(f"torch {torch.__version__}, {args.device}, backend {args.backend}")
    for tensor_lr in (True, False):
        print(f"  lr as a {'device tensor' if tensor_lr else 'Python float'}: "
              f"{probe(args.device, args.backend, tensor_lr)}")


if __name__ == "__main__":
    main()
