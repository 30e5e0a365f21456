"""Lens-finder training and scoring speed (images per second) for the three architectures, on the CPU
and on CUDA when present, each against a reference in the same process.

- training: lenslib's ``train`` (files read from disk, augmentation, batched raw_robust, accumulation,
  validation, checkpoints) over the train split of a synthetic mini-survey, against a bare PyTorch
  loop (forward, BCE, backward, AdamW step) on tensors already in memory with the same micro-batch;
- scoring: ``score_manifest`` (files → preprocess → logits → parquet) against a bare ``model(x)``
  on preprocessed tensors in memory.

The ratio says how much of the model's own speed the pipeline keeps. Architectures that need
torchvision are reported as unavailable where it is not installed.

    python benchmarks/bench_models.py [--n 512] [--epochs 2] [--archs bottlenecked_resnet resnet18 efficientnet_v2_s]
        [--devices cpu cuda] [--workers 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.data.cutouts import load_cutouts  # noqa: E402
from lenslib.finder.config import from_mapping  # noqa: E402
from lenslib.finder.models import ModelError, build_model  # noqa: E402
from lenslib.finder.preprocess import raw_robust  # noqa: E402
from lenslib.finder.scoring import score_manifest  # noqa: E402
from lenslib.finder.training import train  # noqa: E402
from lenslib.synthetic import SurveySpec, make_survey  # noqa: E402


def bare_training(arch: str, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(arch, base_ch=27).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    n = (len(x) // batch) * batch

    def epoch():
        for i in range(0, n, batch):
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                out = model(x[i:i + batch]).squeeze(1)
            scaler.scale(loss_fn(out.float(), y[i:i + batch])).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

    epoch()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    epoch()
    sync(device)
    return n / (time.perf_counter() - t0)


@torch.no_grad()
def bare_scoring(model: torch.nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> float:
    model.eval()
    model(x[:batch])
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    sync(device)
    return len(x) / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="cutouts in the mini-survey")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the training run")
    ap.add_argument("--archs", nargs="+", default=["bottlenecked_resnet", "resnet18", "efficientnet_v2_s"])
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"],
                    help="devices to time (cuda is skipped where no GPU is present)")
    args = ap.parse_args()
    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {[str(d) for d in devices]}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "survey"
        df = make_survey(root, SurveySpec(n_negatives=args.n * 2 // 3, n_positives=args.n - args.n * 2 // 3))
        tr = df[df["split"] == "train"]
        raw = torch.from_numpy(load_cutouts(tr["cutout_path"].tolist(), root=root))
        labels = torch.as_tensor(tr["label"].to_numpy(np.float32))
        print(f"{len(df)} cutouts, {len(tr)} train; micro-batch {args.batch}; base_ch 27 for the bottlenecked ResNet")
        print(f"{'arch':22s} {'device':6s} {'train img/s':>12s} {'bare loop':>10s} {'ratio':>6s} "
              f"{'score img/s':>12s} {'bare fwd':>10s} {'ratio':>6s}")
        for arch in args.archs:
            try:
                build_model(arch)
            except ModelError as exc:
                print(f"{arch:22s} unavailable: {exc}")
                continue
            for dev in devices:
                x = raw_robust(raw.to(dev))
                ref_train = bare_training(arch, x, labels.to(dev), args.batch, dev)
                cfg = from_mapping({
                    "dataset": {"manifest_path": str(root / "manifests" / "synthetic.parquet"), "root": str(root)},
                    "train": {"arch": arch, "base_ch": 27, "epochs": args.epochs, "batch_size": args.batch,
                              "effective_batch": args.batch * 2, "lr": 1e-4, "device": str(dev),
                              "out_dir": str(Path(tmp) / f"run_{arch}_{dev.type}"),
                              "num_workers": args.workers}}, "bench")
                res = train(cfg, manifest=df, progress=False, log=None)
                lens_train = float(res.history["train_images_per_s"].iloc[-1])  # last epoch: no warm-up costs
                model = res.model.eval()
                ref_score = bare_scoring(model, x, args.batch * 4, dev)
                t0 = time.perf_counter()
                score_manifest(model, df, Path(tmp) / f"scores_{arch}_{dev.type}.parquet", root=root,
                               batch_size=args.batch * 4, progress=False)
                lens_score = len(df) / (time.perf_counter() - t0)
                print(f"{arch:22s} {dev.type:6s} {lens_train:12.1f} {ref_train:10.1f} {lens_train / ref_train:6.2f} "
                      f"{lens_score:12.1f} {ref_score:10.1f} {lens_score / ref_score:6.2f}")


if __name__ == "__main__":
    main()
