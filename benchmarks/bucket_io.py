"""Bucket I/O overhead: one quickstart-sized step and one ~135M-parameter policy, Bucket vs raw.

    python benchmarks/bucket_io.py                 # local + S3 (SeaweedFS started here)
    python benchmarks/bucket_io.py --no-s3 --policy-mb 50

Step: P prompts x S samples x ~T tokens (text, token ids, float logprobs), split into R parts
as R rollout replicas would write them. For each backend it times, best of --repeat runs:
  raw      the same Parquet bytes written as R plain objects and read back (file write/read, or
           one S3 PUT and one GET per part through s3fs; max_concurrency=1 so that s3fs sends a
           plain GET, without the HEAD it otherwise issues first),
  bucket   write_rollout_part x R + commit_rollouts + read_rollouts (commit, CRC32C checksums,
           atomic renames, Parquet encode/decode included),
  storage  the same Bucket calls with the Parquet codec replaced by the precomputed bytes: the
           cost of the storage protocol alone (the figure to hold against raw),
  codec    Parquet encode + decode alone (Python objects <-> Parquet; no I/O),
  small    one PUT + one GET of a 200-byte object: the time of the 3 sequential small requests
           that the commit protocol (v2, see oreal/bucket/bucket.py) adds to the raw transfers:
           the commit's LIST and its PUT of _COMMITTED, and the reader's GET of _COMMITTED (each
           part is one PUT, as in raw; the reader GETs the parts concurrently); raw + those + the
           CRC32C of every part on write and on read (checksums, timed too) is printed as the
           protocol's floor.
Throughput = bytes written + bytes read, divided by time. Policy: a folder with random bytes of
the size of a 135M-parameter bf16 model, publish_policy + download_policy vs copying the files
up and back down (shutil.copy locally, s3fs put_file/get_file on S3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import google_crc32c

from oreal.bucket import Bucket, layout, schema
from oreal.trajectory import RolloutSample

# The benchmark also runs against older trainer code (PYTHONPATH=<old checkout>/trainer, for
# before/after figures): its protocol floor then counts what that code does. v1 (before layout v2):
# per part a probe GET and a part-manifest PUT, the commit's LIST, its (concurrent) GETs of the
# part manifests and its PUT, the reader's GET of _COMMITTED; sha256 of every part.
PROTOCOL_V2 = hasattr(layout, "PartVersion")


def part_checksum(data: bytes) -> object:
    return google_crc32c.value(data) if PROTOCOL_V2 else hashlib.sha256(data).digest()


def extra_small_requests(parts: int) -> int:
    """Sequential small requests the commit protocol adds to the raw PUTs and GETs of a step.

    v2: the commit's LIST and (conditional, If-None-Match: *) PUT, the reader's GET of `_COMMITTED`.
    A committer that loses the commit race sends one more GET; the benchmark has one committer.
    """
    return 3 if PROTOCOL_V2 else 2 * parts + 4


WORDS = [
    "the",
    "of",
    "to",
    "and",
    "a",
    "in",
    "is",
    "it",
    "that",
    "we",
    "so",
    "let",
    "then",
    "thus",
    "x",
    "y",
    "n",
    "=",
    "+",
    "-",
    "\\frac{1}{2}",
    "^2",
    "\\sqrt{3}",
    "\\boxed{42}",
    "step",
    "first",
    "second",
    "therefore",
    "answer",
]


def make_step(prompts: int, samples: int, tokens: int, seed: int = 0) -> list[RolloutSample]:
    rng = random.Random(seed)
    out = []
    for p in range(prompts):
        prompt_text = "Problem: " + " ".join(rng.choices(WORDS, k=60))
        prompt_ids = [rng.randrange(49_152) for _ in range(80)]
        for j in range(samples):
            n = rng.randint(tokens // 2, tokens * 3 // 2)
            out.append(
                RolloutSample(
                    step=0,
                    prompt_id=f"math-{p}",
                    sample_index=j,
                    prompt_text=prompt_text,
                    prompt_token_ids=prompt_ids,
                    response_token_ids=[rng.randrange(49_152) for _ in range(n)],
                    response_text=" ".join(rng.choices(WORDS, k=n)),
                    gold="42",
                    policy_version=0,
                    truncated=n == tokens * 3 // 2,
                    logprobs=[-rng.expovariate(2.0) for _ in range(n)],
                )
            )
    return out


def interleaved_best(
    repeat: int, runs: dict[str, Callable[[int], Any]], cleanup: Callable[[int], Any] | None = None
) -> dict[str, float]:
    """Best wall time of each named run over `repeat` rounds, the runs interleaved in every round.

    The machine is shared: interleaving exposes every variant to the same load drift, and the
    best time is the least disturbed one. cleanup(i), untimed, runs after each round.
    """
    best = {name: float("inf") for name in runs}
    for i in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn(i)
            best[name] = min(best[name], time.perf_counter() - start)
        if cleanup is not None:
            cleanup(i)
    return best


def warm_up(bucket_for: Callable[[int], Bucket], n: int, raw: Callable[[], None]) -> None:
    """Open every bucket and read one (absent) key, untimed, as a worker reads its spec once per
    process: the first request of a client pays for its session setup (~0.5 s for botocore), and
    the first 404 for a check that the bucket itself exists. Each bucket also gets an object under
    rollouts/, as a run's bucket has from its earlier steps (locally: the directories exist, and a
    step creates only its own, as raw creates one per round)."""
    for i in range(n):
        bucket_for(i).store.get_bytes("warmup")
        bucket_for(i).store.put_bytes("rollouts/warmup", b"")
    raw()


def cached(factory: Callable[[int], Bucket]) -> Callable[[int], Bucket]:
    """The same Bucket object for the same index (as a worker keeps its bucket)."""
    opened: dict[int, Bucket] = {}

    def get(i: int) -> Bucket:
        if i not in opened:
            opened[i] = factory(i)
        return opened[i]

    return get


def split(samples: list[RolloutSample], parts: int) -> list[list[RolloutSample]]:
    size = -(-len(samples) // parts)
    return [samples[i * size : (i + 1) * size] for i in range(parts)]


@contextmanager
def precomputed_codec(parts: list[list[RolloutSample]], encoded: list[bytes]) -> Iterator[None]:
    """Make the Bucket skip Parquet encoding/decoding: it gets the bytes we encoded beforehand."""
    by_records = {id(p): (e, len(p)) for p, e in zip(parts, encoded, strict=True)}
    rows_by_footer = {e[-256:]: len(p) for p, e in zip(parts, encoded, strict=True)}
    real_encode, real_decode = schema.encode, schema.decode
    schema.encode = lambda kind, records: by_records[id(records)]  # type: ignore[assignment]
    schema.decode = lambda kind, data, where: [None] * rows_by_footer[data[-256:]]  # type: ignore[assignment]
    try:
        yield
    finally:
        schema.encode, schema.decode = real_encode, real_decode


def protocol_with_os_calls(directory: Path, encoded: list[bytes]) -> None:
    """The v2 commit protocol for one step written with bare os calls (no fsspec, no retries, no
    metrics): what any implementation of an atomic, checksummed local commit must at least do.
    Per part: CRC32C, temp file + rename to the self-describing name; the commit: list the
    directory, temp manifest + hard link as `_COMMITTED` + unlink; the reader: `_COMMITTED`, then
    every part with its CRC32C."""
    d = str(directory)
    os.makedirs(d)
    for k, data in enumerate(encoded):
        crc = google_crc32c.value(data)
        with open(f"{d}/.part-{k:02d}.tmp", "wb") as f:
            f.write(data)
        os.rename(f"{d}/.part-{k:02d}.tmp", f"{d}/part-{k:02d}.r0.s{len(data)}.c{crc:08x}.parquet")
    names = sorted(n for n in os.listdir(d) if n.startswith("part-"))
    with open(f"{d}/.commit.tmp", "wb") as f:
        f.write(json.dumps({"parts": names}).encode())
    os.link(f"{d}/.commit.tmp", f"{d}/_COMMITTED")
    os.unlink(f"{d}/.commit.tmp")
    with open(f"{d}/_COMMITTED", "rb") as f:
        names = json.loads(f.read())["parts"]
    for n in names:
        with open(f"{d}/{n}", "rb") as f:
            google_crc32c.value(f.read())


def bench_step(
    name: str, bucket_for: Callable[[int], Bucket], raw_put: Callable[[str, bytes], None],
    raw_get: Callable[[str], bytes], parts: list[list[RolloutSample]], repeat: int,
    os_floor_dir: Path | None = None,
) -> dict[str, float]:  # fmt: skip
    encoded = [schema.encode("rollouts", p)[0] for p in parts]
    nbytes = sum(len(e) for e in encoded)
    moved = 2 * nbytes / 1e6  # MB written + read
    warm_up(bucket_for, 2 * repeat, lambda: raw_put("warmup", b"x"))

    def raw(i: int) -> None:
        for k, data in enumerate(encoded):
            raw_put(f"raw-{i}/part-{k:02d}.parquet", data)
        for k in range(len(encoded)):
            assert len(raw_get(f"raw-{i}/part-{k:02d}.parquet")) == len(encoded[k])

    def through_bucket(i: int) -> None:
        bucket = bucket_for(i)
        for k, part in enumerate(parts):
            bucket.write_rollout_part(0, k, part)
        assert bucket.commit_rollouts(0, len(parts))
        assert len(bucket.read_rollouts(0)) == sum(len(p) for p in parts)

    def codec(_i: int) -> None:
        for part in parts:
            schema.decode("rollouts", schema.encode("rollouts", part)[0], "bench")

    def storage(i: int) -> None:
        with precomputed_codec(parts, encoded):
            through_bucket(repeat + i)

    def small(i: int) -> None:  # one round trip with a manifest-sized object: PUT, then GET
        raw_put(f"small-{i}.json", b"{}" * 100)
        assert len(raw_get(f"small-{i}.json")) == 200

    def checksums(_i: int) -> None:  # the writer's checksum of each part, and the reader's
        for data in encoded:
            part_checksum(data)
            part_checksum(data)

    def os_floor(i: int) -> None:
        assert os_floor_dir is not None
        protocol_with_os_calls(os_floor_dir / f"step-{uuid.uuid4().hex[:8]}", encoded)

    runs = {"raw": raw, "bucket": through_bucket, "storage": storage, "codec": codec}
    extra = {"os_floor": os_floor} if os_floor_dir is not None and PROTOCOL_V2 else {}
    best = interleaved_best(repeat, {**runs, "small": small, "checksums": checksums, **extra})
    t_raw, t_bucket, t_storage, t_codec = best["raw"], best["bucket"], best["storage"], best["codec"]
    # The commit protocol's sequential small requests beyond the raw PUTs/GETs (protocol v2: a part
    # is one PUT, as in raw): the commit's listing and its PUT of _COMMITTED, and the reader's GET
    # of _COMMITTED. At the measured small-request time this is the least the storage path can
    # cost on this machine, with the checksums on top.
    extra_requests = extra_small_requests(len(parts))
    t_floor = t_raw + extra_requests * best["small"] / 2 + best["checksums"]
    result = {
        "protocol": 2 if PROTOCOL_V2 else 1,
        "extra_small_requests": extra_requests,
        "step_bytes": nbytes,
        "raw_MBps": moved / t_raw,
        "bucket_MBps": moved / t_bucket,
        "bucket_storage_MBps": moved / t_storage,
        "raw_s": t_raw,
        "bucket_s": t_bucket,
        "bucket_storage_s": t_storage,
        "codec_s": t_codec,
        "small_request_s": best["small"] / 2,
        "checksums_s": best["checksums"],
        "protocol_floor_s": t_floor,
    }
    if "os_floor" in best:
        result["os_floor_s"] = best["os_floor"]
    print(
        f"[{name}] step {nbytes / 1e6:.2f} MB in {len(parts)} parts: raw {result['raw_MBps']:.0f} MB/s "
        f"({t_raw * 1e3:.0f} ms) | bucket storage path {result['bucket_storage_MBps']:.0f} MB/s "
        f"({t_storage * 1e3:.0f} ms, {result['bucket_storage_MBps'] / result['raw_MBps']:.0%} of raw) | "
        f"bucket incl. Parquet codec {result['bucket_MBps']:.0f} MB/s ({t_bucket * 1e3:.0f} ms, "
        f"{result['bucket_MBps'] / result['raw_MBps']:.0%} of raw; codec alone {t_codec * 1e3:.0f} ms)\n"
        f"[{name}]   protocol floor: raw + {extra_requests} small requests x {best['small'] / 2 * 1e3:.1f} ms "
        f"+ {'CRC32C' if PROTOCOL_V2 else 'sha256'} on write and read {best['checksums'] * 1e3:.1f} ms = {t_floor * 1e3:.0f} ms, "
        f"{t_raw / t_floor:.0%} of raw"
    )
    if "os_floor_s" in result:
        print(
            f"[{name}]   the same protocol with bare os calls: {result['os_floor_s'] * 1e3:.1f} ms, "
            f"{t_raw / result['os_floor_s']:.0%} of raw (the floor of this protocol here)"
        )
    return result


def make_policy(root: Path, megabytes: float) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "model.safetensors", "wb") as f:
        remaining = int(megabytes * 1e6)
        while remaining > 0:
            chunk = min(remaining, 16 << 20)
            f.write(os.urandom(chunk))
            remaining -= chunk
    (root / "config.json").write_text(json.dumps({"hidden_size": 576, "num_hidden_layers": 30}))
    (root / "tokenizer.json").write_text(json.dumps({"vocab": {f"tok{i}": i for i in range(49_152)}}))
    (root / "generation_config.json").write_text("{}")
    return root


def bench_policy(
    name: str, bucket_for: Callable[[int], Bucket], raw_up: Callable[[Path, str], None],
    raw_down: Callable[[str, Path], None], raw_delete: Callable[[str], None], folder: Path,
    scratch: Path, repeat: int,
) -> dict[str, float]:  # fmt: skip
    size = sum(p.stat().st_size for p in folder.iterdir())
    warm_up(bucket_for, repeat, lambda: None)

    def raw(i: int) -> None:
        raw_up(folder, f"rawpolicy-{i}")
        raw_down(f"rawpolicy-{i}", scratch / f"raw-{i}")

    def through_bucket(i: int) -> None:
        bucket = bucket_for(i)
        bucket.publish_policy(0, folder)
        bucket.download_policy(0, scratch / f"bucket-{i}")

    def raw_cleanup(i: int) -> None:
        raw_delete(f"rawpolicy-{i}")
        shutil.rmtree(scratch / f"raw-{i}", ignore_errors=True)

    def bucket_cleanup(i: int) -> None:
        bucket_for(i).delete_policy(0)
        shutil.rmtree(scratch / f"bucket-{i}", ignore_errors=True)

    def redownload(i: int) -> None:
        bucket_for(i).download_policy(0, scratch / f"bucket-{i}")

    def cleanup(i: int) -> None:
        raw_cleanup(i)
        bucket_cleanup(i)

    best = interleaved_best(repeat, {"raw": raw, "bucket": through_bucket, "redownload": redownload}, cleanup)
    t_raw, t_bucket, t_skip = best["raw"], best["bucket"], best["redownload"]
    result = {"policy_bytes": size, "raw_s": t_raw, "bucket_s": t_bucket, "redownload_identical_s": t_skip}
    print(
        f"[{name}] policy {size / 1e6:.0f} MB publish+download | raw {t_raw:.2f} s "
        f"({2 * size / 1e6 / t_raw:.0f} MB/s) | bucket {t_bucket:.2f} s ({2 * size / 1e6 / t_bucket:.0f} MB/s, "
        f"{t_raw / t_bucket:.0%} of raw speed) | re-download of an identical version {t_skip * 1e3:.0f} ms"
    )
    return result


def local_suite(
    root: Path, parts: list[list[RolloutSample]], folder: Path | None, repeat: int
) -> dict[str, Any]:
    raw_dir = root / "raw"

    def put(key: str, data: bytes) -> None:
        path = raw_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def up(src: Path, key: str) -> None:
        shutil.copytree(src, raw_dir / key, dirs_exist_ok=True)

    def down(key: str, dst: Path) -> None:
        shutil.copytree(raw_dir / key, dst, dirs_exist_ok=True)

    run = uuid.uuid4().hex[:6]
    step = bench_step(
        "local", cached(lambda i: Bucket.open(str(root / f"b-{run}-{i}"))), put,
        lambda k: (raw_dir / k).read_bytes(),
        parts, repeat, os_floor_dir=root / "os-floor",
    )  # fmt: skip
    if folder is None:
        return {"step": step}
    scratch = root / "scratch"
    scratch.mkdir(exist_ok=True)
    pol = bench_policy(
        "local", cached(lambda i: Bucket.open(str(root / f"p-{run}-{i}"))), up, down,
        lambda key: shutil.rmtree(raw_dir / key), folder, scratch, repeat,
    )  # fmt: skip
    return {"step": step, "policy": pol}


def s3_suite(
    root: Path, parts: list[list[RolloutSample]], folder: Path | None, repeat: int
) -> dict[str, Any]:
    import s3fs

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.seaweedfs import SeaweedFS  # a test fixture, not part of the package

    with SeaweedFS(root / "seaweedfs", buckets=["bench"]) as server:
        os.environ.update(server.env())
        raw_fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, skip_instance_cache=True)
        run = uuid.uuid4().hex[:6]

        def up(src: Path, key: str) -> None:
            for p in src.iterdir():
                raw_fs.put_file(str(p), f"bench/raw/{key}/{p.name}")

        def down(key: str, dst: Path) -> None:
            dst.mkdir(parents=True, exist_ok=True)
            for name in raw_fs.ls(f"bench/raw/{key}", detail=False):
                raw_fs.get_file(name, str(dst / name.rsplit("/", 1)[-1]))

        def bucket_for(prefix: str) -> Callable[[int], Bucket]:
            return cached(lambda i: Bucket.open(f"s3://bench/{prefix}-{run}-{i}", endpoint=server.endpoint))

        step = bench_step(
            "s3", bucket_for("b"), lambda k, d: raw_fs.pipe_file(f"bench/raw/{k}", d),
            lambda k: raw_fs.cat_file(f"bench/raw/{k}", max_concurrency=1), parts, repeat,
        )  # fmt: skip
        if folder is None:
            return {"step": step}
        scratch = root / "scratch-s3"
        scratch.mkdir(exist_ok=True)
        pol = bench_policy(
            "s3", bucket_for("p"), up, down, lambda key: raw_fs.rm(f"bench/raw/{key}", recursive=True),
            folder, scratch, repeat,
        )  # fmt: skip
    return {"step": step, "policy": pol}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--parts", type=int, default=4, help="rollout replicas writing one part each")
    parser.add_argument("--policy-mb", type=float, default=270.0, help="135M params x 2 bytes (bf16)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-policy", action="store_true", help="only the step benchmark")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="oreal-bucket-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        samples = make_step(args.prompts, args.samples, args.tokens)
        parts = split(samples, args.parts)
        folder = None if args.no_policy else make_policy(root / "policy-src", args.policy_mb)
        results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
        results["local"] = local_suite(root / "local", parts, folder, args.repeat)
        if not args.no_s3:
            results["s3"] = s3_suite(root / "s3", parts, folder, args.repeat)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
