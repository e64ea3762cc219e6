"""The budget solver: ``pack_to_budget(state_dict, budget)`` -> the least-damage artifact that fits.

    table.py       candidates per tensor (from the method registry), rate and distortion of each
    rate.py        coded bytes, measured by encoding
    distortion.py  predicted loss increase from one calibration pass (K-FAC / Fisher), or weight MSE
    probe.py       each calibrated family's predicted damage rescaled by the model's measured loss
    banks.py       3-D weight banks as one row per slice (a method per slice), one tensor in the artifact
    allocate.py    exact multiple-choice knapsack + fill
    finer.py       rates between a row's waterfill rungs when the last bytes fall between them
    accounting.py  code + decoder + artifact, counted as the submission will be
    solver.py      allocate -> write -> measure -> tighten
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from pgcompress.budget.accounting import Accounting
from pgcompress.budget.banks import join_banks, split_banks
from pgcompress.budget.distortion import Distortion
from pgcompress.budget.probe import LINEAR, LOOKUP, Probe, correct_families, describe, factor_for
from pgcompress.budget.solver import Solution, solve
from pgcompress.budget.table import CandidateTable, build_table
from pgcompress.errors import ModelError
from pgcompress.progress import progress_stage
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calibration import CalibConfig

CHALLENGE_BUDGET = 16_000_000
DEFAULT_SELFGEN = 32  # sequences the model samples itself when no shards are given
DEFAULT_SELFGEN_S = 180.0  # a user's model (no KV cache) samples fewer, to fit about this many seconds
FISHER_SEQS = 16  # calibration sequences that also get a backward pass (output sensitivities)
PROBE_SEQS = 8  # held-out sequences the loss probes run on (probe.py)


@dataclass
class Prepared:
    table: CandidateTable
    calibration: str  # what the distortion is computed from, for the report
    cache: dict  # coded streams, shared by every solve on this table
    distortion: Distortion  # scores any other configuration on the same scale (sweeps)
    hessians: dict  # for uniform GPTQ packs compared on the same calibration
    probes: list = field(default_factory=list)  # loss probes that rescaled families (probe.Probe)
    groups: dict = field(default_factory=dict)  # tensor name -> probe group (probe.LOOKUP / LINEAR)

    def factor(self, name: str, method: str) -> float:
        """What the loss probes multiply ``method``'s predicted damage on tensor ``name`` by."""
        return factor_for(self.probes, method, self.groups.get(name, LINEAR)) if self.probes else 1.0


def prepare(state_dict: dict[str, torch.Tensor], calib: CalibConfig | None = None, submittable: bool = True,
            progress: bool = False, fisher_seqs: int = FISHER_SEQS,
            methods: list[str] | None = None, probe_seqs: int = PROBE_SEQS, per_slice: bool = True) -> Prepared:
    """Calibrate (unless ``calib`` is None and no model can be run) and build the candidate table.

    calib None: self-generated calibration on the built-in model; a model it cannot build (another
    architecture, no ``model_code``) falls back to weight-space MSE, and ``calibration`` says so.
    methods: restrict the candidates to these method names (where a tensor offers any of them).
    probe_seqs: held-out sequences for the loss probes that put the calibrated families' predicted
    damage on one scale (``probe.py``); 0: none.
    per_slice: a 3-D weight bank gets a method per slice (``banks.py``); False: one for the bank.
    """
    from pgcompress.model.gpt import NOT_REFERENCE_HINT
    from pgcompress.quant.calibration import calibrate_stats

    cfg = calib or CalibConfig(selfgen=DEFAULT_SELFGEN)
    cfg = replace(cfg, progress=progress)
    try:
        stats = calibrate_stats(state_dict, cfg, fisher_seqs=fisher_seqs, held_out=probe_seqs)
        what = f"K-FAC loss proxy from {stats.source}"
    except ModelError as exc:
        if calib is not None and (calib.shards or calib.model_code):
            raise
        reason = str(exc).removesuffix(NOT_REFERENCE_HINT)
        stats, what = None, f"weight-space MSE (no model could be run: {reason}; pass --model-code train_gpt.py)"
    ctx = QuantContext(stats.hessians if stats is not None else {}, device=cfg.device,
                       out_sens=stats.out_sens if stats is not None else {})
    distortion = Distortion(stats)
    table = build_table(state_dict, ctx, distortion, submittable, methods, progress=progress, per_slice=per_slice)
    probes, groups = [], {}
    if stats is not None and stats.held_out is not None:
        split = split_banks(state_dict, table.banks)  # the table's rows: bank slices where it has them
        groups = {name: LOOKUP if name in stats.emb_sens else LINEAR for name in split}
        with progress_stage("loss probes", enabled=progress):
            probes = _probe_families(table, split, stats, cfg, groups)
        what += "; " * bool(describe(probes)) + describe(probes)
    prepared = Prepared(table, what, {}, distortion, ctx.hessians, probes, groups)
    if probes and table.more is not None:  # candidates made later get the probes' factors too
        base = table.more

        def more(name: str, method: str):
            c = base(name, method)
            if c is not None:
                c.dist *= prepared.factor(name, method)
            return c

        table.more = more
    return prepared


def _probe_families(table: CandidateTable, state_dict, stats, cfg: CalibConfig, groups: dict) -> list[Probe]:
    from pgcompress.model.calls import sequence_losses
    from pgcompress.quant.calibration import calibration_model

    def losses(sd):
        return sequence_losses(calibration_model(join_banks(sd, table.banks), cfg.device, cfg.model_code),
                               stats.held_out)

    return correct_families(table, state_dict, losses, groups.__getitem__)


def pack_to_budget(state_dict: dict[str, torch.Tensor], budget: int = CHALLENGE_BUDGET, code=None,
                   calib: CalibConfig | None = None, submission: str = "self-contained",
                   progress: bool = False, prepared: Prepared | None = None,
                   methods: list[str] | None = None) -> Solution:
    """The best artifact whose counted total (code + decoder + artifact) is below ``budget``."""
    from pgcompress.pack import check_state_dict

    check_state_dict(state_dict)
    submittable = submission == "self-contained"
    accounting = Accounting(code, submission)
    prepared = prepared or prepare(state_dict, calib, submittable, progress, methods=methods)
    with progress_stage(f"solve at {budget:,} B", enabled=progress):
        solution = solve(prepared.table, state_dict, budget, accounting, submittable=submittable,
                         cache=prepared.cache, progress=progress)
    solution.calibration = prepared.calibration
    return solution


__all__ = ["pack_to_budget", "prepare", "Prepared", "Solution", "CHALLENGE_BUDGET", "Accounting"]
