"""Paste-back modes compared: the model's whole render ("render") or only the edit's change ("change").

    python benchmarks/paste_back.py [--model default] [--faces 50] [--steps 20] [--scale 4]
        [--picture docs/paste_back.png]

Inputs: the project's real test photos (scikit-image's astronaut, matplotlib's Grace Hopper),
detected and aligned, and held-out drawn SynthFaces rendered at ``scale`` × the model's size
(so the picture has more detail than the model), encoded as aligned faces. Everything goes
through ``Studio`` as the app and the CLI use it (T_inv = T_render = steps). Printed:

1. no edit: PSNR of the pasted-back photo against the original, inside the face's paste
   region (mask > 0; the whole picture for drawn faces), and a sharpness figure, the variance
   of the Laplacian of the luminance inside the face (mask = 255; the central 60% of a drawn
   face) divided by the original's (1.00 = as sharp as the photo);
2. drawn faces, per edit (each face gets the attribute added if it lacks it, removed if it has
   it, at the classifier's calibrated full strength): the judge's success (it sees the wanted
   value) and "others kept" (every attribute the generator's counterfactual leaves alone keeps
   the judge's verdict on the unedited output of the same mode), read at the judge's 64 px after
   a Lanczos reduction; for reference the same on the model's own 64-px render. Sharpness as
   above; "ghost": inside the edit's footprint (pixels whose luminance both the model's edit
   and the generator's true counterfactual face move by more than 24 levels), how much of the
   original's fine detail (luminance minus its Gaussian blur, sigma 2 px) is still there:
   sum(hp(out) hp(orig)) / sum(hp(orig)^2); 1 = all of it, 0 = none. The true counterfactual
   gives the ghost an honest edit would have.

The picture (``--picture``) shows original / render / change side by side.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _bench import machine_line, table
from matplotlib import cbook
from PIL import Image, ImageDraw, ImageFilter
from skimage import data as skimage_data

from diffae_app.data.synthfaces import (
    ATTRIBUTES,
    HELDOUT_SEED_START,
    InvalidFaceSpec,
    render_face,
    sample_spec,
)
from diffae_app.evaluate import DEFAULT_JUDGE_DIR
from diffae_app.imaging import load_image
from diffae_app.judge import images_to_tensor, load_judge
from diffae_app.metrics import pooled_psnr_db
from diffae_app.paste import PASTE_MODES
from diffae_app.studio import Studio

# Drawn faces of seeds from here on: held out from training, and after the evaluation's faces.
FIRST_SEED = HELDOUT_SEED_START + 5000
EDITS = ("Eyeglasses", "Wearing_Hat")  # a small and a large geometric edit
FOOTPRINT_LEVELS = 24.0  # luminance change that counts as "the edit changed this pixel"
HIGH_PASS_SIGMA = 2.0


def luminance(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def laplacian_variance(gray: np.ndarray, region: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the pixels of ``region`` (a bool mask)."""
    lap = np.zeros_like(gray)
    lap[1:-1, 1:-1] = (
        gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1]
    )
    inner = region.copy()
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return float(lap[inner].var())


def psnr(a: Image.Image, b: Image.Image, region: np.ndarray) -> float:
    """PSNR in dB of two 8-bit photos over the pixels in ``region`` (inf when identical)."""
    return pooled_psnr_db(a, b, peak=255.0, region=region)


def high_pass(image: Image.Image) -> np.ndarray:
    blurred = image.convert("L").filter(ImageFilter.GaussianBlur(HIGH_PASS_SIGMA))
    return luminance(image) - np.asarray(blurred, dtype=np.float64)


def ghost(out: Image.Image, original: Image.Image, footprint: np.ndarray) -> float:
    """Share of the original's fine detail left inside the edit's footprint."""
    if footprint.sum() < 50:
        return float("nan")
    hp_out, hp_orig = high_pass(out)[footprint], high_pass(original)[footprint]
    return float((hp_out * hp_orig).sum() / max((hp_orig**2).sum(), 1e-9))


def central_region(size: int) -> np.ndarray:
    region = np.zeros((size, size), dtype=bool)
    lo, hi = round(0.2 * size), round(0.8 * size)
    region[lo:hi, lo:hi] = True
    return region


def judge_verdicts(judge, images: list[Image.Image], size: int) -> np.ndarray:
    batch = np.stack([np.array(i.resize((size, size), Image.Resampling.LANCZOS)) for i in images])
    return (judge.probabilities(images_to_tensor(batch)) > 0.5).numpy()


def mean(values: list[float]) -> float:
    """Mean over the measured values (NaN: not measurable; inf, a bit-exact PSNR, stays)."""
    known = [v for v in values if not np.isnan(v)]
    return float(np.mean(known)) if known else float("nan")


def real_photos(studio: Studio, steps: int, edit: str, strength: float) -> tuple[list, list]:
    photos = {
        "astronaut": Image.fromarray(skimage_data.astronaut()),
        "grace_hopper": load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    }
    rows, panels = [], []
    for name, photo in photos.items():
        session = studio.encode_photo(photo, T_inv=steps)
        face = round(float(np.linalg.norm(session.aligned.quad[3] - session.aligned.quad[0])))
        values: dict[str, float] = {}
        for mode in PASTE_MODES:
            unedited = studio.render(session, T_render=steps, paste=mode)
            edited = studio.render(session, {edit: strength}, T_render=steps, paste=mode)
            mask = np.asarray(unedited.mask)
            sharp_orig = laplacian_variance(luminance(photo), mask == 255)
            values[f"psnr_{mode}"] = psnr(unedited.photo, photo, mask > 0)
            values[f"sharp_{mode}"] = (
                laplacian_variance(luminance(unedited.photo), mask == 255) / sharp_orig
            )
            values[f"edit_{mode}"] = (
                laplacian_variance(luminance(edited.photo), mask == 255) / sharp_orig
            )
            if name == "astronaut":
                panels.append((f"{mode}, no edit", unedited.face_crop))
        if name == "astronaut":  # original, render, change (unedited "change" is the photo)
            panels = [("original (aligned at its own size)", panels[0][1]), panels[1], panels[0]]
        rows.append(
            [
                f"{name} ({photo.width}×{photo.height}, face {face} px)",
                1,
                values["psnr_render"],
                values["psnr_change"],
                values["sharp_render"],
                values["sharp_change"],
                values["edit_render"],
                values["edit_change"],
            ]
        )
    return rows, panels


def drawn_faces(studio: Studio, judge, args: argparse.Namespace) -> dict:
    size = studio.image_size
    big = size * args.scale
    full = studio.classifier.metrics["_full_strength"]
    region = central_region(big)
    no_edit = {m: {"psnr": [], "sharp": []} for m in PASTE_MODES}
    edits = {
        (name, mode): {"success": [], "kept": [], "sharp": [], "ghost": [], "truth_ghost": []}
        for name in EDITS
        for mode in (*PASTE_MODES, "model crop")
    }
    panels: dict[str, list] = {}
    seed = FIRST_SEED
    for _ in range(args.faces):
        spec = sample_spec(seed)
        seed += 1
        picture = Image.fromarray(render_face(spec, big))
        session = studio.encode_aligned(picture, T_inv=args.steps)
        sharp_orig = laplacian_variance(luminance(picture), region)
        unedited = {m: studio.render(session, T_render=args.steps, paste=m) for m in PASTE_MODES}
        for mode, result in unedited.items():
            no_edit[mode]["psnr"].append(psnr(result.photo, picture, np.ones((big, big), bool)))
            no_edit[mode]["sharp"].append(
                laplacian_variance(luminance(result.photo), region) / sharp_orig
            )
        before = {
            "change": judge_verdicts(judge, [unedited["change"].photo], size)[0],
            "render": judge_verdicts(judge, [unedited["render"].photo], size)[0],
            "model crop": judge_verdicts(judge, [unedited["render"].crop], size)[0],
        }
        for name in EDITS:
            j = ATTRIBUTES.index(name)
            want = not bool(spec.attribute_vector()[j])
            try:
                truth_spec = spec.with_attributes(**{name: want})
            except (InvalidFaceSpec, ValueError):
                continue
            changes = truth_spec.attribute_vector() != spec.attribute_vector()
            keep = [k for k in range(len(ATTRIBUTES)) if not changes[k]]
            truth = Image.fromarray(render_face(truth_spec, big))
            strength = full[name] if want else -full[name]
            results = {
                m: studio.render(session, {name: strength}, T_render=args.steps, paste=m)
                for m in PASTE_MODES
            }
            outputs = {
                "change": results["change"].photo,
                "render": results["render"].photo,
                "model crop": results["render"].crop,
            }
            # The edit's footprint: pixels the true counterfactual changes and the model's
            # edit changes too (where old content should have given way to new).
            moved = luminance(results["render"].photo) - luminance(unedited["render"].photo)
            truly = luminance(truth) - luminance(picture)
            footprint = (np.abs(moved) > FOOTPRINT_LEVELS) & (np.abs(truly) > FOOTPRINT_LEVELS)
            truth_ghost = ghost(truth, picture, footprint)
            for mode, image in outputs.items():
                verdict = judge_verdicts(judge, [image], size)[0]
                cell = edits[(name, mode)]
                cell["success"].append(float(verdict[j] == want))
                cell["kept"].append(float(np.mean(verdict[keep] == before[mode][keep])))
                if mode in PASTE_MODES:
                    cell["sharp"].append(laplacian_variance(luminance(image), region) / sharp_orig)
                    cell["ghost"].append(ghost(image, picture, footprint))
                    cell["truth_ghost"].append(truth_ghost)
            if want and name not in panels and verdict_ok(judge, outputs, j, size):
                panels[name] = [
                    ("original", picture),
                    (f"render, {name} added", outputs["render"]),
                    (f"change, {name} added", outputs["change"]),
                ]
    return {"no_edit": no_edit, "edits": edits, "panels": panels}


def verdict_ok(judge, outputs: dict, column: int, size: int) -> bool:
    """Both modes show the added attribute (a fair example for the picture)."""
    verdicts = judge_verdicts(judge, [outputs["render"], outputs["change"]], size)
    return bool(verdicts[:, column].all())


def write_picture(rows: list[list[tuple[str, Image.Image]]], path: Path, side: int = 256) -> None:
    label = 18
    width = max(len(r) for r in rows) * side
    sheet = Image.new("RGB", (width, len(rows) * (side + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (text, image) in enumerate(row):
            x, y = c * side, r * (side + label)
            draw.text((x + 4, y + 3), text, fill=(0, 0, 0))
            sheet.paste(image.resize((side, side), Image.Resampling.LANCZOS), (x, y + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="bundle (default: the bundled model)")
    parser.add_argument("--faces", type=int, default=50, help="held-out drawn faces")
    parser.add_argument("--steps", type=int, default=20, help="T_inv = T_render")
    parser.add_argument("--scale", type=int, default=4, help="drawn faces at scale × model size")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--picture", type=Path, help="write the side-by-side picture here")
    args = parser.parse_args()
    print("# paste_back:", machine_line())
    started = time.perf_counter()
    studio = Studio.load(args.model, device="cpu", precision=args.precision, detector="dlib")
    judge, _ = load_judge(DEFAULT_JUDGE_DIR, min_accuracy=0.95)
    edit, strength = "Eyeglasses", studio.classifier.metrics["_full_strength"]["Eyeglasses"]

    photo_rows, photo_panels = real_photos(studio, args.steps, edit, strength)
    drawn = drawn_faces(studio, judge, args)
    big = studio.image_size * args.scale
    no_edit = drawn["no_edit"]
    drawn_edit_sharp = {
        m: mean([v for name in EDITS for v in drawn["edits"][(name, m)]["sharp"]])
        for m in PASTE_MODES
    }
    rows = [
        *photo_rows,
        [
            f"drawn faces ({big}×{big}, {args.scale}× the model)",
            args.faces,
            mean(no_edit["render"]["psnr"]),
            mean(no_edit["change"]["psnr"]),
            mean(no_edit["render"]["sharp"]),
            mean(no_edit["change"]["sharp"]),
            drawn_edit_sharp["render"],
            drawn_edit_sharp["change"],
        ],
    ]
    print(
        f"\nModel {studio.model_id} ({studio.image_size} px, {args.precision}), "
        f"T_inv = T_render = {args.steps}, CPU\n"
    )
    print("1. No edit: PSNR of the pasted-back photo against the original (face region), and")
    print("   sharpness (variance of the Laplacian in the face / the original's); the last two")
    print(f"   columns: sharpness after an edit ({edit} {strength:+.2f} on the photos; the")
    print("   edits of table 2 on the drawn faces)\n")
    print(
        table(
            [
                "input",
                "n",
                "PSNR render (dB)",
                "PSNR change (dB)",
                "sharpness render",
                "sharpness change",
                "edited: sharpness render",
                "edited: sharpness change",
            ],
            rows,
        )
    )
    print(f"\n2. Edits on {args.faces} drawn faces (judge at {studio.image_size} px)\n")
    edit_rows = []
    for name in EDITS:
        for mode in ("model crop", *PASTE_MODES):
            cell = drawn["edits"][(name, mode)]
            edit_rows.append(
                [
                    name,
                    mode,
                    len(cell["success"]),
                    f"{mean(cell['success']) * 100:.0f}%",
                    f"{mean(cell['kept']) * 100:.1f}%",
                    mean(cell["sharp"]) if cell["sharp"] else "-",
                    mean(cell["ghost"]) if cell["ghost"] else "-",
                    mean(cell["truth_ghost"]) if cell["truth_ghost"] else "-",
                ]
            )
    print(
        table(
            [
                "edit (add or remove)",
                "output",
                "n",
                "success",
                "others kept",
                "sharpness",
                "ghost",
                "ghost of the true face",
            ],
            edit_rows,
        )
    )
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.picture is not None:
        picture_rows = [photo_panels[:3]]
        picture_rows += [drawn["panels"][n] for n in EDITS if n in drawn["panels"]]
        write_picture(picture_rows, args.picture)
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
