"""Reference artifacts keep their bytes: a change to a coder, the codec choice or the container that
alters any byte of these (or which codec a stream gets) fails here. The artifacts come from
tests/pinned_artifacts.py (small seeded state dicts, several methods, auto and forced codecs).

PINNED holds (sha256, size in bytes, 'tensor/role=codec' per stream) per case. How they were
recorded: by building every case at commit 9b5227b (the table ``PYTHONPATH=. python
tests/pinned_artifacts.py`` prints). When the three context codecs became one (rans-ctx2, which
keeps the smaller of its blobs with and without centres), the eight cases that use it were
re-recorded: every one got smaller (3 to 7,583 B; bench/results/coder_consolidation.md); fp16/auto,
int6-rtn/rans and int6-rtn/bitpack kept their 9b5227b bytes.
Update an entry only for a deliberate format change, and say in the commit by how many bytes it moved.
"""

from __future__ import annotations

import pytest

from pinned_artifacts import CASES, build, digest, stream_codecs

PINNED = {
    'int8-ref/auto': ('5eaf203ca27b8a2066ed04e0fe551d41cdc96e000566d152e36c25d30e959d8d', 193669,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-rtn/auto': ('5841d31f92b1a931c9e5d82f792e8bec0ad651b527b10222b6958cb4c9d1846d', 212227,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-rtn/auto-submittable': ('5841d31f92b1a931c9e5d82f792e8bec0ad651b527b10222b6958cb4c9d1846d', 212227,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-sdclip/auto': ('6ea1ce818fa90f35b0876d3eb5f877180a7c900dfcc1564d81c260bae7c2bf6f', 137003,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=planes+brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int3-rtn/auto': ('25e57cac575cef523a4dada411cc5c904c43a44eb7b9c6d892049cbe560cefb0', 76276,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'fp16/auto': ('822504826c2fc1c7b9826cc017c85b5171a60aefe1eb5668b5ef1c88fb7a6145', 585615,
        ['tok_emb.weight/data=planes+brotli',
         'blocks.0.attn.qkv.weight/data=planes+brotli',
         'blocks.0.mlp.fc.weight/data=planes+brotli',
         'blocks.0.mlp.proj.weight/data=planes+brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-rtn/rans': ('7106cc3783b67cb06ee9a21d2d2b824a819f17459bf484dc37def234f7383b30', 224614,
        ['tok_emb.weight/q=rans',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-rtn/rans-ctx2': ('5f39b8475895d352ccc4e6e7d5db3bc123062ea36f730d664142e686fd95ee8e', 212311,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int8-ref/rans-ctx2': ('5eaf203ca27b8a2066ed04e0fe551d41cdc96e000566d152e36c25d30e959d8d', 193669,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int3-rtn/rans-ctx2': ('919a397084f4440508849b24f49ab89b324b681f5aee40e72194f1a316afc2b7', 76308,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
    'int6-rtn/bitpack': ('dc97dedce3be11f239dd70b05119292dd0ad4c7e82754e0545039e5cfd1921d8', 261711,
        ['tok_emb.weight/q=bitpack',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=bitpack',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=bitpack',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=bitpack',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=brotli']),
}


def test_every_case_is_pinned():
    assert [c[0] for c in CASES] == list(PINNED)


@pytest.mark.parametrize("label,method,codec,submittable", CASES, ids=[c[0] for c in CASES])
def test_artifact_bytes_are_pinned(label, method, codec, submittable):
    data = build(method, codec, submittable)
    want_digest, want_size, want_codecs = PINNED[label]
    assert stream_codecs(data) == want_codecs
    assert (len(data), digest(data)) == (want_size, want_digest)
