"""Fuzz the artifact readers: ``pgcompress.unpack`` and the generated submission decoder.

Cases come from valid artifacts of every method and codec (a tiny model packed each way), then
mutated: bit flips, byte edits, truncation and extension of stream blobs, blobs spliced in from
other artifacts, codec swaps, header fields set to hostile values, JSON text edits, preamble
edits, duplicated or dropped tensors - with sizes and CRC-32s recomputed so the mutation reaches
the codecs and methods (and sometimes not, to test the checksums) - plus structurally generated
headers whose blobs follow each codec's grammar with random fields, and the hand-made hostile
artifacts of tests/crafted.py.

Each target runs in a long-lived worker process under RLIMIT_AS (a memory cap) and a per-case
time limit; a worker that dies or times out is restarted and the case recorded. Outcomes:
``decoded``, ``FormatError`` (the only error allowed), ``other`` (any other exception: a bug),
``crash``, ``timeout``. FormatErrors raised by a safety net (a codec or method failing with
another exception, converted by the walk) are counted apart as ``net``: they are bugs that were
contained. Failing cases are saved (bench/fuzz.py: to bench/results/fuzz_failures/) for
tests/fuzz_corpus/.

The harness lives with the tests: tests/test_format_fuzz.py runs a small fuzz with it, and the
full run is ``python -m bench.fuzz``, which starts this file as a script (its folder, tests/, is
then first on sys.path, so ``crafted`` imports as it does in the tests) and writes the report:

    python tests/fuzz_harness.py --cases N --seed S --failures DIR --json OUT.json
    python tests/fuzz_harness.py --worker library|decoder     (one worker; started by ``Worker``)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path


MEMORY_LIMIT = 2 << 30  # RLIMIT_AS of a worker (torch alone maps ~1 GiB)
TIME_LIMIT_S = 20.0
TARGETS = ("library", "decoder")
METHODS = ["int8-ref", "int6-rtn", "int4-clip-asym-bf16-g32", "int5-rtn+lqer", "fp16", "bf16", "fp32", "raw"]
CODECS = ["auto", "raw", "zlib", "lzma", "brotli", "zstd", "planes+brotli", "planes+lzma", "bitpack", "rans", "rans-ctx2"]
INTERESTING = [0, 1, 2, 3, 7, 8, 15, 16, 64, 255, 256, 1023, 1 << 15, (1 << 16) - 1, 1 << 16, (1 << 16) + 1,
               1 << 20, (1 << 22) + 1, 1 << 28, (1 << 31) - 1, 1 << 31, 1 << 34, (1 << 36) + 1, 1 << 63,
               (1 << 64) + 5, -1, -128, -129, -(1 << 63), 10 ** 30]
HOSTILE = INTERESTING + [None, True, False, 1.5, float("1e308"), "x", "", [], {}, [1, 2], {"a": 1}, "int8",
                         "float32", "bfloat16", "rans", "bitpack", "int8-ref", "fp16"]


# ---- seeds ------------------------------------------------------------------------------------

def seed_artifacts(methods: list[str] = METHODS, codecs: list[str] = CODECS) -> list[bytes]:
    """Valid artifacts: a tiny model packed with every method x every codec (forced), and crafted ones."""
    import torch

    import pgcompress
    from crafted import CRAFTED

    g = torch.Generator().manual_seed(0)
    sd = {"tok_emb.weight": (torch.randn(64, 32, generator=g) * 0.02).to(torch.bfloat16),
          "blocks.0.attn.c_q.weight": torch.randn(32, 32, generator=g) * 0.05,
          "blocks.0.mlp.fc.weight": torch.randn(64, 32, generator=g) * 0.05,
          "blocks.0.attn_scale": torch.rand(32, generator=g),
          "blocks.0.attn.q_gain": torch.full((4,), 1.5),
          "blocks.0.zero.weight": torch.zeros(16, 32),
          "skip_weights": torch.ones(1, 32)}
    seeds = []
    for method in methods:
        for codec in codecs:
            seeds.append(pgcompress.pack(sd, method=method, codec=codec))
    seeds += [fn() for fn in CRAFTED.values()]
    return seeds


# ---- artifact surgery -------------------------------------------------------------------------

def split(data: bytes):
    """A well-formed artifact -> (preamble fields, header dict, [blobs]) or None if it is not one."""
    try:
        magic, ver, hc, res, hsize, _ = struct.unpack_from("<4sHBBII", data, 0)
        header = json.loads(zlib.decompress(data[16:16 + hsize]))
        blobs, pos = [], 16 + hsize
        for t in header["tensors"]:
            for s in t["streams"]:
                blobs.append(data[pos:pos + s["size"]])
                pos += s["size"]
        return (magic, ver, hc, res), header, blobs
    except Exception:
        return None


def join(pre, header, blobs, fix=True, text: bytes | None = None) -> bytes:
    """Reassemble; ``fix`` recomputes every stream's size and CRC so edits reach the codecs."""
    tensors = header.get("tensors") if isinstance(header, dict) else None
    if fix and isinstance(tensors, list):
        i = 0
        for t in tensors:
            streams = t.get("streams") if isinstance(t, dict) else None
            for s in streams if isinstance(streams, list) else []:
                if isinstance(s, dict) and i < len(blobs):
                    s["size"], s["crc"] = len(blobs[i]), zlib.crc32(blobs[i])
                i += 1
    if text is None:
        text = json.dumps(header, allow_nan=True).encode()
    packed = zlib.compress(text, 6)
    magic, ver, hc, res = pre
    return struct.pack("<4sHBBII", magic, ver, hc, res, len(packed), zlib.crc32(packed)) + packed + b"".join(blobs)


def streams_of(header):
    try:
        return [(t, s) for t in header["tensors"] for s in t["streams"] if isinstance(s, dict)]
    except (TypeError, KeyError):
        return []


def mutate_blob(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    op = rng.randrange(6)
    if op == 0 and b:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == 2:
        del b[rng.randrange(len(b) + 1):]
    elif op == 3:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 4 and b:
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randint(1, 32)]
    else:
        i = rng.randrange(len(b) + 1)
        b[i:i + rng.randint(0, 4)] = bytes([0xFF] * rng.randint(1, 10) + [0x01])  # a long varint
    return bytes(b)


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> tuple[bytes, str]:
    if len(data) < 16:
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(0, 24))), "pad"
    parts = split(data)
    ops = ["flip_raw", "truncate_file", "preamble"]
    if parts is not None and streams_of(parts[1]):
        ops += ["blob"] * 4 + ["splice"] * 2 + ["codec"] * 2 + ["field"] * 4 + ["json_text"] * 2 + ["tensors"]
    op = rng.choice(ops)
    b = bytearray(data)
    if op == "flip_raw":
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), op
    if op == "truncate_file":
        return bytes(b[:rng.randrange(len(b))]), op
    if op == "preamble":
        field = rng.randrange(4)
        if field == 0:
            b[4:6] = struct.pack("<H", rng.choice([0, 2, 0xFFFF]))
        elif field == 1:
            b[6] = rng.randrange(1, 256)
        elif field == 2:
            b[7] = rng.randrange(1, 256)
        else:
            b[8:12] = struct.pack("<I", rng.choice([0, 1, len(b), 0xFFFFFFFF, rng.randrange(1 << 32)]))
        return bytes(b), op
    pre, header, blobs = parts
    entries = streams_of(header)
    k = rng.randrange(len(entries))
    t, s = entries[k]
    if op == "blob":
        blobs[k] = mutate_blob(rng, blobs[k])
    elif op == "splice":
        other = split(rng.choice(seeds))
        if other and other[2]:
            blobs[k] = rng.choice(other[2])
    elif op == "codec":
        s["codec"] = rng.choice([c for c in CODECS if c != "auto"] + ["nope"])
    elif op == "field":
        target = rng.choice([s, s, t, header])
        key = rng.choice(list(target) + ["lo", "hi", "extra"])
        if target is t and key == "params" and isinstance(t.get("params"), dict) and t["params"] and rng.random() < 0.7:
            target, key = t["params"], rng.choice(list(t["params"]))
        if target is t and key == "shape" and rng.random() < 0.5:
            value = [rng.choice(INTERESTING) for _ in range(rng.randint(0, 3))]
        else:
            value = rng.choice(HOSTILE)
        if rng.random() < 0.1:
            target.pop(key, None)
        else:
            target[key] = value
    elif op == "json_text":
        text = bytearray(json.dumps(header).encode())
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            text[i:i + rng.randint(0, 3)] = rng.choice([b"9", b"-", b"[", b"]", b"{", b"}", b",", b'"', b"NaN",
                                                         b"1e999", b"0" * 30, bytes([rng.randrange(256)])])
        return join(pre, header, blobs, fix=False, text=bytes(text)), op
    elif op == "tensors":
        if rng.random() < 0.5:
            header["tensors"].append(json.loads(json.dumps(t)))
            blobs += [blobs[i] for i, (tt, _) in enumerate(entries) if tt is t]
        else:
            header["tensors"] = header["tensors"][::-1]  # blobs no longer line up with their entries
    return join(pre, header, blobs, fix=rng.random() < 0.9), op


def random_blob(rng: random.Random, codec: str, count: int) -> bytes:
    """Blobs that follow a codec's grammar with random field values."""
    from crafted import rans_blob, varint

    if codec in ("rans", "rans-ctx2") and rng.random() < 0.8:
        a = rng.choice([1, 2, 3, 16, 255])
        freqs = [rng.choice(INTERESTING[:14]) for _ in range(a)]
        if rng.random() < 0.5:
            freqs[0] = max(0, (1 << 15) - sum(freqs[1:]))
        lanes = rng.choice([0, 1, 2, 3, 64, 4096, 4097, max(1, count // 2048)])
        states = [rng.choice([1 << 16, (1 << 32) - 1, rng.randrange(1 << 32)]) for _ in range(min(lanes, 64))]
        words = bytes(rng.randrange(256) for _ in range(2 * rng.randint(0, 32)))
        blob = rans_blob(rng.choice([0, 1, 10, 15, 16, 17]), freqs, lanes, states, words)
        if codec == "rans-ctx2":  # its model header (7 integers) before a body of rans' grammar
            head = b"".join(varint(rng.choice(INTERESTING[:12])) for _ in range(7))
            blob = head + blob + blob
        return blob
    if codec == "bitpack":
        return bytes([rng.choice([0, 1, 2, 8, 16, 17, 255])]) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 256)))
    if codec in ("zlib", "lzma", "brotli", "planes+brotli", "planes+lzma") and rng.random() < 0.7:
        import brotli
        import lzma

        filler = raw if rng.random() < 0.5 else bytes(rng.choice([64, 1 << 16, 1 << 24]))
        if codec == "zlib":
            return zlib.compress(filler)
        if "lzma" in codec:
            return lzma.compress(filler, format=lzma.FORMAT_XZ, preset=1)
        return brotli.compress(filler, quality=1)
    return raw


def generate(rng: random.Random) -> tuple[bytes, str]:
    """A structurally generated artifact: plausible headers, grammar-following random blobs."""
    tensors, blobs = [], []
    for i in range(rng.randint(0, 4)):
        count = rng.choice(INTERESTING[:20] + [rng.randrange(4096)])
        shape = rng.choice([[count], [1, count], [count // 2, 2] if count % 2 == 0 else [count], []])
        method = rng.choice(METHODS + ["int6-gptq", "bogus"])
        streams = []
        for role in rng.choice([["q", "scale"], ["q"], ["data"], ["q", "scale", "zero"]]):
            codec = rng.choice(CODECS[1:])
            dtype = rng.choice(["int8", "int8", "float16", "uint16", "float32", "int16", "uint8", "bool"])
            n = count if role in ("q", "data") else rng.choice([1, count, 64, 32])
            entry = {"role": role, "dtype": dtype, "count": n, "codec": codec}
            if dtype in ("int8", "int16", "uint8") and rng.random() < 0.8:
                lo = rng.choice([-127, -31, -8, 0, 0])
                entry["lo"], entry["hi"] = lo, lo + rng.choice([0, 1, 15, 62, 254])
            blobs.append(random_blob(rng, codec, n))
            entry["size"], entry["crc"] = len(blobs[-1]), zlib.crc32(blobs[-1])
            streams.append(entry)
        params = rng.choice([{"scheme": "row"}, {"scheme": "tensor", "scale": 0.5}, {},
                             {"bits": 6, "sym": True, "group": 0, "scale_dtype": "fp16"},
                             {"bits": 4, "sym": False, "group": 32, "scale_dtype": "bf16"},
                             {"bits": 5, "sym": True, "group": 0, "scale_dtype": "fp16", "lqer_rank": 2, "lqer_bits": 4}])
        tensors.append({"name": f"t{i}", "shape": shape, "dtype": rng.choice(["float32", "bfloat16", "float16", "int8"]),
                        "method": method, "params": params, "streams": streams})
    return join((b"PGCA", 1, 0, 0), {"label": "gen", "tensors": tensors}, blobs, fix=False), "generate"


def cases(n: int, seed: int, seeds: list[bytes]):
    rng = random.Random(seed)
    for i in range(n):
        if i < len(seeds):
            yield seeds[i], "seed"
            continue
        if rng.random() < 0.25:
            yield generate(rng)
            continue
        data, ops = rng.choice(seeds), []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data, op = mutate(rng, data, seeds)
            ops.append(op)
        yield data, "+".join(ops)


# ---- worker -----------------------------------------------------------------------------------

def decoder_module() -> dict:
    from pgcompress.registry import codec_names, get_codec
    from pgcompress.submission.decoder import build_decoder_for

    src = build_decoder_for([c for c in codec_names() if get_codec(c).submittable],
                            [m for m in METHODS + ["int6-gptq"]], minify=True)
    ns: dict = {}
    exec(compile(src, "decode_artifact.py", "exec"), ns)
    return ns


def worker(target: str) -> None:
    """Read length-prefixed cases on stdin, answer one JSON line each on stdout."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import pgcompress
    from pgcompress.errors import FormatError

    if target == "library":
        run, allowed = (lambda data: pgcompress.unpack(data, "case")), FormatError
    else:
        ns = decoder_module()
        run, allowed = ns["decode"], ns["FormatError"]
    out = sys.stdout
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    out.write("ready\n")
    out.flush()
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        data = stdin.read(struct.unpack("<I", head)[0])
        t0 = time.perf_counter()
        try:
            run(data)
            outcome, detail = "decoded", ""
        except allowed as exc:
            outcome, detail = "FormatError", str(exc)
            if "unexpectedly (" in detail or (" data (" in detail and "bad " in detail):
                outcome = "net"
        except BaseException as exc:  # noqa: BLE001 - the point is to see every other kind
            outcome, detail = "other", f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.write(json.dumps({"outcome": outcome, "detail": detail[:300], "s": seconds, "rss_mb": rss}) + "\n")
        out.flush()


class Worker:
    def __init__(self, target: str):
        self.target = target
        self.proc = None
        self.peak_rss_mb = 0.0
        self.restarts = -1
        self.start()

    def start(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.restarts += 1
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", self.target], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout.readline().strip() == b"ready", f"{self.target} worker did not start"

    def run(self, data: bytes) -> dict:
        import select

        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.start()
            return {"outcome": "crash", "detail": "worker gone before the case", "s": 0.0, "rss_mb": 0.0}
        t0 = time.perf_counter()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIME_LIMIT_S)
        if not ready:
            self.start()
            return {"outcome": "timeout", "detail": f"over {TIME_LIMIT_S}s", "s": time.perf_counter() - t0, "rss_mb": 0.0}
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            self.start()
            return {"outcome": "crash", "detail": f"worker exit {rc}", "s": time.perf_counter() - t0, "rss_mb": 0.0}
        r = json.loads(line)
        self.peak_rss_mb = max(self.peak_rss_mb, r["rss_mb"])
        return r


# ---- driver -----------------------------------------------------------------------------------

def fuzz(n: int, seed: int, failures: Path) -> dict:
    """n cases per target from ``seed``; each failing case's bytes are written to ``failures``."""
    seeds = seed_artifacts()
    workers = {t: Worker(t) for t in TARGETS}
    stats = {t: {"cases": 0, "outcomes": {}, "slowest": (0.0, ""), "failures": []} for t in TARGETS}
    disagree = 0
    t_start = time.perf_counter()
    for i, (data, how) in enumerate(cases(n, seed, seeds)):
        got = {}
        for t in TARGETS:
            r = workers[t].run(data)
            st = stats[t]
            st["cases"] += 1
            st["outcomes"][r["outcome"]] = st["outcomes"].get(r["outcome"], 0) + 1
            if r["s"] > st["slowest"][0]:
                st["slowest"] = (r["s"], f"case {i} ({how}, {len(data)} bytes): {r['outcome']} {r['detail'][:120]}")
            if r["outcome"] not in ("decoded", "FormatError", "net"):
                failures.mkdir(parents=True, exist_ok=True)
                (failures / f"{t}-{r['outcome']}-{i}.bin").write_bytes(data)
                st["failures"].append(f"case {i} ({how}): {r['outcome']} {r['detail'][:200]}")
            got[t] = r["outcome"]
        disagree += (got["library"] == "decoded") != (got["decoder"] == "decoded")
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} cases, {time.perf_counter() - t_start:.0f}s: "
                  + "; ".join(f"{t} {stats[t]['outcomes']}" for t in TARGETS), file=sys.stderr)
    for t in TARGETS:
        stats[t]["peak_rss_mb"] = workers[t].peak_rss_mb
        stats[t]["restarts"] = workers[t].restarts
        workers[t].proc.stdin.close()
        workers[t].proc.wait()
    return {"cases": n, "seed": seed, "seeds": len(seeds), "seconds": time.perf_counter() - t_start,
            "memory_limit_bytes": MEMORY_LIMIT, "time_limit_s": TIME_LIMIT_S, "targets": stats,
            "decoded_by_one_only": disagree}


def main() -> None:
    ap = argparse.ArgumentParser(description="Fuzz pgcompress.unpack and the generated decoder (see the module docstring).")
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--failures", type=Path, help="where failing cases are written")
    ap.add_argument("--json", type=Path, help="where the outcome counts are written")
    ap.add_argument("--worker", choices=TARGETS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.failures is None or args.json is None:
        ap.error("a fuzz run needs --failures DIR and --json FILE")
    args.json.write_text(json.dumps(fuzz(args.cases, args.seed, args.failures), indent=1) + "\n")  # targets in TARGETS order


if __name__ == "__main__":
    main()
