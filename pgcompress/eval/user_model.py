"""``--model-code train_gpt.py``: evaluate a custom architecture with the user's own classes.

The script is imported as a module (its ``if __name__ == "__main__"`` block does not run), its
``GPT`` is built from its ``Hyperparameters`` and given the reference's dtype rules. The model
must keep the reference's interface: ``model(input_ids, target_ids) -> mean loss``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from pgcompress.errors import ModelError
from pgcompress.eval.model import CONTROL_PATTERNS, apply_reference_dtypes, load_strict

_PARAM_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def import_script(path: Path) -> ModuleType:
    """Import a training script by path under a private module name, without running its main."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ModelError(f"--model-code {path}: no such file")
    name = "pgc_user_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelError(f"--model-code {path}: importing it failed: {type(exc).__name__}: {exc}") from None
    return module


def build_user_model(path: Path, state_dict: dict[str, torch.Tensor], source: str) -> tuple[nn.Module, int | None]:
    """(model with weights loaded, its vocab size if Hyperparameters says) from the user's script."""
    module = import_script(path)
    for attr in ("GPT", "Hyperparameters"):
        if not hasattr(module, attr):
            raise ModelError(f"--model-code {path}: defines no {attr!r}")
    hp = module.Hyperparameters()
    try:
        model = module.GPT(**_gpt_kwargs(module.GPT, hp, path))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"--model-code {path}: GPT(...) failed: {type(exc).__name__}: {exc}") from None
    linear_cls = getattr(module, "CastedLinear", nn.Linear)
    patterns = tuple(getattr(module, "CONTROL_TENSOR_NAME_PATTERNS", CONTROL_PATTERNS))
    apply_reference_dtypes(model, linear_cls, patterns)
    load_strict(model, state_dict, source)
    vocab = getattr(hp, "vocab_size", None)
    return model.eval(), None if vocab is None else int(vocab)


def _gpt_kwargs(gpt_cls, hp, path) -> dict:
    """Map GPT.__init__ parameters onto Hyperparameters attributes of the same name.

    A GPT whose only parameter is not an attribute (``GPT(args)``, ``GPT(h)``) gets the object.
    """
    params = [p for p in inspect.signature(gpt_cls.__init__).parameters.values()
              if p.name != "self" and p.kind in _PARAM_KINDS]
    kwargs, unmatched = {}, []
    for p in params:
        if hasattr(hp, p.name):
            kwargs[p.name] = getattr(hp, p.name)
        elif p.default is inspect.Parameter.empty:
            unmatched.append(p.name)
    if unmatched and len(params) == 1:
        return {params[0].name: hp}
    if unmatched:
        raise ModelError(f"--model-code {path}: GPT needs {unmatched}, which Hyperparameters does not define")
    return kwargs
