"""Reference artifacts keep their bytes: a change to a coder, the codec choice or the container that
alters any byte of these (or which codec a stream gets) fails here. The artifacts come from
tests/pinned_artifacts.py (small seeded state dicts, several methods, auto and forced codecs).

PINNED holds (digest, bytes of pgcompress-coded streams, 'tensor/role=codec' per stream) per case;
the digest covers every byte pgcompress decides and counts a third-party compressor's blob by its
decoded values (``pinned_artifacts.digest``: brotli's bytes vary between its versions). CONTAINER
is the sha256 of a whole all-raw artifact (preamble, header and layout).

History: recorded first at 9b5227b as whole-file digests; when the three context codecs became one
(rans-ctx2), the eight cases that use it got smaller by 3 to 7,583 B and were re-recorded
(bench/results/coder_consolidation.md). Re-recorded on 2026-12-06 in this form, from a state dict
built by integer draws (the same floats on every CPU), with the same values before and after the
automatic choice stopped trying byte compressors on large symbol streams.
Update an entry only for a deliberate format change, and say in the commit by how many bytes it moved.
"""

from __future__ import annotations

import pytest

from pinned_artifacts import CASES, RAW_CASE, build, container_digest, digest, own_bytes, stream_codecs

CONTAINER = 'adb9cc8ae881e4a73a684b7e1a75021825fc97da1e8ae66d1a614da2882493ca'

PINNED = {
    'int8-ref/auto': ('fcf1e6829c95fdc50abcabb13702278d76536da69401c40c392ce5aa4bacc92b', 193472,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'int6-rtn/auto': ('cbea69546086250579adb798d0e575b3514323ea38af5adfe1ff780581b91389', 214636,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=planes+brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=planes+brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'int6-rtn/auto-submittable': ('cbea69546086250579adb798d0e575b3514323ea38af5adfe1ff780581b91389', 214636,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=planes+brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=planes+brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'int6-sdclip/auto': ('20e01e87c2cce88b06c59b847f5610bd3f87e689c1846584ce215d9333c20a48', 134297,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=planes+brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'int3-rtn/auto': ('988c045791eff94e2cd4a8c0f2ab68fcde86a40cd5d70d9bcbe711dd1d79d4c3', 77801,
        ['tok_emb.weight/q=rans-ctx2',
         'tok_emb.weight/scale=brotli',
         'blocks.0.attn.qkv.weight/q=rans-ctx2',
         'blocks.0.attn.qkv.weight/scale=planes+brotli',
         'blocks.0.mlp.fc.weight/q=rans-ctx2',
         'blocks.0.mlp.fc.weight/scale=planes+brotli',
         'blocks.0.mlp.proj.weight/q=rans-ctx2',
         'blocks.0.mlp.proj.weight/scale=brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'fp16/auto': ('48a49dd17e918b2dd786481b2f9c0fb8e20f3e0f3f50b187dc8c526b5cefcc47', 0,
        ['tok_emb.weight/data=planes+brotli',
         'blocks.0.attn.qkv.weight/data=planes+brotli',
         'blocks.0.mlp.fc.weight/data=planes+brotli',
         'blocks.0.mlp.proj.weight/data=planes+brotli',
         'blocks.0.norm.weight/data=brotli',
         'lm_head.bias/data=planes+brotli']),
    'int6-rtn/rans': ('734597237a544ef9dc4561fadf22da649743c6cdbdda77f289999883ccc575fc', 226345,
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
    'int6-rtn/rans-ctx2': ('426a33369d304b41c3c75af641dabe56f7022b7c155334bcadd4e994f689eef1', 214636,
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
    'int8-ref/rans-ctx2': ('34d177bb7ed533711c9e0132d182e86c8ab99ec72ab2909cb8ba6ab120afb152', 193472,
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
    'int3-rtn/rans-ctx2': ('34ae1856abebf75f4dff7845d2c59769dc3f3a55429569c3b73b01baba7f51cb', 77801,
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
    'int6-rtn/bitpack': ('118c5dd3c0ed630ec49942a7093fdc2d164eb01a372801d9930733534ad36c98', 258052,
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
    assert (own_bytes(data), digest(data)) == (want_size, want_digest)


def test_container_bytes_are_pinned():
    assert container_digest(build(*RAW_CASE[1:])) == CONTAINER
