"""Fault suite, bad inputs: corrupt and odd cutouts (recorded, never fatal, in scoring), bad manifests, bad
configs and checkpoints."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from lenslib.data.cutouts import CutoutError, load_cutout, load_cutouts, parse_cutout, save_cutout
from lenslib.data.manifests import ManifestError, read_manifest, validate_manifest, write_manifest
from lenslib.finder.scoring import score_images, score_manifest
from tests.faults.conftest import cli, one_clear_line


def _good(world) -> bytes:
    root, df = world
    return (root / df["cutout_path"].iloc[0]).read_bytes()


def _flip_inside_zip(data: bytes) -> bytes:
    """Bytes changed inside the stored array's header (the zip's CRC then fails or numpy's header parse)."""
    z = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as w:  # stored, so the header bytes are in the clear
        for info in z.infolist():
            raw = bytearray(z.read(info))
            if info.filename == "cutout.npy":
                raw[20:40] = b"(((((((((((((((((((("
            w.writestr(info.filename, bytes(raw))
    return out.getvalue()


def _npz(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def _image(fill=1.0, nan_frac=0.0, shape=(101, 101, 3)):
    img = np.full(shape, fill, np.float32)
    flat = img.reshape(-1)
    flat[: int(nan_frac * flat.size)] = np.nan
    return img


CORRUPT = {
    "bytes flipped inside the zip": lambda good: _flip_inside_zip(good),
    "a .npy saved as .npz": lambda good: (lambda b: (np.save(b, _image()), b.getvalue())[1])(io.BytesIO()),
    "empty file": lambda good: b"",
    "truncated zip": lambda good: good[: len(good) // 2],
    "not a zip at all": lambda good: b"this is text, not an npz",
    "no cutout array": lambda good: _npz(image=_image()),
    "wrong shape": lambda good: _npz(cutout=_image(shape=(50, 50, 3))),
    "two bands": lambda good: _npz(cutout=_image(shape=(101, 101, 2))),
    "strings, not floats": lambda good: _npz(cutout=np.full((101, 101, 3), "x")),
    "infinite pixels": lambda good: _npz(cutout=np.where(_image() > 0, np.inf, 0).astype(np.float32)),
    "all NaN": lambda good: _npz(cutout=_image(nan_frac=1.0)),
    "60 % NaN": lambda good: _npz(cutout=_image(nan_frac=0.6)),
    "a pickled object array": lambda good: (lambda b: (np.savez(b, cutout=np.array([{"a": 1}], dtype=object)),
                                                       b.getvalue())[1])(io.BytesIO()),
    "a pickle": lambda good: pickle.dumps({"cutout": _image()}),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_each_corrupt_cutout_is_a_cutout_error_naming_the_file(world, case):
    data = CORRUPT[case](_good(world))
    with pytest.raises(CutoutError) as exc:
        parse_cutout(data, "cutouts/bad_one.npz")
    assert "cutouts/bad_one.npz" in str(exc.value)


def test_a_few_nan_pixels_are_kept_and_counted(world):
    c = parse_cutout(_npz(cutout=_image(nan_frac=0.1)), "x.npz")
    assert sum(c.nan_count.values()) == int(0.1 * 101 * 101 * 3)
    with pytest.raises(CutoutError, match="max_nan_fraction"):
        parse_cutout(_npz(cutout=_image(nan_frac=0.1)), "x.npz", max_nan_fraction=0.05)


def test_scoring_records_every_corrupt_file_and_scores_the_rest_as_alone(world, model, tmp_path):
    root, df = world
    good = _good(world)
    rows = []
    for k, case in enumerate(sorted(CORRUPT)):
        p = tmp_path / "bad" / f"bad_{k:02d}.npz"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(CORRUPT[case](good))
        rows.append({"cutout_path": str(p), "label": 0, "split": "val", "galaxy_id": f"bad{k}"})
    (tmp_path / "bad" / "dir.npz").mkdir()
    rows.append({"cutout_path": str(tmp_path / "bad" / "dir.npz"), "label": 0, "split": "val", "galaxy_id": "dir"})
    rows.append({"cutout_path": str(tmp_path / "missing.npz"), "label": 0, "split": "val", "galaxy_id": "missing"})
    ok = df.iloc[:6].assign(cutout_path=[str(root / p) for p in df["cutout_path"].iloc[:6]])
    manifest = pd.concat([ok[["cutout_path", "label", "split", "galaxy_id"]], pd.DataFrame(rows)],
                         ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)
    out = score_manifest(model, manifest, tmp_path / "s.parquet", batch_size=4, chunk_size=5, progress=False)
    bad = out[out["error"].notna()]
    assert len(bad) == len(CORRUPT) + 2 and bad["score"].isna().all()
    for _, r in bad.iterrows():
        assert r["cutout_path"] in r["error"]  # the message names the file
    good_rows = out[out["error"].isna()]
    alone = score_images(model, load_cutouts(good_rows["cutout_path"].tolist()))
    np.testing.assert_allclose(good_rows["score"].to_numpy(), alone, rtol=1e-6)


def test_the_score_cli_reports_failed_files_and_exits_0(world, checkpoint, tmp_path):
    root, df = world
    m = df.iloc[:5].copy()
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    m.loc[m.index[0], "cutout_path"] = str(tmp_path / "broken.npz")
    write_manifest(m, tmp_path / "m.parquet")
    p = cli("score", "--checkpoint", str(checkpoint), "--manifest", str(tmp_path / "m.parquet"), "--root", str(root),
            "--out", str(tmp_path / "o.parquet"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "5 rows scored (1 failed to load)" in p.stdout
    assert "broken.npz" in pd.read_parquet(tmp_path / "o.parquet")["error"].dropna().iloc[0]


def test_an_unreachable_store_is_not_recorded_as_a_failed_file():
    from lenslib.data.storage import StoreUnreachable, open_store

    store = open_store("s3://nosuchbucket/p", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=0.5)
    with pytest.raises(StoreUnreachable, match="127.0.0.1:9"):
        load_cutouts(["a.npz"], store=store, errors={})


# --- manifests ---------------------------------------------------------------------------------------

def _manifest(n=6):
    return pd.DataFrame({"galaxy_id": [f"g{k}" for k in range(n)], "cutout_path": [f"c/{k}.npz" for k in range(n)],
                         "label": [0, 1] * (n // 2), "split": ["train"] * (n - 2) + ["val"] * 2})


@pytest.mark.parametrize("edit, says", [
    (lambda m: m.assign(galaxy_id=["g0"] * 2 + list(m["galaxy_id"][2:])), r"2 rows share a galaxy_id \(e\.g\. 'g0'"),
    (lambda m: m.assign(cutout_path=list(m["cutout_path"][:5]) + ["c/0.npz"]), "appear in more than one split"),
    (lambda m: m.assign(galaxy_id=list(m["galaxy_id"][:5]) + ["g1"]), r"galaxy_id\(s\) appear in more than one split"),
    (lambda m: m.drop(columns="label"), r"missing column\(s\) \['label'\]"),
    (lambda m: m.assign(label=[0, 1, 2, 0, 1, 0]), "label must be 0 or 1; row 2"),
    (lambda m: m.assign(split=["train"] * 5 + ["valid"]), r"unknown split\(s\) \['valid'\]"),
    (lambda m: m.assign(cutout_path=[None] + list(m["cutout_path"][1:])), "1 rows without a cutout_path"),
])
def test_a_bad_manifest_names_what_is_wrong(edit, says):
    with pytest.raises(ManifestError, match=says):
        validate_manifest(edit(_manifest()), "m.parquet")


def test_a_manifest_that_is_not_parquet(tmp_path):
    (tmp_path / "m.parquet").write_text("galaxy_id,label\n")
    with pytest.raises(ManifestError, match=r"m\.parquet: not a readable parquet manifest"):
        read_manifest(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "none.parquet")


def test_score_cli_with_an_overlapping_manifest_stops_naming_it(tmp_path, checkpoint):
    m = _manifest()
    m.loc[5, "galaxy_id"] = "g1"
    m.to_parquet(tmp_path / "m.parquet")
    p = cli("score", "--checkpoint", str(checkpoint), "--manifest", str(tmp_path / "m.parquet"),
            "--out", str(tmp_path / "o.parquet"))
    one_clear_line(p, "m.parquet", "more than one split")
    assert not (tmp_path / "o.parquet").exists()


# --- configs and checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize("content, says", [
    (b"\x89PNG not a checkpoint", "m.pt"),
    (b"", "m.pt"),
])
def test_a_corrupt_checkpoint_names_the_file(tmp_path, world, content, says):
    (tmp_path / "m.pt").write_bytes(content)
    root, df = world
    write_manifest(df.iloc[:3], tmp_path / "x.parquet")
    p = cli("score", "--checkpoint", str(tmp_path / "m.pt"), "--manifest", str(tmp_path / "x.parquet"),
            "--root", str(root), "--out", str(tmp_path / "o.parquet"))
    one_clear_line(p, says)


def test_a_missing_checkpoint_and_a_checkpoint_of_an_unknown_arch(tmp_path, world, model):
    import torch

    root, df = world
    write_manifest(df.iloc[:3], tmp_path / "x.parquet")
    p = cli("score", "--checkpoint", str(tmp_path / "none.pt"), "--manifest", str(tmp_path / "x.parquet"),
            "--out", str(tmp_path / "o.parquet"))
    one_clear_line(p, "none.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    p = cli("score", "--checkpoint", str(tmp_path / "bare.pt"), "--arch", "vgg99", "--manifest",
            str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o.parquet"))
    one_clear_line(p, "vgg99")


@pytest.mark.parametrize("cfg, says", [
    ({"train": {"epochz": 3}}, "epochz"),
    ({"train": {"epochs": "many"}}, "epochs"),
    ({"train": {"batch_size": 0}}, "batch_size"),
    ({"dataset": {"manifest_path": "/nonexistent/m.parquet"}, "train": {"out_dir": "OUT"}}, "m.parquet"),
])
def test_train_cli_with_a_bad_config_names_the_key(tmp_path, cfg, says):
    text = yaml.safe_dump(cfg).replace("OUT", str(tmp_path / "out"))
    (tmp_path / "c.yaml").write_text(text)
    p = cli("train", "--config", str(tmp_path / "c.yaml"), "--no-progress")
    one_clear_line(p, says)


def test_a_training_cutout_that_fails_in_a_dataloader_worker_is_one_line(world, tmp_path):
    root, df = world
    m = df.copy()
    bad = root / "cutouts" / "zz_broken_for_training.npz"
    bad.write_bytes(b"broken")
    m.loc[m.index[(m["split"] == "train").to_numpy()][0], "cutout_path"] = str(bad.relative_to(root))
    write_manifest(m, tmp_path / "m.parquet")
    cfg = {"dataset": {"manifest_path": str(tmp_path / "m.parquet"), "root": str(root)},
           "train": {"arch": "bottlenecked_resnet", "base_ch": 4, "epochs": 1, "batch_size": 4, "effective_batch": 4,
                     "num_workers": 1, "out_dir": str(tmp_path / "out")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = cli("train", "--config", str(tmp_path / "c.yaml"), "--no-progress")
    err = one_clear_line(p, "zz_broken_for_training.npz", "a training cutout cannot be used")
    assert "DataLoader worker" not in err and "Original Traceback" not in err
    with_debug = cli("--debug", "train", "--config", str(tmp_path / "c.yaml"), "--no-progress")
    assert "Traceback" in with_debug.stderr  # --debug shows where it happened


def test_save_cutout_into_a_file_path_names_it(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OSError, match=r"cannot write .*f"):
        save_cutout(tmp_path / "f" / "x.npz", _image())
    with pytest.raises(CutoutError, match="is a directory"):
        load_cutout(tmp_path)
