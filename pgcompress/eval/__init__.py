"""Evaluation: val_loss / val_bpb exactly as the challenge computes them (spec sections 2-5, 8).

    run(paths, EvalOptions(...)) -> [EvalResult]   score files on the same validation tokens
"""

from pgcompress.eval.runner import EvalOptions, EvalResult, run

__all__ = ["EvalOptions", "EvalResult", "run"]
