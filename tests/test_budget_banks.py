"""The solver sees a calibrated 3-D weight bank slice by slice (examples/record_banks' model): one
table row per slice, a method per slice, one ``slices`` tensor in the artifact whose every slice
is exactly the candidate the solver chose for it, and a decoder that carries every part's method."""

from __future__ import annotations

import shutil

import pytest
import torch

import pgcompress
from conftest import REPO
from pgcompress.budget import pack_to_budget, prepare
from pgcompress.budget.accounting import Accounting
from pgcompress.budget.banks import MIN_SLICE_NUMEL, find_banks, join_banks, split_banks
from pgcompress.quant.calibration import CalibConfig
from pgcompress.registry import get_method
from pgcompress.submission.decoder import build_decoder

SCRIPT = REPO / "examples" / "record_banks" / "train_gpt.py"
# the smallest shape whose every bank slice is split (MIN_SLICE_NUMEL values: 256 x 256)
TINY = {"NUM_LAYERS": "3", "MODEL_DIM": "256", "NUM_HEADS": "4", "NUM_KV_HEADS": "4", "MLP_MULT": "2",
        "VOCAB_SIZE": "512"}
METHODS = ["int2-rtn", "int3-rtn", "int4-rtn", "int6-rtn", "int8-rtn", "int3-gptq", "int5-gptq", "bf16", "fp16",
           "raw", "fp32"]
BANKS = ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")


def test_split_and_join_are_inverse_and_only_fully_calibrated_banks_split():
    g = torch.Generator().manual_seed(0)
    big = (256, MIN_SLICE_NUMEL // 256)
    sd = {"a": torch.randn(3, *big, generator=g), "b": torch.randn(2, *big, generator=g), "c": torch.randn(7),
          "d": torch.randn(2, *big, generator=g), "e": torch.randn(2, 255, big[1], generator=g)}
    hessians = {"a[0]": 1, "a[1]": 1, "a[2]": 1, "b[0]": 1, "d[0]": 1, "d[1]": 1, "e[0]": 1, "e[1]": 1}
    sd["d[1]"] = torch.zeros(1)  # a real key that a split of d would collide with
    banks = find_banks(sd, hessians)
    # b: a slice unseen; c: not a bank; d: its slice names are taken; e: slices too small to pay
    assert banks == {"a": 3}
    split = split_banks(sd, banks)
    assert list(split) == ["a[0]", "a[1]", "a[2]", "b", "c", "d", "e", "d[1]"]
    assert torch.equal(split["a[1]"], sd["a"][1])
    back = join_banks(split, banks)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.fixture(scope="module")
def banked(tmp_path_factory):
    """(state dict, script path) of a tiny record_banks model with random trained-like weights; the
    script is copied so that its Hyperparameters read this test's environment on import."""
    mp = pytest.MonkeyPatch()
    for k, v in TINY.items():
        mp.setenv(k, v)
    script = tmp_path_factory.mktemp("banks") / "train_gpt.py"
    shutil.copy(SCRIPT, script)
    from pgcompress.model.user_code import import_script

    module = import_script(script)
    torch.manual_seed(0)
    model = module.make_model(module.Hyperparameters(), "cpu")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for name in BANKS:  # every slice its own spread, as different layers have
        spread = torch.rand(sd[name].shape[0], 1, 1, generator=g) * 0.2 + 0.01
        sd[name] = torch.randn(sd[name].shape, generator=g) * spread
    sd["tok_emb.weight"] = (torch.randn(sd["tok_emb.weight"].shape, generator=g) * 0.05).bfloat16()
    yield sd, script
    mp.undo()


@pytest.fixture(scope="module")
def prepared(banked):
    sd, script = banked
    return prepare(sd, CalibConfig(selfgen=2, seq_len=32, model_code=str(script)), methods=METHODS, probe_seqs=0)


def test_each_calibrated_bank_slice_is_a_row_and_the_artifact_holds_what_was_chosen(banked, prepared):
    sd, _ = banked
    table = prepared.table
    assert table.banks == {n: sd[n].shape[0] for n in BANKS}
    names = [r.name for r in table.rows]
    for bank in BANKS:
        assert bank not in names
        assert [n for n in names if n.startswith(bank + "[")] == [f"{bank}[{i}]" for i in range(sd[bank].shape[0])]
    assert all(r.basis == "kfac" for r in table.rows if "_bank[" in r.name)
    budget = int(0.55 * sum(t.numel() for t in sd.values())) + 40_000  # ~4 bits a weight + the decoder
    sol = pack_to_budget(sd, budget, prepared=prepared)
    assert sol.total_bytes < budget
    chosen = {t.name: c for t, c in zip(sol.tensors, sol.choice)}
    restored = pgcompress.unpack(sol.data)
    assert set(restored) == set(sd) and all(restored[k].shape == sd[k].shape for k in sd)
    for bank in BANKS:
        for i in range(sd[bank].shape[0]):
            c = chosen[f"{bank}[{i}]"]
            alone = get_method(c.enc.method).dequantize(c.enc, tuple(sd[bank].shape[1:]), sd[bank].dtype)
            assert torch.equal(restored[bank][i], alone), (bank, i)  # the slice, in its place
    methods = {t.method for t in sol.tensors if "_bank[" in t.name}
    assert len(methods) > 1  # the slices did not all get one method
    # the decoder the submission counts carries every part's method and decodes the same tensors
    counted = Accounting(None).count(sol.data)
    src = build_decoder(sol.data)
    assert counted.decoder_bytes == len(src.encode()) + 1
    ns: dict = {}
    exec(compile(src, "decoder", "exec"), ns)
    got = ns["decode"](sol.data)
    assert all(torch.equal(got[k], restored[k]) for k in restored)



def test_the_example_trains_packs_and_the_artifact_restores_its_banks(tmp_path):
    """examples/record_banks run as a participant would (tiny shape, 3 steps): it writes the
    checkpoint and an artifact under its budget whose banks decode to the checkpoint's shapes."""
    import os
    import subprocess
    import sys

    from conftest import SHARED
    from pgcompress.eval.shards import read_shard, write_shard

    val = SHARED / "data" / "sp8192" / "fineweb_val_000000.bin"
    (tmp_path / "data").mkdir()
    write_shard(tmp_path / "data" / "fineweb_train_000000.bin", read_shard(val)[250_000:300_000])
    # every shape variable explicit: the module's `banked` fixture holds TINY in os.environ
    env = {**os.environ, "DATA_PATH": str(tmp_path / "data"), "NUM_LAYERS": "2", "MODEL_DIM": "64",
           "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "4", "VOCAB_SIZE": "8192", "ITERATIONS": "3",
           "TRAIN_SEQ_LEN": "64",
           "TRAIN_BATCH_TOKENS": "256", "BUDGET": "700000", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    total = int(r.stdout.split("total_bytes:")[1].split()[0])
    assert total < 700_000
    sd = torch.load(tmp_path / "final_model.pt", weights_only=True)
    restored = pgcompress.unpack((tmp_path / "final_model.pgc").read_bytes())
    assert {k: v.shape for k, v in restored.items()} == {k: v.shape for k, v in sd.items()}
    assert sd["qo_bank"].shape == (4, 64, 64) and sd["tok_emb.weight"].shape == (8192, 64)
