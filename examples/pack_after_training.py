"""Packing at the end of a training script, in place of the reference's int8+zlib export.

Run it as is to see it work on a tiny random model; in a real train_gpt.py, call
``export_artifact(base_model, Path(__file__))`` on rank 0 after training.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import pgcompress


def export_artifact(model: torch.nn.Module, code_file: Path, out: Path = Path("final_model.pgc"),
                    method: str = "int8-ref", budget: int = 16_000_000) -> dict[str, torch.Tensor]:
    """Pack the model under the budget (code bytes counted), write it, return the roundtripped weights."""
    result = pgcompress.pack_report(model.state_dict(), budget, code_file, method=method)
    out.write_bytes(result.data)
    print(f"code_bytes:{result.code_bytes} model_bytes:{result.model_bytes} total_bytes:{result.total_bytes}")
    # Evaluate what the artifact decodes to, exactly as the challenge scores it.
    return pgcompress.unpack(result.data)


if __name__ == "__main__":
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024, bias=False), torch.nn.Linear(1024, 512, bias=False))
    with tempfile.TemporaryDirectory() as tmp:
        restored = export_artifact(model, Path(__file__), Path(tmp) / "final_model.pgc")
    model.load_state_dict(restored)
    print("loaded the roundtripped weights back into the model")
