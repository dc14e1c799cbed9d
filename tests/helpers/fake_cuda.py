"""A CUDA device for CPU-only machines, for catching device mismatches in tests.

Inside ``PretendCuda()``, moving a tensor or a module to ``"cuda"`` (``.to``, ``.cuda``, a factory with
``device=...``) gives a CPU copy of a tensor subclass that reports ``cuda:0`` as its device. Results computed
from it are of that subclass too, ``.cpu()`` / ``.to("cpu")`` give plain tensors back, ``.numpy()`` refuses,
and an op that mixes it with a plain tensor (a 0-dim scalar aside, as on a real GPU) raises the error a GPU
would: "Expected all tensors to be on the same device". Values stay real, so a whole report, prediction or
figure runs to the end, unlike under FakeTensorMode, where anything that needs a value (``.item()``,
``nonzero``, counting a confusion matrix) stops.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CUDA = torch.device("cuda", 0)
# bookkeeping, not computation: nn.Module.to compares and swaps tensors with these
_PASS = {torch._has_compatible_shallow_copy_type, torch.Tensor.data.__set__, torch.utils.swap_tensors}


def _is_cuda(device) -> bool:
    return isinstance(device, (str, torch.device)) and torch.device(device).type == "cuda"


def _target(func, args, kwargs):
    """Where a move (``.to``/``.cuda``/``.cpu``) sends its tensor; None for a dtype-only ``.to``."""
    if func is torch.Tensor.cpu:
        return torch.device("cpu")
    if func is torch.Tensor.cuda:
        return CUDA
    target = kwargs.get("device")
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
        elif isinstance(a, torch.Tensor):
            target = a.device
    return torch.device(target) if target is not None else None


def _on_cpu(t: torch.Tensor, args, kwargs) -> torch.Tensor:
    """``t`` copied as a move to the CPU with the same dtype/format arguments would copy it."""
    rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, torch.Tensor, bool))]
    kw = {k: v for k, v in kwargs.items() if k in ("dtype", "memory_format")}
    with torch._C.DisableTorchFunctionSubclass():
        return torch.Tensor.to(torch.Tensor.as_subclass(t, torch.Tensor), "cpu", *rest, **kw, copy=True)


class OnCuda(torch.Tensor):
    """A CPU tensor that says it lives on ``cuda:0`` (see the module docstring)."""

    @property
    def device(self) -> torch.device:
        return CUDA

    @property
    def is_cuda(self) -> bool:
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _PASS:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu) and isinstance(args[0], OnCuda):
            target = _target(func, args, kwargs)
            if target is not None and target.type == "cpu":
                return _on_cpu(args[0], args, kwargs)
            if target is not None:  # already "on cuda": only a dtype or format may change
                return _on_cpu(args[0], args, kwargs).as_subclass(OnCuda)
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                            "host memory first. (pretended by tests/helpers/fake_cuda.py)")  # fmt: skip
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        plain = [t for t in tensors if not isinstance(t, OnCuda) and t.dim() > 0 and t.numel() > 0]
        if plain and any(isinstance(t, OnCuda) for t in tensors):
            PretendCuda.mismatches += 1
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
                f"(in {getattr(func, '__name__', func)}; pretended by tests/helpers/fake_cuda.py)"
            )
        return super().__torch_function__(func, types, args, kwargs)


class PretendCuda(TorchFunctionMode):
    """See the module docstring. ``PretendCuda.mismatches`` counts the mismatches raised."""

    mismatches = 0

    def __enter__(self):
        self._swap = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(True)  # module.to("cuda") keeps our subclass
        return super().__enter__()

    def __exit__(self, *exc):
        torch.__future__.set_swap_module_params_on_conversion(self._swap)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.to, torch.Tensor.cuda) and not isinstance(args[0], OnCuda):
            target = _target(func, args, kwargs)
            if target is not None and target.type == "cuda":
                return (
                    _on_cpu(args[0], args, kwargs).as_subclass(OnCuda).requires_grad_(args[0].requires_grad)
                )
        if _is_cuda(kwargs.get("device")):  # a factory: torch.zeros(..., device=x.device)
            out = func(*args, **{**kwargs, "device": "cpu"})
            return out.as_subclass(OnCuda) if isinstance(out, torch.Tensor) else out
        return func(*args, **kwargs)
