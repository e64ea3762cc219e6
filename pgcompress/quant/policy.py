"""Which method each tensor gets: the reference's keep-float rules plus user overrides.

A method spec is a comma-separated list. A bare name (``int6-gptq``) is the default for the
large float tensors; ``GLOB=name`` items (``blocks.*.mlp.*=int5-gptq``) override by tensor name
with shell-style globs, the first matching item winning. Tensors no override names follow the
reference export (spec section 6): non-float -> ``raw``; float with at most 65,536 elements ->
``fp32`` for control tensors, ``fp16`` for fp32/bf16 ones, ``raw`` otherwise; the rest -> the
default method.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch

from pgcompress.errors import MethodError
from pgcompress.registry import get_method

KEEP_FLOAT_MAX_NUMEL = 65_536
CONTROL_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix",
                    "resid_mixes", "q_gain", "skip_weight", "skip_weights")


@dataclass
class MethodSpec:
    default: str = "int8-ref"
    overrides: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        spec = cls(overrides=[])
        defaults = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if "=" in item:
                pattern, _, name = (s.strip() for s in item.partition("="))
                if not pattern or not name:
                    raise MethodError(f"bad method override {item!r}; expected GLOB=METHOD")
                spec.overrides.append((pattern, name))
            else:
                defaults.append(item)
        if len(defaults) > 1:
            raise MethodError(f"method spec {text!r} names several defaults: {', '.join(defaults)}")
        if defaults:
            spec.default = defaults[0]
        for name in [spec.default] + [m for _, m in spec.overrides]:
            get_method(name)  # fail early on unknown names
        return spec

    def __str__(self) -> str:
        return ",".join([self.default] + [f"{p}={m}" for p, m in self.overrides])


def reference_rule(name: str, t: torch.Tensor) -> str | None:
    """The method the reference export uses for a tensor it keeps unquantized, else None."""
    if not t.is_floating_point():
        return "raw"
    if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
        if any(p in name for p in CONTROL_PATTERNS):
            return "fp32"
        if t.dtype in (torch.float32, torch.bfloat16):
            return "fp16"
        return "raw"
    return None


def method_for(name: str, t: torch.Tensor, spec: MethodSpec) -> str:
    for pattern, method in spec.overrides:
        if fnmatch.fnmatchcase(name, pattern):
            return method
    return reference_rule(name, t) or spec.default


def plan_methods(state_dict: dict[str, torch.Tensor], spec: MethodSpec) -> dict[str, str]:
    """Tensor name -> method name, in the state dict's order."""
    return {name: method_for(name, t, spec) for name, t in state_dict.items()}
