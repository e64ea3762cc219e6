"""Distortion: the predicted loss increase (nats per token) of replacing a tensor W by W_hat.

From one calibration pass (``pgcompress.quant.calib_stats.CalibStats``):

- weight of a linear map y = x W^T (a tied embedding as output head, a bank slice ``name[i]``):
  the Kronecker-factored second-order term ``0.5 * sum_r a[r] * E[r] (H/N) E[r]^T`` with E = W_hat - W,
  H = sum x x^T over N tokens (GPTQ's Hessian) and a[r] the mean squared gradient of the loss at
  output r (Martens & Grosse 2015, K-FAC, with the output factor kept diagonal). Unlike GPTQ's
  ``tr(E H E^T)`` alone it is comparable across layers, which is what an allocation needs;
- an embedding's lookup path: ``0.5 * sum F_in * E^2`` (squared output gradients per token row);
- any other parameter: ``0.5 * sum F * E^2`` with F the diagonal empirical Fisher;
- no calibration at all (a model that cannot be run): plain ``sum E^2``, and ``kind`` says so.

E is taken between what the eval computes with, not between the stored floats. The reference eval
(reference-protocol.md section 8) casts every linear weight to bf16 at matmul time and keeps the
embedding as a bf16 parameter. So a matrix read by F.linear or F.embedding is compared as
``bf16(W_hat) - bf16(W)``; with no calibration, that is every 2-D+ tensor of over 65,536 values
(the reference's small-tensor line). A matrix stored as bf16 is then exact; fp16 costs the same
bytes and is not (double rounding, subnormals); fp32 costs twice as much for nothing. Control
tensors stay fp32 in the eval and are compared in fp32.
"""

from __future__ import annotations

import torch

from pgcompress.quant.grid import as_matrix
from pgcompress.quant.policy import KEEP_FLOAT_MAX_NUMEL

KFAC = "kfac"
MSE = "weight-mse"
EVAL_MATRIX_DTYPE = torch.bfloat16  # what the reference eval multiplies linear and embedding weights in


class Distortion:
    """``model(name, W, W_hat) -> float``; ``kind`` is KFAC (loss-based) or MSE (weight space).

    matrix_dtype: the dtype the eval computes matrices in (None: compare every tensor in fp32)."""

    def __init__(self, stats=None, matrix_dtype: torch.dtype | None = EVAL_MATRIX_DTYPE):
        self.stats = stats
        self.matrix_dtype = matrix_dtype
        self.kind = MSE if stats is None else KFAC
        self._B: dict[str, torch.Tensor] = {}
        grads = [] if stats is None else [float(g.float().mean()) for g in stats.grad_sq.values() if g.numel()]
        # Tensors the backward never reached (unused, or outside autograd): weight MSE at the typical
        # Fisher scale of the model, so they neither win nor lose every allocation for free.
        self._fallback = sorted(grads)[len(grads) // 2] if grads else 1.0

    def basis(self, name: str) -> str:
        """How this tensor's distortion is computed (for the report)."""
        if self.stats is None:
            return MSE
        s = self.stats
        if self._linear_keys(name):
            return "kfac+emb" if name in s.emb_sens else "kfac"
        if name in s.emb_sens:
            return "emb"
        return "fisher-diag" if self._fisher(name) is not None else "mse-scaled"

    def _linear_keys(self, name: str) -> list[str]:
        s = self.stats
        if name in s.hessians and name in s.out_sens:
            return [name]
        keys, i = [], 0
        while f"{name}[{i}]" in s.hessians and f"{name}[{i}]" in s.out_sens:
            keys.append(f"{name}[{i}]")
            i += 1
        return keys

    def _normalized_h(self, key: str) -> torch.Tensor:
        if key not in self._B:
            self._B[key] = (self.stats.hessians[key].float() / max(1, self.stats.tokens.get(key, 1)))
        return self._B[key]

    def is_matrix(self, name: str, W: torch.Tensor) -> bool:
        """Whether the eval computes with this tensor in ``matrix_dtype`` (a linear or embedding weight)."""
        if self.stats is None:
            return W.ndim >= 2 and W.numel() > KEEP_FLOAT_MAX_NUMEL
        return bool(self._linear_keys(name)) or name in self.stats.emb_sens

    def _eval_error(self, W: torch.Tensor, W_hat: torch.Tensor, matrix: bool) -> torch.Tensor:
        """E = W_hat - W as the eval sees them (fp32, cpu)."""
        W, W_hat = W.detach(), W_hat.detach()
        if matrix and self.matrix_dtype is not None:
            W, W_hat = W.to(self.matrix_dtype), W_hat.to(self.matrix_dtype)
        return (W_hat.float() - W.float()).cpu()

    def __call__(self, name: str, W: torch.Tensor, W_hat: torch.Tensor) -> float:
        if self.stats is None:
            return float(self._eval_error(W, W_hat, self.is_matrix(name, W)).double().square().sum())
        s = self.stats
        total = 0.0
        keys = self._linear_keys(name)
        E = self._eval_error(W, W_hat, bool(keys) or name in s.emb_sens)
        if keys:
            Em = as_matrix(E)  # [rows, in]; bank slices are consecutive row blocks
            step = Em.shape[0] // len(keys)
            for i, key in enumerate(keys):
                Ei = Em[i * step:(i + 1) * step]
                per_row = ((Ei @ self._normalized_h(key)) * Ei).sum(dim=1).double()  # [out]
                total += 0.5 * float((s.out_sens[key].double() * per_row).sum())
        if name in s.emb_sens:
            total += 0.5 * float((s.emb_sens[name].double() * E.double().reshape(s.emb_sens[name].shape).square()).sum())
        if keys or name in s.emb_sens:
            return total
        F = self._fisher(name)
        if F is not None:
            return 0.5 * float((F.double() * E.double().reshape(F.shape).square()).sum())
        return 0.5 * self._fallback * float(E.double().square().sum())

    def _fisher(self, name: str) -> torch.Tensor | None:
        """The diagonal Fisher of tensor ``name``, or of a bank slice ``bank[i]`` (its row i)."""
        g = self.stats.grad_sq
        if name in g:
            return g[name]
        base, _, idx = name[:-1].rpartition("[") if name.endswith("]") else ("", "", "")
        if base in g and idx.isdigit() and g[base].ndim >= 2 and int(idx) < g[base].shape[0]:
            return g[base][int(idx)]
        return None
