"""Training data (diffae_app/training/data.py, prepare.py, attributes.py): image folders, the
official LMDB layout, unreadable and empty data, data order across ranks, label files and id
matching, classifier fitting, and aligning a photo folder with an injected detector."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from diffae_app.align import Detection
from diffae_app.classifier import AttributeClassifier
from diffae_app.data.synthfaces import generate
from diffae_app.training.attributes import (
    FitOptions,
    LabelError,
    LabelTable,
    fit_classifiers,
    match_ids,
    metrics_table,
    read_celebahq_attributes,
    read_label_csv,
)
from diffae_app.training.data import (
    BatchReader,
    DatasetError,
    ImageFolder,
    LmdbImages,
    epoch_order,
    global_batch_indices,
    open_dataset,
    to_tensor,
)
from diffae_app.training.latents import (
    LatentCodes,
    LatentsError,
    encode_items,
    latent_stats,
    load_latents,
    save_latents,
)
from diffae_app.training.prepare import REPORT_NAME, align_folder

pytestmark = pytest.mark.usefixtures("single_thread")

TRAIN = Path(__file__).resolve().parents[1] / "train"


def _script(name: str):
    """A train/ script as a module, so its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"train_{name}", TRAIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _face(seed: int, size: int = 40) -> Image.Image:
    return Image.fromarray(generate(seed, size)[0])


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _write_lmdb(path: Path, images: list[bytes], resolution: int) -> Path:
    """The official DiffAE layout: b'length' -> count, f'{res}-{i:05d}' -> encoded image."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"length", str(len(images)).encode("utf-8"))
        for i, data in enumerate(images):
            txn.put(f"{resolution}-{str(i).zfill(5)}".encode(), data)
    env.close()
    return path


# --------------------------------------------------------------------------- image sources


def test_image_folder_is_recursive_sorted_any_format_rgb_and_resized(tmp_path: Path) -> None:
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    _face(1).save(tmp_path / "a.png")
    _face(2).convert("L").save(tmp_path / "b" / "grey.jpg")
    _face(3).convert("RGBA").save(tmp_path / "b" / "deeper" / "alpha.webp")
    _face(4).crop((0, 0, 40, 30)).save(tmp_path / "b" / "wide.bmp")  # not square: centre crop
    (tmp_path / "notes.txt").write_text("not an image")
    data = ImageFolder(tmp_path, 32)
    assert [data.item_id(i) for i in range(len(data))] == [
        "a.png",
        "b/deeper/alpha.webp",
        "b/grey.jpg",
        "b/wide.bmp",
    ]
    for i in range(len(data)):
        x = data[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert -1.0 <= x.min() and x.max() <= 1.0
    grey = data[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # L -> RGB


def test_lmdb_in_the_official_layout_reads_png_and_jpeg(tmp_path: Path) -> None:
    faces = [_face(i) for i in range(3)]
    path = _write_lmdb(
        tmp_path / "faces.lmdb",
        [_encoded(faces[0], "PNG"), _encoded(faces[1], "JPEG"), _encoded(faces[2], "PNG")],
        resolution=40,
    )
    data = open_dataset(f"lmdb:{path}", 32, lmdb_resolution=40)
    assert isinstance(data, LmdbImages) and len(data) == 3
    assert [data.item_id(i) for i in range(3)] == ["40-00000", "40-00001", "40-00002"]
    assert data[1].shape == (3, 32, 32)
    assert torch.equal(data[0], to_tensor(faces[0], 32))  # the folder reader's decoding
    # A *.lmdb path needs no prefix; the resolution defaults to the training size.
    assert len(open_dataset(str(path), 40)) == 3


def test_lmdb_problems_stop_at_start_with_a_clear_message(tmp_path: Path) -> None:
    path = _write_lmdb(tmp_path / "a.lmdb", [_encoded(_face(0), "PNG")], resolution=256)
    with pytest.raises(DatasetError, match="another resolution than 128.*--lmdb-resolution"):
        LmdbImages(path, 128)
    empty = _write_lmdb(tmp_path / "empty.lmdb", [], resolution=64)
    with pytest.raises(DatasetError, match="is empty"):
        LmdbImages(empty, 64)
    with pytest.raises(DatasetError, match="does not exist"):
        LmdbImages(tmp_path / "missing.lmdb", 64)
    env = lmdb.open(str(tmp_path / "other.lmdb"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(DatasetError, match="no 'length' key"):
        LmdbImages(tmp_path / "other.lmdb", 64)


def test_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no images"):
        ImageFolder(tmp_path / "empty", 32)
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolder(tmp_path / "nope", 32)


def test_unreadable_files_are_skipped_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(4):
        _face(i).save(tmp_path / f"{i}.png")
    (tmp_path / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    (tmp_path / "3.png").write_bytes(_encoded(_face(3), "PNG")[:60])  # truncated
    reader = BatchReader(ImageFolder(tmp_path, 32))
    with caplog.at_level(logging.WARNING, logger="diffae_app.training.data"):
        batch = reader.batch([0, 1, 2, 3, 1])
    assert batch.shape == (5, 3, 32, 32)
    # A bad item is replaced by the next readable one, deterministically.
    assert torch.equal(batch[1], batch[2]) and torch.equal(batch[3], batch[0])
    assert reader.skipped == {1, 3}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # one warning per file, not per read
    assert "(1 so far)" in warnings[0] and "(2 so far)" in warnings[1]


def test_a_dataset_of_only_unreadable_files_fails_with_a_message(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"not a png")
    reader = BatchReader(ImageFolder(tmp_path, 32), max_consecutive_failures=5)
    with pytest.raises(DatasetError, match="consecutive unreadable items.*corrupt"):
        reader.read(0)


def test_autoencoder_script_stops_at_start_on_empty_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    code = _script("autoencoder").main(
        ["--data", str(tmp_path / "empty"), "--preset", "tiny32", "--run-dir",
         str(tmp_path / "run"), "--steps", "2", "--batch-size", "2"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: image folder") and "holds no images" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is known good


@pytest.mark.slow
def test_training_runs_through_unreadable_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "faces"
    data.mkdir()
    for i in range(6):
        _face(i).save(data / f"{i}.png")
    (data / "2.png").write_bytes(b"corrupt")
    (data / "4.png").write_bytes(_encoded(_face(4), "PNG")[:80])
    with caplog.at_level(logging.WARNING, logger="diffae_app.training.data"):
        code = _script("autoencoder").main(
            ["--data", str(data), "--preset", "tiny32", "--run-dir", str(tmp_path / "run"),
             "--steps", "2", "--batch-size", "6", "--threads", "1"]
        )  # fmt: skip
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    assert code == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2
    skips = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(skips) == 2 and "(2 so far)" in skips[1]


# --------------------------------------------------------------------------- data order


def test_data_order_is_a_pure_function_shared_by_all_ranks() -> None:
    n, batch, seed = 10, 4, 3
    steps = [global_batch_indices(n, s, batch, seed) for s in range(5)]
    flat = torch.cat(steps).tolist()
    # Steps walk through whole shuffled epochs, crossing epoch boundaries mid-batch.
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] == epoch_order(n, 0, seed).tolist()
    assert flat[:10] != flat[10:20]
    # Recomputing (another rank, or a resumed run) gives the same batches; ranks take slices.
    for s in range(5):
        again = global_batch_indices(n, s, batch, seed)
        assert torch.equal(again, steps[s])
        halves = [again[r * 2 : (r + 1) * 2] for r in range(2)]
        assert torch.equal(torch.cat(halves), steps[s])
    assert not torch.equal(global_batch_indices(n, 0, batch, seed + 1), steps[0])


# --------------------------------------------------------------------------- latents file


def test_latents_file_round_trip_and_unbiased_std(tmp_path: Path) -> None:
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    mean, std = latent_stats(z)
    assert torch.allclose(std, z.std(0)) and torch.allclose(mean, z.mean(0))
    codes = LatentCodes(z, tuple(f"img{i}.png" for i in range(6)), mean, std, {"data": "x"})
    path = save_latents(tmp_path / "latents.safetensors", codes)
    back = load_latents(path)
    assert torch.equal(back.z_sem, z) and back.ids == codes.ids and back.source == {"data": "x"}
    assert torch.allclose(back.normalized().std(0), torch.ones(4))
    with pytest.raises(LatentsError, match="run train/encode_dataset.py"):
        load_latents(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(LatentsError, match="not a readable safetensors"):
        load_latents(tmp_path / "bad.safetensors")


def test_encoding_skips_unreadable_images_and_keeps_ids_aligned(tmp_path: Path) -> None:
    for i in range(5):
        _face(i).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "02.png").write_bytes(b"broken")
    data = ImageFolder(tmp_path, 16)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    z, kept, skipped = encode_items(encoder, data, range(5), batch_size=2, progress=False)
    assert kept == [0, 1, 3, 4] and skipped == [2]
    expected = encoder(torch.stack([data[i] for i in kept]))
    assert torch.allclose(z, expected, atol=1e-6)


# --------------------------------------------------------------------------- labels


def test_label_csv_formats(tmp_path: Path) -> None:
    pm1 = tmp_path / "pm1.csv"
    pm1.write_text("image_id,Smiling,Bald\na.png,1,-1\nb.png,0,1\nc.png,-1,\n")
    table = read_label_csv(pm1)
    assert table.names == ("Smiling", "Bald") and table.ids == ("a.png", "b.png", "c.png")
    assert table.values.tolist() == [[1, -1], [0, 1], [-1, 0]]  # 0 and empty: unknown
    zero_one = tmp_path / "01.csv"
    zero_one.write_text("image_id,Smiling,Bald\na.png,1,0\nb.png,0,1\nc.png,1.0,\n")
    assert read_label_csv(zero_one).values.tolist() == [[1, -1], [-1, 1], [1, 0]]
    assert read_label_csv(zero_one, "pm1").values.tolist() == [[1, 0], [0, 1], [1, 0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,Smiling\na.png,2\n")
    with pytest.raises(LabelError, match=r"bad.csv:2: label '2' is not one of -1, 0, 1"):
        read_label_csv(bad)
    bad.write_text("image_id,Smiling\na.png,1,1\n")
    with pytest.raises(LabelError, match="bad.csv:2: 3 columns, the header has 2"):
        read_label_csv(bad)
    with pytest.raises(LabelError, match="-1 labels in a file read as"):
        read_label_csv(pm1, "01")


def test_celebahq_attribute_file(tmp_path: Path) -> None:
    names = ["Smiling", "Male", "Young"]
    path = tmp_path / "CelebAMask-HQ-attribute-anno.txt"
    path.write_text(f"3\n{' '.join(names)}\n0.jpg 1 -1 1\n1.jpg  -1 -1 1\n12.jpg 1 1 -1\n")
    table = read_celebahq_attributes(path)
    assert table.names == tuple(names) and table.ids == ("0.jpg", "1.jpg", "12.jpg")
    assert table.values.tolist() == [[1, -1, 1], [-1, -1, 1], [1, 1, -1]]
    path.write_text("x\nSmiling\n0.jpg 1\n")
    with pytest.raises(LabelError, match="first line should be the image count"):
        read_celebahq_attributes(path)


def test_ids_match_by_path_then_name_then_number() -> None:
    labels = ["00000012.png", "sub/a.png", "other/a.png", "7.jpg", "x/b.png"]
    latents = ["sub/00000012.png", "sub/a.png", "a.png", "256-00007", "b.png", "nothing.png"]
    # 'a.png' is ambiguous by name (two label rows), so it stays unmatched.
    assert match_ids(latents, labels).tolist() == [0, 1, -1, 3, 4, -1]


def _separable(n: int, seed: int = 0) -> tuple[LatentCodes, LabelTable]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g) * 3 + 1
    mean, std = latent_stats(z)
    zn = ((z - mean) / std).numpy()
    smiling = np.where(zn[:, 0] + 0.3 * zn[:, 1] > 0.2, 1, -1)
    hat = np.where(zn[:, 2] > 0.8, 1, -1)  # unbalanced
    hat[::7] = 0  # unknown for some images
    ids = tuple(f"{i:08d}.png" for i in range(n))
    codes = LatentCodes(z, tuple(f"sub/{i}" for i in ids), mean, std)
    table = LabelTable(ids, ("Smiling", "Hat"), np.stack([smiling, hat], 1).astype(np.int8), "t")
    return codes, table


def test_fit_classifiers_matches_sklearn_and_stores_metrics(tmp_path: Path) -> None:
    codes, labels = _separable(200)
    classifier = fit_classifiers(codes, labels, options=FitOptions(held_out=0.25, seed=1))
    assert classifier.attribute_names == ("Smiling", "Hat")
    assert torch.equal(classifier.z_mean, codes.z_mean) and torch.equal(
        classifier.z_std, codes.z_std
    )
    m = classifier.metrics
    assert m["Smiling"]["n_train"] + m["Smiling"]["n_test"] == 200
    assert m["Hat"]["n_train"] + m["Hat"]["n_test"] == 200 - len(range(0, 200, 7))
    assert m["Smiling"]["n_test"] == 50
    for name in ("Smiling", "Hat"):
        assert m[name]["accuracy"] > 0.9 and m[name]["auroc"] > 0.97
        assert m[name]["weight_norm"] == pytest.approx(
            classifier.weight[classifier.index(name)].norm().item(), rel=1e-5
        )
    # The artefact's logits are the regression's decision function on normalised z.
    from sklearn.linear_model import LogisticRegression

    zn = codes.normalized().numpy()  # float32, as fit_classifiers fits
    rng = np.random.default_rng(1)
    test = np.zeros(200, bool)
    test[rng.permutation(200)[:50]] = True
    y = labels.values[:, 0] > 0
    ref = LogisticRegression(class_weight="balanced", max_iter=2000).fit(zn[~test], y[~test])
    logits = classifier.logits(codes.z_sem)[:, 0].double().numpy()
    np.testing.assert_allclose(logits, ref.decision_function(zn), atol=1e-4)
    # Edit directions: class-mean differences of normalised z over the training part.
    expected = zn[~test & y].mean(0) - zn[~test & ~y].mean(0)
    np.testing.assert_allclose(classifier.directions[0].numpy(), expected, rtol=1e-4, atol=1e-5)
    # Round trip through the artefact the editing code loads.
    back = AttributeClassifier.load(classifier.save(tmp_path / "c.safetensors"))
    assert back.metrics == m and torch.equal(back.weight, classifier.weight)
    assert torch.equal(back.directions, classifier.directions)
    table = metrics_table(back)
    assert table.splitlines()[0].split()[:3] == ["attribute", "train", "test"]
    assert "Smiling" in table and "Hat" in table


def test_fit_classifiers_refuses_unmatched_ids_and_skips_one_class_attributes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes, labels = _separable(40)
    stranger = LabelTable(tuple(f"x{i}.jpg" for i in range(40)), labels.names, labels.values, "t")
    with pytest.raises(LabelError, match="no image id of the latents matches"):
        fit_classifiers(codes, stranger)
    constant = LabelTable(
        labels.ids, ("Smiling", "Never"), np.stack([labels.values[:, 0], -np.ones(40)], 1).astype(np.int8), "t"
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        classifier = fit_classifiers(codes, constant)
    assert classifier.attribute_names == ("Smiling",)
    assert "attribute Never skipped: 0 positive" in caplog.text
    with pytest.raises(LabelError, match="not in t"):
        fit_classifiers(codes, labels, attributes=["Smiling", "Nope"])


def test_a_one_class_held_out_part_gives_nan_auroc_not_a_crash() -> None:
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    mean, std = latent_stats(z)
    ids = tuple(f"{i}.png" for i in range(10))
    codes = LatentCodes(z, ids, mean, std)
    labels = LabelTable(ids, ("A",), np.array([[1], [-1]] * 5, dtype=np.int8), "t")
    classifier = fit_classifiers(codes, labels, options=FitOptions(held_out=0.1))
    m = classifier.metrics["A"]
    assert m["n_test"] == 1 and math.isnan(m["auroc"]) and m["accuracy"] in (0.0, 1.0)
    assert "n/a" in metrics_table(classifier)


# --------------------------------------------------------------------------- prepare_data


class _FaceWhereNotFlat:
    """Finds one 'face' in any image that is not a flat colour, with SynthFaces geometry."""

    name = "scripted"
    reason = "test"
    detection_pixels = 16_384

    def detect(self, image: np.ndarray) -> list[Detection]:
        if image.std() < 1.0:
            return []
        h, w = image.shape[:2]
        return [Detection((0.0, 0.0, w - 1.0, h - 1.0), 1.0)]

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        left, top, right, bottom = box
        w, h = right - left + 1, bottom - top + 1
        points = np.tile([left + 0.5 * w, top + 0.6 * h], (68, 1))
        points[36:42] = [left + 0.375 * w, top + 0.475 * h]
        points[42:48] = [left + 0.625 * w, top + 0.475 * h]
        points[48] = [left + 0.43 * w, top + 0.725 * h]
        points[54] = [left + 0.57 * w, top + 0.725 * h]
        return points


def test_align_folder_counts_photos_without_a_face_and_resumes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    _face(1, 160).save(photos / "a.jpg")
    _face(2, 160).save(photos / "a.png")  # same stem as a.jpg: both kept
    _face(3, 160).save(photos / "trip" / "b.webp")
    Image.new("RGB", (160, 160), (90, 90, 90)).save(photos / "wall.png")  # no face
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "aligned"
    report = align_folder(photos, out, _FaceWhereNotFlat(), size=64, progress=False)
    assert report.total == 5 and report.aligned == 3
    assert report.no_face == ["wall.png"] and report.unreadable == ["broken.jpg"]
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a.jpg.png", "a.png.png", "trip/b.png"]
    assert Image.open(out / "trip" / "b.png").size == (64, 64)
    assert json.loads((out / REPORT_NAME).read_text())["no_face"] == ["wall.png"]
    again = align_folder(photos, out, _FaceWhereNotFlat(), size=64, progress=False)
    assert again.already_done == 3 and again.aligned == 0
    assert "3 of 5 photos aligned (3 from an earlier run); 1 had no face" in again.line()
    # The aligned folder is a training set.
    assert len(ImageFolder(out, 32)) == 3


def test_prepare_data_script_reports_and_refuses_empty_input(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script("prepare_data")
    monkeypatch.setattr(script, "make_detector", lambda name: _FaceWhereNotFlat())
    photos = tmp_path / "photos"
    photos.mkdir()
    _face(5, 160).save(photos / "x.png")
    Image.new("RGB", (100, 100)).save(photos / "black.png")
    assert script.main([str(photos), str(tmp_path / "out"), "--size", "32"]) == 0
    assert "1 of 2 photos aligned" in capsys.readouterr().out
    (tmp_path / "none").mkdir()
    assert script.main([str(tmp_path / "none"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: photo folder") and err.count("\n") == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
