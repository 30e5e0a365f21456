"""Cutouts loaded per second (local mirror and a local S3 endpoint; one by one and batched) and manifest
rows per second, each against a reference in the same process.

References: ``np.load`` of the same local files one by one (the floor of any cutout reader), and
pandas ``read_parquet`` of the same manifest without validation.

    python benchmarks/bench_data.py [--n 1000] [--rows 450000] [--processes N] [--no-s3]

Local files are read batched on threads and on worker processes (lenslib.data.processes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.data import manifests  # noqa: E402
from lenslib.data.cutouts import load_cutout, load_cutouts, save_cutout  # noqa: E402
from lenslib.data.processes import CHUNK, auto_processes, available_cores  # noqa: E402
from lenslib.data.storage import open_store  # noqa: E402


def rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="cutouts")
    ap.add_argument("--rows", type=int, default=450_000, help="manifest rows")
    ap.add_argument("--processes", type=int, default=0, help="decoding processes (0: one per core but one, ≥ 2)")
    ap.add_argument("--no-s3", action="store_true", help="local files only (no moto endpoint, no manifest)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mirror"
        keys = []
        for k in range(args.n):
            key = f"cutouts/negatives/20260208/g{k:06d}.npz"
            save_cutout(root / key, rng.normal(0, 0.01, (101, 101, 3)).astype(np.float32), {"galaxy_id": f"g{k}"})
            keys.append(key)
        paths = [str(root / k) for k in keys]
        ref = rate(args.n, lambda: [np.load(p)["cutout"] for p in paths])
        single = rate(args.n, lambda: [load_cutout(p) for p in paths])
        batched = rate(args.n, lambda: load_cutouts(paths, workers=8, processes=0))
        n_proc = args.processes or max(auto_processes(10**9), 2)
        t0 = time.perf_counter()
        load_cutouts(paths[:CHUNK * n_proc], processes=n_proc)  # the pool's start, once per process
        start = time.perf_counter() - t0
        on_procs = rate(args.n, lambda: load_cutouts(paths, processes=n_proc))
        print(f"reference np.load, local:   {ref:8.0f} cutouts/s")
        print(f"lenslib local, one by one:  {single:8.0f} cutouts/s  ({single / ref:.2f} x reference)")
        print(f"lenslib local, batched (8 threads): {batched:8.0f} cutouts/s  ({batched / ref:.2f} x reference)")
        print(f"lenslib local, batched ({n_proc} processes): {on_procs:8.0f} cutouts/s  ({on_procs / ref:.2f} x "
              f"reference, {on_procs / batched:.2f} x threads; pool start {start:.2f} s; {available_cores()} cores)")
        if args.no_s3:
            return

        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-2", aws_access_key_id="x",
                              aws_secret_access_key="x")
        client.create_bucket(Bucket="bench", CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
        for k in keys:
            client.upload_file(str(root / k), "bench", k)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")  # moto accepts any credentials
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
        store = open_store("s3://bench", endpoint_url=url, anonymous=False)
        s3_single = rate(args.n, lambda: [load_cutout(k, store=store) for k in keys])
        s3_batched = rate(args.n, lambda: load_cutouts(keys, store=store, workers=16))
        cached = open_store("s3://bench", endpoint_url=url, anonymous=False, cache_dir=Path(tmp) / "cache")
        load_cutouts(keys, store=cached, workers=16)
        s3_cached = rate(args.n, lambda: load_cutouts(keys, store=cached, workers=8))
        server.stop()
        for label, cps in (("S3 (127.0.0.1), one by one:  ", s3_single), ("S3 (127.0.0.1), batched (16):", s3_batched),
                            ("S3 through the cache (2nd):  ", s3_cached)):
            print(f"lenslib {label} {cps:8.0f} cutouts/s  ({cps / ref:.2f} x reference)")

        n = args.rows
        df = pd.DataFrame(dict(galaxy_id=[f"g{k}" for k in range(n)],
                               cutout_path=[f"cutouts/g{k}.npz" for k in range(n)],
                               ra=rng.uniform(0, 360, n), dec=rng.uniform(-60, 60, n),
                               split=np.where(rng.random(n) < 0.7, "train", "val"),
                               label=(rng.random(n) < 0.01).astype(int), tier="N", sample_weight=1.0,
                               psfsize_r=rng.uniform(0.9, 1.8, n), psfdepth_r=rng.uniform(500, 5000, n)))
        mpath = Path(tmp) / "manifest.parquet"
        w = rate(n, lambda: manifests.write_manifest(df, mpath))
        r_ref = rate(n, lambda: pd.read_parquet(mpath))
        r = rate(n, lambda: manifests.read_manifest(mpath))
        print(f"manifest write: {w:10.0f} rows/s;  read+validate: {r:10.0f} rows/s  "
              f"({r / r_ref:.2f} x pandas read_parquet {r_ref:.0f} rows/s)")


if __name__ == "__main__":
    main()
