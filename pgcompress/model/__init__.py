"""Models: the one place pgcompress builds and calls them (``pgc eval`` and calibration alike).

    gpt.py        the built-in reference GPT, its config read off a state dict, the reference's dtype rules
    user_code.py  ``--model-code train_gpt.py``: the user's model built from their script, their errors
    calls.py      what pgcompress asks of any model: batch and per-sequence losses, next-token logits

    load_model(state_dict, model_code) -> (model, vocab size)   the built-in GPT or the user's model
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pgcompress.model.gpt import build_model
from pgcompress.model.user_code import build_user_model


def load_model(state_dict: dict[str, torch.Tensor], model_code: str | Path | None = None,
               source: str = "state dict", overrides: dict | None = None) -> tuple[nn.Module, int | None]:
    """(model with the weights loaded, in eval mode; its vocab size) for this state dict.

    Without ``model_code``: the built-in reference GPT, its config inferred from the shapes with
    ``overrides`` (GPTConfig fields) on top, in the reference's dtypes. With it: the user's model
    from that script (``user_code.build_user_model``; ``overrides`` do not apply), its vocab size
    None where its Hyperparameters gives none. ``source`` names the state dict in errors.
    """
    if model_code is not None:
        return build_user_model(Path(model_code), state_dict, source)
    model = build_model(state_dict, source, **(overrides or {}))
    return model, model.cfg.vocab_size
