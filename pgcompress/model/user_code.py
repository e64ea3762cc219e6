"""``--model-code train_gpt.py``: a custom architecture, built from the user's own classes.

The script is imported as a module (its ``if __name__ == "__main__"`` block does not run). The model
must keep the reference's interface: ``model(input_ids, target_ids) -> mean loss``. It is built in
one of two ways:

- the script defines ``build_model(state_dict) -> nn.Module``: that hook is called and its model
  used as returned (weights assumed loaded, dtypes as the hook left them; only ``.eval()`` is
  applied). ``Hyperparameters``, if defined, still gives the vocab size;
- otherwise its ``GPT`` is built from its ``Hyperparameters`` (GPT.__init__ parameters matched by
  name), given the reference's dtype rules, and the state dict is loaded strictly.

Either way, a ``prepare_eval(model)`` the script defines is then called on the model (it may return
a replacement): the place for runtime state the state dict does not carry, which the script's own
main sets before its final eval (depth recurrence switched on, module globals such as a BOS id).
Without it such state stays at its construction-time value and the numbers silently differ from the
record's own. What can be detected is reported: an ALL-CAPS module global that is still None after
the hooks and that the script's code reads gets a warning, and its name is added to any error the
forward then raises. docs/MODEL_CODE.md states the whole contract.

An exception raised inside the user's code (at import, in ``build_model``/``GPT(...)``/``prepare_eval``,
or in any call of the returned model, whose forward is wrapped in ``user_code_errors``) becomes a
one-line ``ModelError`` naming the script's file and line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Iterator

import torch
from torch import nn

from pgcompress.errors import ModelError, PgcError, PgcWarning
from pgcompress.model.gpt import CONTROL_PATTERNS, apply_reference_dtypes, load_strict

_PARAM_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_SCRIPTS: set[str] = set()  # resolved paths of every imported user script
_UNSET: dict[str, list[str]] = {}  # script path -> ALL-CAPS globals its code reads that are still None


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
    _SCRIPTS.add(str(path))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise user_error(exc, "importing it", path) from None
    return module


def build_user_model(path: Path, state_dict: dict[str, torch.Tensor], source: str) -> tuple[nn.Module, int | None]:
    """(model with weights loaded, its vocab size if Hyperparameters says) from the user's script."""
    module = import_script(path)
    hp_cls = getattr(module, "Hyperparameters", None)
    if hasattr(module, "build_model"):
        with user_code_errors("build_model(state_dict)", path):
            hp = hp_cls() if hp_cls is not None else None
            model = module.build_model(state_dict)
        if not isinstance(model, nn.Module):
            raise ModelError(f"--model-code {path}: build_model returned {type(model).__name__}, not an nn.Module")
    else:
        for attr in ("GPT", "Hyperparameters"):
            if not hasattr(module, attr):
                raise ModelError(f"--model-code {path}: defines no {attr!r} (and no build_model)")
        with user_code_errors("Hyperparameters()", path):
            hp = hp_cls()
        kwargs = _gpt_kwargs(module.GPT, hp, path)
        with user_code_errors("GPT(...)", path):
            model = module.GPT(**kwargs)
        linear_cls = getattr(module, "CastedLinear", nn.Linear)
        patterns = tuple(getattr(module, "CONTROL_TENSOR_NAME_PATTERNS", CONTROL_PATTERNS))
        apply_reference_dtypes(model, linear_cls, patterns)
        load_strict(model, state_dict, source)
    if hasattr(module, "prepare_eval"):
        with user_code_errors("prepare_eval(model)", path):
            prepared = module.prepare_eval(model)
        if prepared is not None and not isinstance(prepared, nn.Module):
            raise ModelError(f"--model-code {path}: prepare_eval returned {type(prepared).__name__}, "
                             "not an nn.Module (or None)")
        model = prepared if prepared is not None else model
    _check_runtime_globals(module, path)
    _guard_forward(model, path)
    vocab = getattr(hp, "vocab_size", None)
    return model.eval(), None if vocab is None else int(vocab)


def _guard_forward(model: nn.Module, path: Path) -> None:
    """Every ``model(...)`` call (the eval loop's included) raises a one-line ModelError naming the
    script's line, with the unset-globals hint, instead of a bare traceback."""
    forward = model.forward

    def guarded(*args, **kwargs):
        with user_code_errors("the model's forward", path):
            return forward(*args, **kwargs)

    model.forward = guarded


def _check_runtime_globals(module: ModuleType, path: Path) -> None:
    """Warn about ALL-CAPS module globals that are None and read by the script's own functions.

    Records keep runtime state such as ``BOS_ID`` in module globals set by their main; imported as
    a module, the script leaves them unset unless a hook sets them."""
    unset = sorted(name for name in _names_read(module)
                   if name.isupper() and name in vars(module) and vars(module)[name] is None)
    _UNSET[str(Path(path).resolve())] = unset
    if unset:
        warnings.warn(f"--model-code {path}: module global(s) {', '.join(unset)} are None after building the "
                      "model, and the script's code reads them; if its main sets them before evaluating, set "
                      "them in prepare_eval(model) too (docs/MODEL_CODE.md)", PgcWarning, stacklevel=3)


def _names_read(module: ModuleType) -> set[str]:
    """Global names used by the functions and methods defined in the script itself."""
    names: set[str] = set()
    stack = [v for v in vars(module).values() if getattr(v, "__module__", None) == module.__name__]
    seen: set[int] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            stack.extend(v for v in vars(obj).values()
                         if inspect.isfunction(v) or isinstance(v, (staticmethod, classmethod, property)))
        elif isinstance(obj, (staticmethod, classmethod)):
            stack.append(obj.__func__)
        elif isinstance(obj, property):
            stack.extend(f for f in (obj.fget, obj.fset) if f is not None)
        elif inspect.isfunction(obj):
            names |= _code_names(obj.__code__)
    return names


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if inspect.iscode(c):
            names |= _code_names(c)
    return names


@contextmanager
def user_code_errors(what: str, path: Path | None = None) -> Iterator[None]:
    """Turn an exception raised inside an imported user script into a one-line ModelError.

    With ``path`` (a call into that script) every exception is converted; without it only those
    whose traceback passes through a user script, so errors of the built-in model propagate as
    they are. Our own PgcErrors always propagate unchanged.
    """
    try:
        yield
    except PgcError:
        raise
    except Exception as exc:
        if path is None and _user_frame(exc) is None:
            raise
        raise user_error(exc, what, path) from exc


def user_error(exc: BaseException, what: str, path: Path | None) -> ModelError:
    """'--model-code <file>:<line>: <what> failed: the model code raised <Type>: <first line>'."""
    where = _user_frame(exc)
    at = f"{where[0]}:{where[1]}" if where else str(path)
    lines = str(exc).strip().splitlines()
    script = where[0] if where else path
    unset = _UNSET.get(str(Path(script).resolve()), []) if script else []
    hint = (f" (module global(s) {', '.join(unset)} still None: set them in prepare_eval(model), "
            "see docs/MODEL_CODE.md)") if unset else ""
    return ModelError(f"--model-code {at}: {what} failed: the model code raised {type(exc).__name__}: "
                      f"{lines[0] if lines else ''}{hint}")


def _user_frame(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) of the innermost traceback frame in a user script (or of a SyntaxError in one)."""
    found = None
    if isinstance(exc, SyntaxError) and exc.filename and _is_script(exc.filename):
        return str(Path(exc.filename).resolve()), int(exc.lineno or 0)
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if _is_script(tb.tb_frame.f_code.co_filename):
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _is_script(filename: str) -> bool:
    try:
        return str(Path(filename).resolve()) in _SCRIPTS
    except (OSError, ValueError):
        return False


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
