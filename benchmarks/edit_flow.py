"""The edit flow as a user sees it: upload -> first edited image, slider -> re-render.

    python benchmarks/edit_flow.py [--model default] [--precisions float32 bfloat16]
        [--repeats 3] [--photo assets/examples/face_a.png]
    python benchmarks/edit_flow.py --app     # the app's own path: the UI handlers

``--app`` drives ``diffae_app.ui.handlers.Handlers`` exactly as the browser's events do
(upload -> ``on_photo``, slider release -> ``on_render``'s preview and final yields), for
float32 and for the precision the app picks at start-up ("auto"); those are the numbers the
README quotes. Without it:

With a bundle (default: the bundled SynthFaces-64 model) the flow goes through
`diffae_app.studio.Studio`, exactly as the app calls it:

- upload -> first edit: `encode_photo` (detect, align, encode, invert with T_inv) then
  `render(session, {attribute: 0.3}, T_render)`, encoded afresh on each try (the studio keeps no encoding cache);
- slider -> re-render: `render` of the cached session with a new strength (no encoder, no
  inversion), at each quality preset's T_render;
- reconstruction PSNR of the session against its aligned input (no edit).

Every quality preset of `diffae_app.session.QUALITY_PRESETS` is measured, plus batched
rendering (4 slider values in one DDIM run against 4 runs). UNet calls are counted (a hook on
the decoder), and the slider render's first streamed preview is timed.

`--config ffhq256` (or ffhq128, synthfaces64) runs the same Studio flow, the app's code path,
on random weights of that architecture with the preset's own sampler (no classifier: the
slider render is the unedited face, which costs the same). `--model ffhq128` or `ffhq256`
runs the older flow on random weights straight through `DiffAE`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from _bench import (
    BUNDLED_MODEL,
    CONFIG_ALIASES,
    REPO,
    UNetCalls,
    fast_precisions,
    machine_line,
    pick_device,
    random_model,
    table,
)

from diffae_app.imaging import image_to_tensor
from diffae_app.metrics import pooled_psnr_db
from diffae_app.session import QUALITY_PRESETS, QualityPreset


def flows(args: argparse.Namespace) -> list[tuple[str, QualityPreset]]:
    """The app's quality presets, or the --flows given as name:T_inv:T_render."""
    if not args.flows:
        return list(QUALITY_PRESETS.items())
    result = []
    for spec in args.flows:
        name, T_inv, T_render = spec.split(":")
        result.append((name, QualityPreset(T_inv=int(T_inv), T_render=int(T_render))))
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def studio_flow(args: argparse.Namespace, precision: str) -> tuple[list[list], list[list]]:
    from diffae_app.studio import Studio

    start = time.perf_counter()
    if args.config:
        model = random_model(args.config, precision=precision, device=pick_device(args.device))
        studio = Studio(model, model_id=f"{args.config} (random weights)", detector="dlib")
    else:
        studio = Studio.load(args.model, device=args.device, precision=precision)
    load_s = time.perf_counter() - start
    counter = UNetCalls(studio.model)
    attribute = args.attribute or (studio.attribute_names[0] if studio.attribute_names else None)
    strengths = (lambda v: {attribute: v}) if attribute else (lambda v: {})
    photo = args.photo

    def upload(T_inv: int):
        try:
            return studio.encode_photo(photo, T_inv=T_inv)
        except Exception as exc:  # no usable detector here: the aligned-crop upload
            if not args.quiet_fallback:
                print(f"  (encode_photo failed: {type(exc).__name__}: {exc}; using encode_aligned)")
                args.quiet_fallback = True
            return studio.encode_aligned(photo, T_inv=T_inv)

    # Detector, model and kernels warmed once (first-call costs are not the steady flow).
    studio.render(upload(2), strengths(0.1), T_render=2)
    rows, batch_rows = [], []
    for name, preset in flows(args):
        first, encode_times, renders, previews = [], [], [], []
        session = None
        for r in range(args.repeats):
            counter.take()
            t0 = time.perf_counter()
            session = upload(preset.T_inv)
            t1 = time.perf_counter()
            studio.render(session, strengths(0.3), T_render=preset.T_render)
            t2 = time.perf_counter()
            upload_calls = counter.take()
            first.append(t2 - t0)
            encode_times.append(t1 - t0)
            value = 0.1 + 0.1 * r
            shown: list[float] = []
            t0 = time.perf_counter()
            studio.render(
                session,
                strengths(value),
                T_render=preset.T_render,
                preview=lambda *_, shown=shown: shown.append(time.perf_counter()),
            )
            renders.append(time.perf_counter() - t0)
            previews.append(shown[0] - t0 if shown else math.nan)
            slider_calls = counter.take()
        recon = studio.reconstruct(session, T_render=preset.T_render).crop
        quality = pooled_psnr_db(_pil(recon), _pil(session.crop))
        rows.append(
            [
                precision,
                f"{name} ({preset.T_inv}, {preset.T_render})",
                _fmt(_median(encode_times)),
                _fmt(_median(first)),
                _fmt(_median(previews)),
                _fmt(_median(renders)),
                f"{upload_calls} / {slider_calls}",
                f"{quality:.2f}",
                _fmt(load_s),
            ]
        )
        print(f"  {precision} {name}: first edit {_fmt(_median(first))}", flush=True)
    counter.close()
    batch_rows.append(batched_rows(studio.model, session, precision, args))
    return rows, batch_rows


def app_flow(args: argparse.Namespace, precision: str) -> list[list]:
    """The app's own path, as a browser user runs it: the UI handlers, not the Studio alone.

    upload -> ``Handlers.on_photo`` (detect, align, encode, invert, render and measure the
    reconstruction, write the files the page offers, the chart): the edit view is complete
    when it returns. slider -> ``Handlers.on_render`` (a generator, as Gradio runs it): the
    quick preview (its first yield) and the final image (measured, pasted back, written).
    Gradio's own transport (PNG encoding of the crops, websocket, the browser's decoding)
    comes on top.
    """
    from diffae_app.classifier import CELEBA_ATTRIBUTES
    from diffae_app.data.synthfaces import ATTRIBUTES
    from diffae_app.studio import Studio
    from diffae_app.ui.handlers import MODES, Handlers
    from diffae_app.ui.layout import SliderBank
    from diffae_app.ui.models import ModelRegistry

    registry = ModelRegistry(
        lambda spec: Studio.load(spec, device=args.device, precision=precision), args.model
    )
    studio = registry.default
    handlers = Handlers(
        registry, SliderBank([*studio.attribute_names, *ATTRIBUTES, *CELEBA_ATTRIBUTES])
    )
    chosen = studio.precision if precision == "auto" else precision
    attribute = args.attribute or studio.attribute_names[0]
    rows = []
    handlers.on_photo(args.photo, False, "preview", MODES[0], handlers.new_state())  # warm-up
    for name, _ in flows(args):
        uploads, previews, finals = [], [], []
        for r in range(args.repeats):
            studio.clear_cache()
            t0 = time.perf_counter()
            state = handlers.on_photo(args.photo, False, name, MODES[0], handlers.new_state())[
                "state"
            ]
            uploads.append(time.perf_counter() - t0)
            values = [0.3 + 0.1 * r if n == attribute else 0.0 for n in state.slots]
            t0 = time.perf_counter()
            outputs = handlers.on_render(state, MODES[0], name, -1, [], values)
            next(outputs)
            previews.append(time.perf_counter() - t0)
            for _ in outputs:
                pass
            finals.append(time.perf_counter() - t0)
        rows.append(
            [
                f"{precision} ({chosen})" if precision == "auto" else precision,
                name,
                _fmt(_median(uploads)),
                _fmt(_median(previews)) if name != "preview" else "-",
                _fmt(_median(finals)),
            ]
        )
        print(f"  app {precision} {name}: slider -> final {_fmt(_median(finals))}", flush=True)
    return rows


def batched_rows(model, session, precision: str, args: argparse.Namespace) -> list:
    """4 slider values: one batched DDIM run against four single runs (same images)."""
    steps = args.batch_steps
    x_T, z = session.x_T, session.z_sem
    direction = torch.nn.functional.normalize(
        torch.randn(z.shape, generator=torch.Generator().manual_seed(0)), dim=1
    )
    zs = torch.cat([z + s * direction * z.norm() * 0.05 for s in range(4)])
    with torch.inference_mode():
        model.render(x_T, z, T=2)
        t0 = time.perf_counter()
        singles = torch.cat([model.render(x_T, zs[i : i + 1], T=steps) for i in range(4)])
        t1 = time.perf_counter()
        batched = model.render(x_T.expand(4, -1, -1, -1), zs, T=steps)
        t2 = time.perf_counter()
    return [
        precision,
        steps,
        _fmt(t1 - t0),
        _fmt(t2 - t1),
        f"{(t1 - t0) / (t2 - t1):.2f}×",
        f"{pooled_psnr_db(batched, singles):.1f}",
    ]


def _pil(image) -> torch.Tensor:
    return (image_to_tensor(image) + 1) / 2


def random_flow(args: argparse.Namespace, precision: str) -> tuple[list[list], list[list]]:
    """The same flow on random weights through DiffAE (for the FFHQ-sized architectures)."""
    start = time.perf_counter()
    model = random_model(args.model, precision=precision, device=pick_device(args.device))
    load_s = time.perf_counter() - start
    size = model.image_size
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    direction = torch.randn(1, model.config.autoencoder.z_sem_channels)
    rows = []
    model.render(model.encode_stochastic(x, model.encode(x), T=1), model.encode(x), T=1)
    session = None
    for name, preset in flows(args):
        if preset.T_inv > args.max_steps or preset.T_render > args.max_steps:
            continue
        t0 = time.perf_counter()
        z = model.encode(x)
        x_T = model.encode_stochastic(x, z, T=preset.T_inv)
        t1 = time.perf_counter()
        model.render(x_T, z + 0.3 * direction, T=preset.T_render)
        t2 = time.perf_counter()
        model.render(x_T, z + 0.2 * direction, T=preset.T_render)
        t3 = time.perf_counter()
        session = type("S", (), {"x_T": x_T, "z_sem": z})
        rows.append(
            [
                precision,
                f"{name} ({preset.T_inv}, {preset.T_render})",
                _fmt(t1 - t0),
                _fmt(t2 - t0),
                "-",
                _fmt(t3 - t2),
                "-",
                "-",
                _fmt(load_s),
            ]
        )
        print(f"  {precision} {name}: first edit {_fmt(t2 - t0)}", flush=True)
    batch = [batched_rows(model, session, precision, args)] if session is not None else []
    return rows, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default', a bundle, ffhq128, ffhq256")
    parser.add_argument(
        "--precisions", nargs="+", default=None, help="default: float32 and the device's fast ones"
    )
    parser.add_argument(
        "--config",
        default=None,
        choices=sorted(CONFIG_ALIASES),
        help="random weights of this architecture through the Studio (the app's code path)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photo", default=str(REPO / "assets" / "examples" / "face_a.png"))
    parser.add_argument("--attribute", default=None, help="slider attribute (default: the first)")
    parser.add_argument("--batch-steps", type=int, default=10, help="T of the batched-render rows")
    parser.add_argument(
        "--max-steps", type=int, default=250, help="random models: skip presets above"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--flows", nargs="*", default=None, help="name:T_inv:T_render (default: the app's presets)"
    )
    parser.add_argument(
        "--app",
        action="store_true",
        help="time the app's own path (the UI handlers, as a browser user runs them) for "
        "float32 and the precision the app picks at start-up (auto), and nothing else",
    )
    args = parser.parse_args()
    args.quiet_fallback = False
    if args.threads:
        torch.set_num_threads(args.threads)
    print("# edit_flow:", machine_line())
    random_weights = args.model in CONFIG_ALIASES and not args.config
    if args.config:
        print(f"model: {args.config} (random weights, Studio: the app's code path)")
    else:
        print(
            f"model: {args.model if args.model != 'default' else BUNDLED_MODEL}"
            f"{' (random weights, DiffAE calls)' if random_weights else ' (Studio)'}"
        )
    if args.app:
        if args.flows:
            parser.error("--app times the app's own presets; leave out --flows")
        rows = []
        for precision in args.precisions or ["float32", "auto"]:
            rows += app_flow(args, precision)
        print()
        print(
            table(
                [
                    "precision",
                    "quality",
                    "upload → edit view complete (reconstruction shown)",
                    "slider → preview",
                    "slider → final (measured)",
                ],
                rows,
            )
        )
        return
    rows, batch_rows = [], []
    device = pick_device(args.device)
    for precision in args.precisions or ["float32", *fast_precisions(device)]:
        flow = random_flow if random_weights else studio_flow
        r, b = flow(args, precision)
        rows += r
        batch_rows += b
    print()
    print(
        table(
            [
                "precision",
                "preset (T_inv, T_render)",
                "upload: encode+invert",
                "upload → first edit",
                "slider → first preview",
                "slider → re-render",
                "UNet calls upload / slider",
                "recon PSNR dB",
                "model load",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            [
                "precision",
                "T",
                "4 slider values, one at a time",
                "4 in one batch",
                "speed-up",
                "PSNR batched vs single",
            ],
            batch_rows,
        )
    )


if __name__ == "__main__":
    main()
